"""The collectstatic benchmark: a Django project (settings generated in a temporary
folder) with django.contrib.admin and FILES generated css/js/images (the css refer
to the images with url(), so the Manifest post-processing rewrites them), collected
into each implementation's Manifest static storage through the project's TCP proxy
(bench/proxy.py) with a round trip of RTT (20 ms), counting the requests:

    ours      django_s3_storage.storage.ManifestStaticS3Storage (this checkout)
    dss015    the same class of django-s3-storage 0.15.0
    storages  storages.backends.s3.S3ManifestStaticStorage (django-storages 1.14.6)
    cf        the same, with collectfasta 3.3.5 (Boto3ManifestMemoryStrategy, 20 threads)
    capo      django_capo_s3.static.S3ManifestStaticStorage (django-capo-s3 0.7.1)

First into an empty prefix, then an unchanged re-run, each a fresh process
(bench/collectstatic_worker.py): wall, requests sent (by method), keys after. Then
the bucket under ours' prefix is compared with 0.15's: keys, bytes, Content-Type,
Cache-Control, Content-Encoding; the differences are printed and recorded.

    make bench                                   # with bench/small.py, on Ceph RGW
    python bench/collectstatic.py --rgw          # Ceph RGW started and stopped here
    python bench/collectstatic.py --quick --out F  # 1 round, 20 files, no admin, no
                                                 # latency, against S3_TEST_ENDPOINT_URL
"""
from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import random
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import large  # noqa: E402
from proxy import FAULTS, CountingProxy, FaultProxy, Rule  # noqa: E402
from small import write_section  # noqa: E402

IMPLS = ("ours", "dss015", "storages", "cf", "capo")
VENVS = {"dss015": "dss015", "storages": "storages", "cf": "storages", "capo": "capo"}
LABELS = {"ours": "this package", "dss015": "0.15", "storages": "d-s", "cf": "d-s +cf",
          "capo": "capo"}
MARK_BEGIN = "<!-- bench-collectstatic:begin -->"
MARK_END = "<!-- bench-collectstatic:end -->"
METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE")
HEADERS = ("ContentType", "CacheControl", "ContentEncoding")


# ---- the project -------------------------------------------------------------------------

def png(seed: int) -> bytes:
    """A small valid-looking PNG-ish blob, deterministic (the bytes only need to differ)."""
    rnd = random.Random(seed)
    return b"\x89PNG\r\n\x1a\n" + rnd.randbytes(200 + seed % 300)


def generate_static(folder: Path, files: int) -> None:
    """`files` files: a third images, a third css referring to two images each and
    (but the first) to s0.css with @import, a third js. One level of @import: a chain
    would need a post-processing pass per link, and Django stops after 5."""
    n_img = max(1, files // 3)
    n_css = max(1, files // 3)
    n_js = max(0, files - n_img - n_css)
    (folder / "bench" / "img").mkdir(parents=True)
    (folder / "bench" / "css").mkdir(parents=True)
    (folder / "bench" / "js").mkdir(parents=True)
    for i in range(n_img):
        (folder / "bench" / "img" / f"i{i}.png").write_bytes(png(i))
    for i in range(n_css):
        a, b = i % n_img, (i * 7 + 3) % n_img
        imp = '@import url("s0.css");\n' if i else ""   # depth 1: few passes
        body = "".join(f".c{i}-{k} {{ margin: {k}px; color: #{(i * 31 + k) % 4096:03x}; }}\n"
                       for k in range(20))
        (folder / "bench" / "css" / f"s{i}.css").write_text(
            f"{imp}.a{i} {{ background: url('../img/i{a}.png'); }}\n"
            f".b{i} {{ background-image: url(\"../img/i{b}.png\"); }}\n{body}")
    for i in range(n_js):
        (folder / "bench" / "js" / f"m{i}.js").write_text(
            "".join(f"function f{i}_{k}(x) {{ return x * {k} + {i}; }}\n" for k in range(30)))


def settings_text(impl: str, target: dict[str, str], prefix: str, static_dir: Path,
                  admin: bool) -> str:
    apps = ["django.contrib.contenttypes", "django.contrib.auth"]
    if admin:
        apps += ["django.contrib.admin", "django.contrib.sessions", "django.contrib.messages"]
    if impl == "cf":
        apps.append("collectfasta")
    if impl == "ours":
        apps.append("django_s3_storage")   # before staticfiles, as README.rst says
    apps.append("django.contrib.staticfiles")
    s: dict[str, Any] = dict(DEBUG=False, USE_TZ=True, SECRET_KEY="bench", INSTALLED_APPS=apps,
                             STATIC_URL="/static/", STATICFILES_DIRS=[str(static_dir)],
                             DATABASES={})
    if impl in ("ours", "dss015"):
        s.update(AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID=target["access_key"],
                 AWS_SECRET_ACCESS_KEY=target["secret_key"],
                 AWS_S3_BUCKET_NAME_STATIC=target["bucket"],
                 AWS_S3_KEY_PREFIX_STATIC=prefix.rstrip("/"),
                 AWS_S3_ENDPOINT_URL_STATIC=target["endpoint"],
                 AWS_S3_ADDRESSING_STYLE_STATIC="path",
                 STORAGES={"staticfiles": {
                     "BACKEND": "django_s3_storage.storage.ManifestStaticS3Storage"}})
    else:
        s.update(AWS_S3_REGION_NAME="us-east-1", AWS_S3_ACCESS_KEY_ID=target["access_key"],
                 AWS_S3_SECRET_ACCESS_KEY=target["secret_key"],
                 AWS_STORAGE_BUCKET_NAME=target["bucket"], AWS_S3_ENDPOINT_URL=target["endpoint"],
                 AWS_S3_ADDRESSING_STYLE="path")
        backend = ("django_capo_s3.static.S3ManifestStaticStorage" if impl == "capo"
                   else "storages.backends.s3.S3ManifestStaticStorage")
        s["STORAGES"] = {"staticfiles": {"BACKEND": backend,
                                         "OPTIONS": {"location": prefix.rstrip("/")}}}
        if impl == "cf":
            # as collectfasta's README recommends for a Manifest storage on S3
            s.update(COLLECTFASTA_STRATEGY="collectfasta.strategies.boto3."
                     "Boto3ManifestMemoryStrategy", COLLECTFASTA_THREADS=20)
        elif impl == "storages":
            s["INSTALLED_APPS"] = [a for a in apps if a != "collectfasta"]
    s["STORAGES"]["default"] = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    return "".join(f"{k} = {v!r}\n" for k, v in s.items())


# ---- running --------------------------------------------------------------------------

class Counted:
    """client -> FaultProxy (counts requests by method, never faults) -> CountingProxy
    (the latency: rtt/2 each way) -> server."""

    def __init__(self, endpoint: str, rtt: float) -> None:
        port = int(endpoint.rsplit(":", 1)[1].split("/")[0])
        self.delay = CountingProxy(("127.0.0.1", port), delay_up=rtt / 2, delay_down=rtt / 2)
        listing = Rule(FAULTS[0], "GET", lambda path, query, headers: "list-type" in query
                       or "prefix" in query or "delimiter" in query, times=0)
        self.rules = [listing] + [Rule(FAULTS[0], m, times=0) for m in METHODS] + [
            Rule(FAULTS[0], "*", times=0)]
        self.count = FaultProxy(("127.0.0.1", self.delay.port), self.rules, idle_timeout=120)
        self.endpoint = self.count.endpoint

    def requests(self) -> dict[str, int]:
        out = {m: r.seen for m, r in zip(METHODS, self.rules[1:])}
        out["LIST"] = self.rules[0].seen          # a GET with list-type, prefix or delimiter
        out["other"] = self.rules[-1].seen
        out["total"] = sum(r.seen for r in self.rules)
        return out

    def reset(self) -> None:
        for r in self.rules:
            r.seen = 0

    def stop(self) -> None:
        self.count.stop()
        self.delay.stop()


def run_collectstatic(python: str, impl: str, project: Path) -> dict[str, Any]:
    env = large.worker_env("ours" if impl == "ours" else impl)
    if impl == "ours" and "PYTHONPATH" in env:
        large.compile_checkout(python)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(project), env.get("PYTHONPATH")) if p)
    env["DJANGO_SETTINGS_MODULE"] = "bench_settings"
    proc = subprocess.run([python, str(HERE / "collectstatic_worker.py")], capture_output=True,
                          text=True, timeout=1800, env=env, cwd=str(project))
    if proc.returncode != 0:
        raise SystemExit(f"collectstatic {impl} failed ({proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def boto(target: dict[str, str]) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=target["endpoint"], region_name="us-east-1",
                        aws_access_key_id=target["access_key"],
                        aws_secret_access_key=target["secret_key"],
                        config=Config(s3={"addressing_style": "path"}))


def list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"][len(prefix):] for o in page.get("Contents", [])]
    return sorted(keys)


def snapshot(s3: Any, bucket: str, prefix: str) -> dict[str, dict[str, Any]]:
    """Every key under prefix (relative): its bytes' digest, size and the headers."""
    import hashlib

    out = {}
    for key in list_keys(s3, bucket, prefix):
        obj = s3.get_object(Bucket=bucket, Key=prefix + key)
        body = obj["Body"].read()
        out[key] = {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body),
                    **{h: obj.get(h) for h in HEADERS},
                    "decoded_sha256": hashlib.sha256(
                        gzip.decompress(body) if obj.get("ContentEncoding") == "gzip"
                        else body).hexdigest()}
    return out


def compare(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]],
            fields: tuple[str, ...] = ("decoded_sha256", *HEADERS)) -> list[str]:
    """The differences between two snapshots, one line each (none: identical). Bytes
    are compared after gunzip when Content-Encoding is gzip: 0.15 writes the file's
    name and the time of the upload into the gzip header, so its stored bytes differ
    from one run of its own to the next (raw_differs counts those keys)."""
    diffs = [f"only in ours: {k}" for k in sorted(set(a) - set(b))]
    diffs += [f"only in 0.15: {k}" for k in sorted(set(b) - set(a))]
    for k in sorted(set(a) & set(b)):
        for f in fields:
            if a[k].get(f) != b[k].get(f):
                diffs.append(f"{k}: {f} {a[k].get(f)!r} here, {b[k].get(f)!r} in 0.15")
    return diffs


def measure(args: argparse.Namespace, target: dict[str, str],
            pythons: dict[str, str]) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix="bench-collectstatic-"))
    runs: list[dict[str, Any]] = []
    versions: dict[str, Any] = {}
    snapshots: dict[str, Any] = {}
    proxy = Counted(target["endpoint"], args.rtt)
    s3 = boto(target)
    try:
        static = work / "static"
        generate_static(static, args.files)
        for rnd in range(args.rounds):
            order = args.impls[rnd % len(args.impls):] + args.impls[:rnd % len(args.impls)]
            for impl in order:
                prefix = f"bench-cs-{run_id}/{impl}-{rnd}/"
                project = work / f"{impl}-{rnd}"
                project.mkdir()
                (project / "bench_settings.py").write_text(settings_text(
                    impl, dict(target, endpoint=proxy.endpoint), prefix, static, args.admin))
                for phase in ("first", "rerun"):
                    print(f"round {rnd + 1}/{args.rounds}: {impl} {phase}", flush=True)
                    proxy.reset()
                    res = run_collectstatic(pythons[impl], impl, project)
                    versions[impl] = res["versions"]
                    keys = list_keys(s3, target["bucket"], prefix)
                    runs.append({"round": rnd, "impl": impl, "phase": phase, "wall": res["wall"],
                                 "cpu": res.get("cpu"),
                                 "requests": proxy.requests(), "keys": len(keys)})
                    print(f"  {res['wall']:.3g} s (client CPU {res['cpu']:.3g} s), "
                          f"{proxy.requests()}, {len(keys)} keys",
                          flush=True)
                if rnd == 0 and impl in ("ours", "dss015"):
                    snapshots[impl] = snapshot(s3, target["bucket"], prefix)
    finally:
        proxy.stop()
        shutil.rmtree(work, ignore_errors=True)
    comparison: dict[str, Any] = {"compared": False}
    if "ours" in snapshots and "dss015" in snapshots:
        diffs = compare(snapshots["ours"], snapshots["dss015"])
        both = set(snapshots["ours"]) & set(snapshots["dss015"])
        raw = sorted(k for k in both
                     if snapshots["ours"][k]["sha256"] != snapshots["dss015"][k]["sha256"])
        comparison = {"compared": True, "keys": len(snapshots["ours"]),
                      "identical": not diffs, "differences": diffs[:200],
                      "raw_differs": len(raw), "raw_differs_gzip_only": all(
                          snapshots["ours"][k]["ContentEncoding"] == "gzip" for k in raw)}
        print(f"bucket after ours vs after 0.15: {len(diffs)} differences", flush=True)
        for d in diffs[:50]:
            print("  " + d)
    return {"runs": runs, "versions": versions, "comparison": comparison,
            "ours_snapshot": snapshots.get("ours")}


def summarize(runs: list[dict[str, Any]], impls: list[str]) -> list[dict[str, Any]]:
    rows = []
    for phase, target in (("first", 10.0), ("rerun", 2.0)):
        row: dict[str, Any] = {"phase": phase, "impls": {}}
        for impl in impls:
            rs = [r for r in runs if r["impl"] == impl and r["phase"] == phase]
            if rs:
                walls = [r["wall"] for r in rs]
                row["impls"][impl] = {
                    "wall": {"median": statistics.median(walls), "min": min(walls),
                             "max": max(walls)},
                    "requests": statistics.median(r["requests"]["total"] for r in rs),
                    "requests_by_method": rs[0]["requests"],
                    "keys": statistics.median(r["keys"] for r in rs)}
        peers = {i: f["wall"]["median"] for i, f in row["impls"].items() if i != "ours"}
        row["ratio"] = row["best_peer"] = row["met"] = None
        if "ours" in row["impls"] and peers:
            best = min(peers, key=lambda i: peers[i])
            row["best_peer"] = best
            row["ratio"] = peers[best] / row["impls"]["ours"]["wall"]["median"]
            row["met"] = row["ratio"] >= target
            if phase == "rerun":
                ours = row["impls"]["ours"]
                lists = ours["requests_by_method"]["LIST"]
                row["met"] = row["met"] and lists <= max(1, -(-ours["keys"] // 1000))
        row["target"] = f">= {target:g}x" + (", <= 1 listing per 1,000 keys"
                                              if phase == "rerun" else "")
        rows.append(row)
    return rows


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    impls = meta["impls"]
    lines = [MARK_BEGIN, "## collectstatic (bench/collectstatic.py)", "",
             f"{meta['date']}, {meta['machine']['cpu']} ({meta['machine']['nproc']} cores), "
             f"{meta['server']}, {meta['rtt'] * 1000:g} ms round trip through bench/proxy.py; "
             f"`{meta['command']}`; {meta['rounds']} rounds, medians (min-max); "
             f"{meta['files']} generated files{' + django.contrib.admin' if meta['admin'] else ''}"
             "; cells: wall, requests sent, keys after.", "",
             "| run | " + " | ".join(LABELS[i] for i in impls) + " | ratio | target |",
             "|---|" + "---|" * len(impls) + "---|---|"]
    for row in result["summary"]:
        cells = []
        for i in impls:
            f = row["impls"].get(i)
            cells.append("" if f is None else
                         f"{f['wall']['median']:.3g} s ({f['wall']['min']:.3g}-"
                         f"{f['wall']['max']:.3g}), {f['requests']:,.0f} req, {f['keys']:,.0f} keys")
        ratio = "" if row["ratio"] is None else f"{row['ratio']:.3g}x vs {LABELS[row['best_peer']]}"
        met = {True: "met", False: "NOT met", None: "-"}[row["met"]]
        name = "first run" if row["phase"] == "first" else "unchanged re-run"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio} | {row['target']} {met} |")
    c = result["comparison"]
    lines.append("")
    if c["compared"]:
        lines.append(f"Bucket after this package's runs vs after 0.15's ({c['keys']} keys; bytes, "
                     "gunzipped, Content-Type, Cache-Control, Content-Encoding): "
                     + ("identical." if c["identical"] else
                        f"{len(c['differences'])} differences, first: {c['differences'][:5]}"))
    else:
        lines.append("Bucket comparison with 0.15: not run (0.15 not measured).")
    lines.append(MARK_END)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="1 round, 20 files, no admin, no added latency; writes no RESULTS.md")
    ap.add_argument("--rgw", action="store_true")
    ap.add_argument("--rgw-mem", default="4G")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--files", type=int, default=None, help="generated files (200)")
    ap.add_argument("--rtt", type=float, default=None, help="round trip in seconds (0.020)")
    ap.add_argument("--no-admin", dest="admin", action="store_false", default=None)
    ap.add_argument("--impls", nargs="+", choices=IMPLS, default=None)
    ap.add_argument("--ours-python", default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--results-md", type=Path, default=None)
    ap.add_argument("--server", default=None)
    args = ap.parse_args(argv)
    q = args.quick
    args.rounds = args.rounds or (1 if q else 3)
    args.files = args.files if args.files is not None else (20 if q else 200)
    args.rtt = args.rtt if args.rtt is not None else (0.0 if q else 0.020)
    args.admin = (not q) if args.admin is None else args.admin
    if not q:
        args.results_md = args.results_md or HERE / "RESULTS.md"
    args.out = args.out or HERE / ("results-collectstatic-quick.json" if q
                                   else "results-collectstatic.json")
    venv = Path(os.environ.get("VENV") or ROOT / ".venv")
    venv = venv if venv.is_absolute() else ROOT / venv
    pythons = {"ours": args.ours_python or str(venv / "bin" / "python")}
    for impl, d in VENVS.items():
        p = HERE / "venvs" / d / "bin" / "python"
        if os.access(p, os.X_OK):
            pythons[impl] = str(p)
    args.impls = args.impls or [i for i in IMPLS if i in pythons]
    for impl in args.impls:
        if impl not in pythons:
            raise SystemExit(f"no venv for {impl}: run bench/peers.sh")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rgw = None
    try:
        target, server, rgw = large.target_for(args, "bench-collectstatic")
        if rgw is not None:
            boto(target).create_bucket(Bucket=target["bucket"])
        measured = measure(args, target, pythons)
    finally:
        if rgw is not None:
            rgw.stop()
    command = os.environ.get("BENCH_COMMAND") or shlex.join(
        ["python", "bench/collectstatic.py", *(argv if argv is not None else sys.argv[1:])])
    result = {
        "meta": {"date": datetime.datetime.now(datetime.timezone.utc).strftime(
                     "%Y-%m-%d %H:%M UTC"), "machine": large.machine(), "server": server,
                 "command": command, "checkout": large.checkout(),
                 "versions": measured["versions"], "impls": args.impls, "rounds": args.rounds,
                 "files": args.files, "admin": args.admin, "rtt": args.rtt},
        "runs": measured["runs"],
        "summary": summarize(measured["runs"], args.impls),
        "comparison": measured["comparison"],
        "ours_snapshot": measured["ours_snapshot"],
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))
    print(f"wrote {args.out}")
    if args.results_md is not None:
        write_section(args.results_md, markdown(result), MARK_BEGIN, MARK_END, large.MARK_BEGIN)
        print(f"updated {args.results_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
