"""The demo site (example/, what `make demo` runs) in a real browser: Debian's headless
Chromium driven through chromedriver logs into the admin and checks that the admin's
CSS came from the static bucket's URL and applies (a computed style), uploads a file
through the form, and downloads it through its presigned link.

Marked `browser`, which pyproject.toml's addopts deselects: scripts/test-all installs
chromium and chromium-driver and runs this file once, with `-m browser`. The site and
its S3 server (moto) listen on 127.0.0.1 only and stop by themselves."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[str, str]]:
    """The demo site's URL and its S3 endpoint; the site stops itself after 300 s."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen([sys.executable, str(ROOT / "example" / "run.py"), "--port",
                             str(port), "--seconds", "300"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    endpoint, lines = None, []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.match(r"S3 server \(moto\): (http://127\.0\.0\.1:\d+)", line)
        if m:
            endpoint = m.group(1)
        if "Quit the server" in line or "CONTROL-C" in line:
            break
    try:
        assert endpoint, "".join(lines)
        yield f"http://127.0.0.1:{port}", endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(path), f"{path} missing: apt-get install chromium chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--disable-gpu", "--window-size=1280,900", "--no-proxy-server"):
        options.add_argument(arg)
    # Debian's chromedriver, named: Selenium Manager downloads nothing
    os.environ["SE_OFFLINE"] = "true"
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: object, css: str) -> object:
    """The element, once the page that has it has loaded (a click's POST and its
    redirect take their time): at most 30 s."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 30).until(  # type: ignore[arg-type]
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))


def test_admin_css_comes_from_the_static_bucket_and_applies(
        site: tuple[str, str], browser: object) -> None:
    from selenium.webdriver.common.by import By

    url, endpoint = site
    d: object = browser
    d.get(f"{url}/admin/login/")  # type: ignore[attr-defined]
    header = d.find_element(By.ID, "header")  # type: ignore[attr-defined]
    # without the admin's CSS the header would have no background
    bare = d.execute_script(  # type: ignore[attr-defined]
        "const e = document.createElement('div'); document.body.appendChild(e);"
        "const c = getComputedStyle(e).backgroundColor; e.remove(); return c;")
    styled = d.execute_script(  # type: ignore[attr-defined]
        "return getComputedStyle(arguments[0]).backgroundColor;", header)
    assert bare == "rgba(0, 0, 0, 0)" and styled not in (bare, "transparent"), styled
    sheets = d.execute_script(  # type: ignore[attr-defined]
        "return Array.from(document.styleSheets).map(s => s.href).filter(h => h);")
    assert sheets and all(h.startswith(f"{endpoint}/demo-static/admin/css/") for h in sheets)
    assert any(re.search(r"/base\.[0-9a-f]{12}\.css$", h) for h in sheets), sheets  # hashed
    # the CSS was fetched: the browser's own record of the resource
    fetched = d.execute_script(  # type: ignore[attr-defined]
        "return performance.getEntriesByType('resource').map(e => e.name);")
    assert any(n in fetched for n in sheets)
    # logging in works and the admin shows the demo's model
    d.find_element(By.ID, "id_username").send_keys("demo")  # type: ignore[attr-defined]
    d.find_element(By.ID, "id_password").send_keys("demo")  # type: ignore[attr-defined]
    d.find_element(By.CSS_SELECTOR, "input[type=submit]").click()  # type: ignore[attr-defined]
    # the admin index's module of the demo app (the login page has none)
    assert "Uploads" in wait_for(d, ".app-demo_site").text  # type: ignore[attr-defined]


def test_upload_through_the_form_and_download_through_the_presigned_link(
        site: tuple[str, str], browser: object, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    url, endpoint = site
    data = os.urandom(20_000) + b"uploaded through the browser"
    path = tmp_path / "report 2026.bin"
    path.write_bytes(data)
    d: object = browser
    d.get(f"{url}/")  # type: ignore[attr-defined]
    d.find_element(By.ID, "id_file").send_keys(str(path))  # type: ignore[attr-defined]
    d.find_element(By.ID, "upload").click()  # type: ignore[attr-defined]
    link = wait_for(d, "#uploads a.download")
    href = link.get_attribute("href")  # type: ignore[attr-defined]
    assert link.text.startswith("uploads/report_2026") and link.text.endswith(".bin")
    assert href.startswith(f"{endpoint}/demo-media/uploads/report_2026")
    assert "X-Amz-Signature=" in href and "X-Amz-Expires=3600" in href
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 only
    with opener.open(href, timeout=30) as reply:
        assert reply.read() == data
    # the browser follows the same link
    d.get(href)  # type: ignore[attr-defined]
    assert d.execute_script("return document.readyState") == "complete"  # type: ignore[attr-defined]
