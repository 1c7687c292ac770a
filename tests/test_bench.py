"""The large-file benchmark's short slice (bench/large.py --quick) against the test
S3 server, and its counting proxy. Not a timed test: it checks that the harness
measures (the figures are there and positive) and that the data went round intact."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import BUCKET, S3Target
from servers import bench_module

ROOT = Path(__file__).resolve().parent.parent


CountingProxy = bench_module("proxy").CountingProxy
_worker = bench_module("worker")
PseudoRandomFile, expected_sha256 = _worker.PseudoRandomFile, _worker.expected_sha256


def test_quick_benchmark_moves_the_bytes_intact_and_reports_every_figure(
        s3: S3Target, tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    env = dict(os.environ, S3_TEST_ENDPOINT_URL=s3.endpoint, S3_TEST_ACCESS_KEY=s3.access_key,
               S3_TEST_SECRET_KEY=s3.secret_key, S3_BENCH_BUCKET=BUCKET)
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "large.py"), "--quick",
                           "--ours-python", sys.executable, "--out", str(out)],
                          env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    size = 16 * 1024 * 1024
    runs = {r["op"]: r for r in result["runs"]}
    assert set(runs) == {"save", "read", "open10"}
    assert all(r["impl"] == "ours" and r["size"] == size for r in runs.values())
    expected = expected_sha256(size, result["meta"]["seed"])
    assert runs["save"]["sha256"] == expected
    assert runs["read"]["sha256"] == expected and runs["read"]["sha256_equal"] is True
    assert runs["read"]["bytes"] == size
    assert runs["open10"]["head_ok"] is True
    for r in runs.values():
        assert r["seconds"] > 0, r
    # the storage's own time: the wall time less the benchmark's generating and hashing
    for op, harness in (("save", "source_seconds"), ("read", "hash_seconds")):
        r = runs[op]
        assert 0 < r[harness] < r["seconds"], r
        assert r["storage_seconds"] == pytest.approx(r["seconds"] - r[harness]), r
    # 16 MiB went through save and read (1 MiB reads); read(10) may fit in resident pages
    assert runs["save"]["peak_rss_growth"] > 0 and runs["read"]["peak_rss_growth"] > 0
    assert runs["open10"]["peak_rss_growth"] >= 0
    # the request went through the proxy, and the 10 bytes at least came back
    moved = runs["open10"]
    assert moved["bytes_up"] > 0 and moved["bytes_down"] >= 10
    assert moved["bytes_moved"] == moved["bytes_up"] + moved["bytes_down"]
    summary = {(r["op"], r["impl"]): r for r in result["summary"]}
    assert set(summary) == {("save", "ours"), ("read", "ours"), ("open10", "ours")}
    assert summary[("save", "ours")]["seconds"]["median"] == runs["save"]["seconds"]
    assert (summary[("read", "ours")]["storage_seconds"]["median"]
            == runs["read"]["storage_seconds"])
    meta = result["meta"]
    assert meta["machine"]["nproc"] >= 1 and meta["versions"]["django"]
    assert meta["command"].startswith("python bench/large.py --quick")
    # the object was deleted after the measurement
    listed = s3.boto().list_objects_v2(Bucket=BUCKET, Prefix="bench-large/")
    assert listed.get("KeyCount", 0) == 0


def test_generated_file_is_deterministic_seekable_and_hashed_in_order() -> None:
    f = PseudoRandomFile(3 * 1024 * 1024 + 5, seed=7)
    head = f.read(10)
    assert f.seek(0, 2) == f.size and f.tell() == f.size
    f.seek(0)
    whole = f.read(f.size + 100)
    assert len(whole) == f.size and whole[:10] == head
    assert whole[:1024 * 1024] != whole[1024 * 1024:2 * 1024 * 1024]   # blocks differ
    assert f.sha256() == expected_sha256(f.size, 7)
    assert PseudoRandomFile(f.size, seed=8).read(10) != head
    skipper = PseudoRandomFile(f.size, seed=7)
    skipper.seek(100)
    skipper.read()
    assert skipper.sha256() is None      # a skipped range spoils the hash


def _echo_server() -> tuple[socket.socket, threading.Thread]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(10)

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(10)
            while data := conn.recv(65536):
                conn.sendall(data + data)     # twice as much back

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv, t


def test_proxy_counts_each_direction_and_adds_its_delay() -> None:
    srv, t = _echo_server()
    try:
        target = srv.getsockname()
        with CountingProxy(target, delay_up=0.1, delay_down=0.05) as proxy:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as c:
                start = time.monotonic()
                c.sendall(b"x" * 1000)
                got = b""
                while len(got) < 2000:
                    got += c.recv(65536)
                took = time.monotonic() - start
            assert got == b"x" * 2000
            assert took >= 0.15
            deadline = time.monotonic() + 5
            while proxy.counts()["bytes_down"] < 2000 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert proxy.counts() == {"bytes_up": 1000, "bytes_down": 2000, "connections": 1}
            proxy.reset()
            assert proxy.counts() == {"bytes_up": 0, "bytes_down": 0, "connections": 0}
        t.join(5)
    finally:
        srv.close()


def test_proxy_forwards_to_loopback_only() -> None:
    with pytest.raises(ValueError, match="127.0.0.1 only"):
        CountingProxy(("192.0.2.1", 80))


_proxy = sys.modules["bench_proxy"]
FaultProxy, Rule = _proxy.FaultProxy, _proxy.Rule


def _reply(sock: socket.socket) -> tuple[bytes, bytes]:
    """One response: its head and its Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the connection ended before a whole head"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


def test_fault_proxy_answers_matching_requests_itself_and_forwards_the_others() -> None:
    from servers import Reply, ScriptedServer

    def script(seen: object) -> Reply:
        return Reply(200, b"from the server:" + seen.body)   # type: ignore[attr-defined]

    rule = Rule("503-slow-down", "PUT", lambda path, query, headers: "partNumber" in query, 1)
    with ScriptedServer(script) as server, \
            FaultProxy(("127.0.0.1", server.port), [rule]) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as c:
            # Expect: 100-continue: the proxy says continue, reads the body, answers
            c.sendall(b"PUT /b/k?partNumber=1&uploadId=u HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            head, _ = _reply(c)
            assert head.startswith(b"HTTP/1.1 100")
            c.sendall(b"hello")
            head, body = _reply(c)
            assert head.startswith(b"HTTP/1.1 503") and b"<Code>SlowDown</Code>" in body
            # the same request again, on the same connection: past K, forwarded
            c.sendall(b"PUT /b/k?partNumber=1&uploadId=u HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 5\r\n\r\nagain")
            head, body = _reply(c)
            assert head.startswith(b"HTTP/1.1 200") and body == b"from the server:again"
            # another request: never matched
            c.sendall(b"GET /b/k HTTP/1.1\r\nHost: x\r\n\r\n")
            head, body = _reply(c)
            assert head.startswith(b"HTTP/1.1 200") and body == b"from the server:"
        assert (rule.seen, rule.faulted) == (2, 1)
        assert [s.body for s in server.seen] == [b"again", b""]


def test_fault_proxy_resets_and_cuts_bodies_short() -> None:
    from servers import Reply, ScriptedServer

    with ScriptedServer(lambda seen: Reply(200, b"x" * 1000)) as server:
        target = ("127.0.0.1", server.port)
        with FaultProxy(target, [Rule("reset-before-request")]) as proxy:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as c:
                c.sendall(b"GET /b/k HTTP/1.1\r\nHost: x\r\n\r\n")
                with pytest.raises(ConnectionResetError):
                    c.recv(65536)
        with FaultProxy(target, [Rule("short-body")]) as proxy:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as c:
                c.sendall(b"GET /b/k HTTP/1.1\r\nHost: x\r\n\r\n")
                data = b""
                while chunk := c.recv(65536):
                    data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            assert b"Content-Length: 1000" in head and body == b"x" * 500   # then a FIN
    with pytest.raises(ValueError, match="unknown fault"):
        Rule("explode")


def test_large_ratios_are_of_wall_time_and_of_storage_time_for_reads_only() -> None:
    large = bench_module("large")
    MiB = 1 << 20
    runs = []
    for impl, save, source, read, hashing in (("ours", 2.0, 0.3, 1.0, 0.5),
                                              ("dss015", 3.0, 1.8, 2.0, 0.5)):
        runs.append(dict(impl=impl, op="save", size=256 * MiB, seconds=save,
                         source_seconds=source, storage_seconds=save - source,
                         peak_rss_growth=MiB))
        runs.append(dict(impl=impl, op="read", size=256 * MiB, seconds=read,
                         hash_seconds=hashing, storage_seconds=read - hashing,
                         peak_rss_growth=MiB))
    rows = {(r["op"], r["impl"]): r for r in large.summarize(runs, ["ours", "dss015"])}
    # a save's source time depends on how the storage pulls the file: wall only
    assert rows[("save", "dss015")]["ratio_to_ours"] == pytest.approx(1.5)
    assert "storage_ratio_to_ours" not in rows[("save", "dss015")]
    assert rows[("read", "dss015")]["ratio_to_ours"] == pytest.approx(2.0)
    assert rows[("read", "dss015")]["storage_ratio_to_ours"] == pytest.approx(3.0)
    met = {t["what"]: t["met"] for t in large.targets(list(rows.values()))}
    assert met["save 256 MiB: >= 1.5x faster than django-s3-storage 0.15.0"] is True
    assert met["read 256 MiB: >= 1.5x faster than django-s3-storage 0.15.0"] is True


# ---- bench/small.py and bench/collectstatic.py, quick mode -------------------------------

PEERS = ROOT / "bench" / "venvs"


def _bench_env(s3: S3Target) -> dict[str, str]:
    return dict(os.environ, S3_TEST_ENDPOINT_URL=s3.endpoint, S3_TEST_ACCESS_KEY=s3.access_key,
                S3_TEST_SECRET_KEY=s3.secret_key, S3_BENCH_BUCKET=BUCKET)


def _present(*venvs: str) -> list[str]:
    return [v for v in venvs if (PEERS / VENV_OF[v] / "bin" / "python").exists()]


VENV_OF = {"dss015": "dss015", "storages": "storages", "capo": "capo", "cf": "storages"}


def test_quick_small_benchmark_reports_every_row_with_sane_figures(
        s3: S3Target, tmp_path: Path) -> None:
    out = tmp_path / "small.json"
    # this package, and django-storages (for boto3's get_object) when its venv is there
    impls = ["ours", *_present("storages")]
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "small.py"), "--quick", "--n", "8",
                           "--ours-python", sys.executable, "--out", str(out),
                           "--impls", *impls],
                          env=_bench_env(s3), cwd=str(ROOT), capture_output=True, text=True,
                          timeout=150)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    small = bench_module("small")
    rows = {r["row"]: r for r in result["summary"]}
    assert set(rows) == {key for key, *_ in small.ROWS} | {"small_get.wall"}
    for key, row in rows.items():
        ours = row["impls"]["ours"]
        assert 0 < ours["min"] <= ours["median"] <= ours["max"], (key, ours)
        for impl in impls:
            assert impl in row["impls"], (key, impl)
    # sanity: a presigned url() costs under 1 ms of CPU here, a listing of 300 keys
    # more CPU than one of 100 is no rule (pages), but both are under a second
    assert rows["url.presigned"]["impls"]["ours"]["median"] < 1e-3
    assert rows["import.rss_added"]["impls"]["ours"]["median"] > 0
    for key in ("listdir.small.cpu", "listdir.large.cpu"):
        assert rows[key]["impls"]["ours"]["median"] < 1.0
    assert rows["threads.ops_per_s"]["impls"]["ours"]["median"] > 1
    if "storages" in impls:
        assert "boto3" in rows["small_get.wall"]["impls"]
        assert rows["url.presigned"]["ratio"] > 0 and rows["url.presigned"]["best_peer"]
    assert result["meta"]["listings"] == {"small": 100, "large": 300}
    assert result["meta"]["command"].startswith("python bench/small.py --quick")


def _local_manifest_run(tmp: Path, files: int) -> dict[str, dict[str, str]]:
    """Django's own ManifestStaticFilesStorage on the local filesystem, over the same
    generated files: relative name -> SHA-256 and the Content-Type S3 should get."""
    import hashlib
    import mimetypes

    cs = bench_module("collectstatic")
    static, root = tmp / "local-src", tmp / "local-root"
    cs.generate_static(static, files)
    (tmp / "local_settings.py").write_text(
        f"SECRET_KEY = 'bench'\nUSE_TZ = True\nSTATIC_URL = '/static/'\n"
        f"INSTALLED_APPS = ['django.contrib.staticfiles']\nDATABASES = {{}}\n"
        f"STATICFILES_DIRS = [{str(static)!r}]\nSTATIC_ROOT = {str(root)!r}\n"
        "STORAGES = {'staticfiles': {'BACKEND': "
        "'django.contrib.staticfiles.storage.ManifestStaticFilesStorage'}}\n")
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="local_settings", PYTHONPATH=str(tmp))
    proc = subprocess.run([sys.executable, "-m", "django", "collectstatic", "--noinput", "-v0"],
                          env=env, cwd=str(tmp), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = {}
    for p in root.rglob("*"):
        if p.is_file():
            rel = p.relative_to(root).as_posix()
            out[rel] = {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                        "type": mimetypes.guess_type(rel)[0] or "application/octet-stream"}
    return out


def test_quick_collectstatic_benchmark_and_the_bucket_matches_015_and_django(
        s3: S3Target, tmp_path: Path) -> None:
    out = tmp_path / "cs.json"
    impls = ["ours", *_present("dss015")]
    files = 12
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "collectstatic.py"), "--quick",
                           "--files", str(files), "--ours-python", sys.executable,
                           "--out", str(out), "--impls", *impls],
                          env=_bench_env(s3), cwd=str(ROOT), capture_output=True, text=True,
                          timeout=150)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = {r["phase"]: r for r in result["summary"]}
    assert set(rows) == {"first", "rerun"}
    for phase, row in rows.items():
        for impl in impls:
            f = row["impls"][impl]
            assert f["wall"]["median"] > 0 and f["requests"] > 0, (phase, impl, f)
            by_method = f["requests_by_method"]
            assert by_method["total"] == f["requests"]
            assert by_method["total"] == sum(v for k, v in by_method.items() if k != "total")
    # an unchanged re-run leaves the same keys as the first run
    assert rows["first"]["impls"]["ours"]["keys"] == rows["rerun"]["impls"]["ours"]["keys"]

    # the bucket after our runs holds what Django's own Manifest storage writes locally:
    # the same names (hashed and not, and staticfiles.json), the same bytes once
    # gunzipped, and the Content-Type of the name
    local = _local_manifest_run(tmp_path, files)
    ours = result["ours_snapshot"]
    assert sorted(ours) == sorted(local)
    assert rows["first"]["impls"]["ours"]["keys"] == len(local)
    for name, want in local.items():
        got = ours[name]
        assert got["decoded_sha256"] == want["sha256"], name
        assert (got["ContentType"] or "").split(";")[0] == want["type"], (name, got)
    # and, when 0.15 could be installed, what 0.15 leaves: keys, bytes, headers
    comparison = result["comparison"]
    if "dss015" in impls:
        assert comparison["compared"] is True
        assert comparison["differences"] == [], comparison["differences"]
        assert comparison["identical"] is True
        assert comparison["raw_differs_gzip_only"] is True
    else:
        assert comparison == {"compared": False}
