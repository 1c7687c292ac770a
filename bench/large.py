"""The large-file benchmark: save, read back, and open() + read(10), through the
Django storage API, of this package against django-s3-storage 0.15 and
django-storages 1.14.6 (see bench/RESULTS.md and README's "Benchmark").

    make bench-large                      # peers, Ceph RGW started here, 3 rounds
    python bench/large.py --rgw           # the same, once bench/peers.sh has run
    python bench/large.py --quick --out F # CI: 16 MiB, 1 round, this package only,
                                          # against S3_TEST_ENDPOINT_URL / _ACCESS_KEY /
                                          # _SECRET_KEY and bucket S3_BENCH_BUCKET

Each measurement runs in a fresh process of the implementation's own virtual
environment (bench/worker.py): this package from the checkout's .venv (VENV, or
--ours-python), the peers from bench/venvs/ (bench/peers.sh makes them). Per round
and size, for each implementation in turn (the order rotates from round to round):
save a file generated on the fly, read it back to the end and compare SHA-256s,
for the largest size open() + read(10) through a counting proxy, then delete the
object. Figures: wall time and peak RSS growth of the operation, bytes moved.
Every address is 127.0.0.1.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from proxy import CountingProxy  # noqa: E402
from worker import expected_sha256  # noqa: E402

MiB = 1024 * 1024
IMPLS = ("ours", "dss015", "storages")
LABELS = {"ours": "this checkout", "dss015": "django-s3-storage 0.15.0",
          "storages": "django-storages 1.14.6"}
PEER_VENVS = {"dss015": HERE / "venvs" / "dss015", "storages": HERE / "venvs" / "storages"}
SEED = 20260707
MARK_BEGIN = "<!-- bench-large:begin -->"
MARK_END = "<!-- bench-large:end -->"
# the targets for this package (issue 7, point 7)
TARGET_PEAK = 64 * MiB
TARGET_OPEN10 = 16 * MiB
TARGET_RATIO = 1.5
TARGET_SIZES = (256 * MiB, 1024 * MiB)   # the ratios' sizes; the last one's memory and open()


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    for suffix, mult in (("K", 1024), ("M", MiB), ("G", 1024 * MiB)):
        if text.endswith(suffix):
            return int(float(text[:-1]) * mult)
    return int(text)


def size_label(n: int) -> str:
    return f"{n // (1024 * MiB)} GiB" if n % (1024 * MiB) == 0 else f"{n / MiB:g} MiB"


def loopback_only(endpoint: str) -> None:
    host = urlsplit(endpoint).hostname
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"the benchmark talks to 127.0.0.1 only, not {endpoint!r}")


# ---- the workers ----------------------------------------------------------------------

def worker_env(impl: str) -> dict[str, str]:
    """A clean environment: nothing of the machine's AWS set-up, no metadata service."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.pop("PYTHONPATH", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    empty = Path(tempfile.gettempdir()) / "bench-no-aws"
    env.update(AWS_EC2_METADATA_DISABLED="true",
               AWS_SHARED_CREDENTIALS_FILE=str(empty / "credentials"),
               AWS_CONFIG_FILE=str(empty / "config"),
               AWS_ENDPOINT_URL_STS="http://127.0.0.1:9",
               AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:9")
    if impl == "ours" and any((ROOT / "django_s3_storage").glob("_s3*.so")):
        # built in place (setup.py build_ext --inplace): the checkout's code wins
        env["PYTHONPATH"] = str(ROOT)
    return env


_COMPILED: set[str] = set()


def compile_checkout(python: str) -> None:
    """The checkout's package byte-compiled for `python`, once per run, as pip
    compiles an installed one: else (PYTHONDONTWRITEBYTECODE, or .pyc files older
    than the sources) each worker would compile storage.py again on import."""
    if python in _COMPILED:
        return
    env = worker_env("ours")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([python, "-m", "compileall", "-q", str(ROOT / "django_s3_storage")],
                   check=True, env=env, cwd=str(HERE), timeout=300)
    _COMPILED.add(python)


def run_worker(python: str, cfg: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
    if cfg["impl"] == "ours" and "PYTHONPATH" in worker_env("ours"):
        compile_checkout(python)
    proc = subprocess.run([python, str(HERE / "worker.py")], input=json.dumps(cfg),
                          capture_output=True, text=True, timeout=timeout,
                          env=worker_env(cfg["impl"]), cwd=str(HERE))
    if proc.returncode != 0:
        raise SystemExit(f"worker {cfg['impl']} {cfg['op']} failed ({proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- Ceph RGW ----------------------------------------------------------------------------

class Rgw:
    """scripts/rgw on a folder of its own; stop() stops it and deletes the folder."""

    def __init__(self, mem: int) -> None:
        self.dir = tempfile.mkdtemp(prefix="s3-bench-rgw-")
        os.rmdir(self.dir)   # scripts/rgw makes it
        env = dict(os.environ, RGW_OSD_MEM=str(mem))
        proc = subprocess.run(["bash", str(ROOT / "scripts" / "rgw"), "start", self.dir],
                              capture_output=True, text=True, env=env, timeout=1800)
        if proc.returncode != 0:
            self.stop()
            raise SystemExit(f"scripts/rgw start failed:\n{proc.stderr[-3000:]}")
        values = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
        self.endpoint = values["S3_TEST_ENDPOINT_URL"]
        self.access_key = values["S3_TEST_ACCESS_KEY"]
        self.secret_key = values["S3_TEST_SECRET_KEY"]
        ver = subprocess.run(["radosgw", "--version"], capture_output=True, text=True)
        self.version = "Ceph RGW " + (ver.stdout.strip().removeprefix("ceph version ")
                                      or "(version unknown)")

    def collect_garbage(self) -> None:
        """A deleted object's data waits for RGW's garbage collector (2 h by default):
        run it now, so the memstore does not fill up."""
        proc = subprocess.run(["radosgw-admin", "-c", f"{self.dir}/ceph.conf", "-n",
                               "client.rgw.a", "gc", "process", "--include-all"],
                              capture_output=True, text=True, timeout=300, check=False)
        if proc.returncode != 0:
            print(f"\nwarning: radosgw-admin gc process failed: {proc.stderr[-500:]}",
                  file=sys.stderr)

    def stop(self) -> None:
        subprocess.run(["bash", str(ROOT / "scripts" / "rgw"), "stop", self.dir],
                       capture_output=True, timeout=300, check=False)


# ---- the run ------------------------------------------------------------------------------

def checkout() -> str:
    """The checkout's commit, and whether its files differ from it."""
    def git(*a: str) -> str:
        proc = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "(not a git checkout)"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "csrc",
                "django_s3_storage", "setup.py")
    return commit + (" with uncommitted changes to the package" if dirty else "")


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory": mem,
            "kernel": platform.release()}


def measure(args: argparse.Namespace, target: dict[str, str], pythons: dict[str, str],
            rgw: Rgw | None) -> dict[str, Any]:
    sizes = [parse_size(s) for s in args.sizes]
    largest = max(sizes)
    expected = {n: expected_sha256(n, SEED) for n in sizes}
    runs: list[dict[str, Any]] = []
    versions: dict[str, Any] = {}
    host, port = urlsplit(target["endpoint"]).hostname, urlsplit(target["endpoint"]).port
    assert host and port
    with CountingProxy((host, port)) as proxy:
        for rnd in range(args.rounds):
            order = list(args.impls[rnd % len(args.impls):]) + list(args.impls[:rnd % len(args.impls)])
            for size in sizes:
                for impl in order:
                    name = f"bench-large/{impl}-{size}-{uuid.uuid4().hex[:10]}.bin"
                    base = dict(target, impl=impl, size=size, seed=SEED, chunk=args.chunk)
                    py = pythons[impl]
                    measured = False
                    print(f"round {rnd + 1}/{args.rounds} {size_label(size)} {impl}: save",
                          end="", flush=True)
                    try:
                        saved = run_worker(py, dict(base, op="save", name=name))
                        name = saved["saved_name"]
                        versions.setdefault(impl, saved["versions"])
                        rec = dict(round=rnd + 1, impl=impl, op="save", size=size)
                        rec.update({k: saved[k] for k in ("seconds", "peak_rss_growth",
                                                          "source_seconds", "sha256")})
                        rec["storage_seconds"] = saved["seconds"] - saved["source_seconds"]
                        runs.append(rec)
                        if saved["sha256"] != expected[size]:
                            raise SystemExit(f"{impl} save: the file was not read straight "
                                             f"through once (SHA-256 {saved['sha256']})")
                        print(f" {saved['seconds']:.2f}s, read", end="", flush=True)
                        got = run_worker(py, dict(base, op="read", name=name))
                        rec = dict(round=rnd + 1, impl=impl, op="read", size=size)
                        rec.update({k: got[k] for k in ("seconds", "peak_rss_growth",
                                                        "sha256", "bytes", "hash_seconds")})
                        rec["storage_seconds"] = got["seconds"] - got["hash_seconds"]
                        rec["sha256_equal"] = got["sha256"] == saved["sha256"]
                        runs.append(rec)
                        if not rec["sha256_equal"] or got["bytes"] != size:
                            raise SystemExit(f"{impl} read: {got['bytes']} bytes, SHA-256 "
                                             f"{got['sha256']}, saved {saved['sha256']}")
                        print(f" {got['seconds']:.2f}s", end="", flush=True)
                        if size == largest:
                            proxy.reset()
                            head = run_worker(py, dict(base, op="open10", name=name,
                                                       endpoint=proxy.endpoint))
                            moved = proxy.counts()
                            rec = dict(round=rnd + 1, impl=impl, op="open10", size=size)
                            rec.update({k: head[k] for k in ("seconds", "peak_rss_growth",
                                                             "head_ok")})
                            rec.update(moved, bytes_moved=moved["bytes_up"] + moved["bytes_down"])
                            runs.append(rec)
                            if not head["head_ok"]:
                                raise SystemExit(f"{impl} open10: the first 10 bytes differ")
                            print(f", open+read(10) {head['seconds']:.2f}s "
                                  f"{rec['bytes_moved'] / MiB:.1f} MiB moved", end="", flush=True)
                        measured = True
                    finally:
                        print(flush=True)
                        try:
                            run_worker(py, dict(base, op="delete", name=name))
                        except SystemExit as e:
                            if measured:
                                raise
                            # the measurement's own failure is the one to report
                            print(f"cleanup: {e}", file=sys.stderr)
                        if rgw is not None:
                            rgw.collect_garbage()
    return {"runs": runs, "versions": versions, "expected_sha256":
            {str(k): v for k, v in expected.items()}}


def summarize(runs: list[dict[str, Any]], impls: list[str]) -> list[dict[str, Any]]:
    rows = []
    keys = sorted({(r["op"], r["size"]) for r in runs},
                  key=lambda k: (k[1], ("save", "read", "open10").index(k[0])))
    for op, size in keys:
        ours = None
        group = []
        for impl in impls:
            rs = [r for r in runs if r["op"] == op and r["size"] == size and r["impl"] == impl]
            if not rs:
                continue
            row: dict[str, Any] = {"op": op, "size": size, "impl": impl, "n": len(rs)}
            for field in ("seconds", "storage_seconds", "peak_rss_growth", "bytes_moved"):
                vals = [r[field] for r in rs if field in r]
                if vals:
                    row[field] = {"median": statistics.median(vals), "min": min(vals),
                                  "max": max(vals)}
            if impl == "ours":
                ours = row
            group.append(row)
        for row in group:
            if ours is not None and row is not ours:
                # the ratio of the wall times, as a user waits them; for reads also of
                # the storage's own time (the same hashing of the same chunks taken
                # out). Not for saves: how long the source takes depends on how the
                # storage pulls it (one read() of the whole file makes the process
                # fault in that much fresh memory, in the source's time)
                row["ratio_to_ours"] = row["seconds"]["median"] / ours["seconds"]["median"]
                if op == "read":
                    row["storage_ratio_to_ours"] = (row["storage_seconds"]["median"]
                                                    / ours["storage_seconds"]["median"])
        rows.extend(group)
    return rows


def targets(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's bars for this package, checked against the figures (not enforced)."""
    out = []
    ours = [r for r in summary if r["impl"] == "ours"]
    if not ours:
        return out
    for r in ours:
        if r["op"] in ("save", "read") and r["size"] == TARGET_SIZES[-1]:
            v = r["peak_rss_growth"]["max"]
            out.append({"what": f"{r['op']} {size_label(r['size'])}: peak RSS growth < 64 MiB",
                        "value": f"{v / MiB:.0f} MiB (max)", "met": v < TARGET_PEAK})
        if r["op"] == "open10" and r["size"] == TARGET_SIZES[-1]:
            v = r["bytes_moved"]["max"]
            out.append({"what": f"open() + read(10) of {size_label(r['size'])}: < 16 MiB moved",
                        "value": f"{v / MiB:.1f} MiB (max)", "met": v < TARGET_OPEN10})
    for r in summary:
        if r["op"] in ("save", "read") and "ratio_to_ours" in r and r["size"] in TARGET_SIZES:
            out.append({"what": f"{r['op']} {size_label(r['size'])}: >= 1.5x faster than "
                                f"{LABELS[r['impl']]}",
                        "value": f"{r['ratio_to_ours']:.2f}x" + (
                            f" (storage time: {r['storage_ratio_to_ours']:.2f}x)"
                            if "storage_ratio_to_ours" in r else ""),
                        "met": r["ratio_to_ours"] >= TARGET_RATIO})
    return out


# ---- RESULTS.md ------------------------------------------------------------------------------

def _fmt_range(d: dict[str, float], scale: float, fmt: str) -> str:
    return (f"{d['median'] / scale:{fmt}} ({d['min'] / scale:{fmt}}–{d['max'] / scale:{fmt}})")


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    m = meta["machine"]
    v = meta["versions"]
    lines = [MARK_BEGIN, "## Large files (bench/large.py)", "",
             f"- Date: {meta['date']}",
             f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory'] / 2**30:.0f} GiB RAM, "
             f"Linux {m['kernel']}",
             f"- Server: {meta['server']} on 127.0.0.1",
             f"- Python {v.get('python', '?')}, Django {v.get('django', '?')}, "
             f"boto3 {v.get('boto3', '?')} (botocore {v.get('botocore', '?')})",
             *(f"- {LABELS[impl]}: {meta['impl_versions'][impl]}" for impl in meta["impls"]),
             f"- Command: `{meta['command']}`",
             f"- {meta['rounds']} round(s), implementations interleaved (order rotated each "
             f"round), each measurement in a fresh process; reads in chunks of "
             f"{meta['chunk'] // 1024} KiB; median (min–max).",
             "- Wall s is the wall time of the storage call, with the benchmark's own work "
             "in it: making the bytes and hashing them (SHA-256) as save() reads them, "
             "hashing what read() returns. Storage s is the wall time less that work, timed "
             "in the same run around each piece of it. For reads it is the same work for "
             "every implementation (the same chunks hashed); for saves it is not (a storage "
             "that reads the whole file at once makes the source fault in that much fresh "
             "memory, in the source's time), so save ratios are of wall time only. Peak RSS "
             "growth is VmHWM after the call less VmRSS before it; bytes moved are counted "
             "by a TCP proxy (both directions). Ratios: the peer's median time over this "
             "package's (above 1: this package is faster), of the wall time, then for reads "
             "of the storage time.",
             "",
             "| operation | size | implementation | wall s | storage s | MiB/s (wall) "
             "| peak RSS growth MiB | bytes moved MiB | peer / ours (wall, storage) |",
             "|---|---|---|---|---|---|---|---|---|"]
    opname = {"save": "save", "read": "read back", "open10": "open() + read(10)"}
    for r in result["summary"]:
        sec = r["seconds"]
        own = r.get("storage_seconds") if r["op"] == "read" else None
        rate = f"{r['size'] / MiB / sec['median']:.0f}" if r["op"] != "open10" else "–"
        moved = _fmt_range(r["bytes_moved"], MiB, ".1f") if "bytes_moved" in r else "–"
        ratio = "–"
        if "ratio_to_ours" in r:
            ratio = f"{r['ratio_to_ours']:.2f}"
            if "storage_ratio_to_ours" in r:
                ratio += f", {r['storage_ratio_to_ours']:.2f}"
        lines.append(f"| {opname[r['op']]} | {size_label(r['size'])} | {LABELS[r['impl']]} "
                     f"| {_fmt_range(sec, 1, '.2f')} "
                     f"| {_fmt_range(own, 1, '.2f') if own else '–'} | {rate} "
                     f"| {_fmt_range(r['peak_rss_growth'], MiB, '.0f')} | {moved} | {ratio} |")
    if result["targets"]:
        lines += ["", "Issue 7's targets for this package:", ""]
        for t in result["targets"]:
            lines.append(f"- [{'x' if t['met'] else ' '}] {t['what']}: {t['value']}")
    lines.append(MARK_END)
    return "\n".join(lines) + "\n"


def write_results_md(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    if MARK_BEGIN in text and MARK_END in text:
        head, rest = text.split(MARK_BEGIN, 1)
        tail = rest.split(MARK_END, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


# ---- main ------------------------------------------------------------------------------------

def resummarize(path: Path, results_md: Path) -> int:
    result = json.loads(path.read_text())
    result["summary"] = summarize(result["runs"], result["meta"]["impls"])
    result["targets"] = targets(result["summary"])
    path.write_text(json.dumps(result, indent=1) + "\n")
    write_results_md(results_md, markdown(result))
    print(f"rewrote {path} and {results_md} from the runs of {result['meta']['date']}")
    return 0


def target_for(args: argparse.Namespace, bucket: str) -> tuple[dict[str, str], str, Rgw | None]:
    """The server a benchmark measures, with its name: Ceph RGW started here with
    `bucket` (--rgw; the caller makes the bucket and stops the server) or the one
    S3_TEST_ENDPOINT_URL, S3_TEST_ACCESS_KEY, S3_TEST_SECRET_KEY and S3_BENCH_BUCKET
    name. Either way on 127.0.0.1 only."""
    rgw = None
    if args.rgw:
        print("starting Ceph RGW (scripts/rgw)...", flush=True)
        rgw = Rgw(parse_size(args.rgw_mem))
        target = {"endpoint": rgw.endpoint, "access_key": rgw.access_key,
                  "secret_key": rgw.secret_key, "bucket": bucket}
        server = rgw.version
    else:
        try:
            target = {"endpoint": os.environ["S3_TEST_ENDPOINT_URL"],
                      "access_key": os.environ["S3_TEST_ACCESS_KEY"],
                      "secret_key": os.environ["S3_TEST_SECRET_KEY"],
                      "bucket": os.environ.get("S3_BENCH_BUCKET", "test-bucket")}
        except KeyError as e:
            raise SystemExit(f"{e.args[0]} is not set: give --rgw, or the endpoint, keys "
                             "and bucket (S3_BENCH_BUCKET) of an S3 server") from None
        server = args.server or os.environ.get("S3_BENCH_SERVER") or "an S3 server"
    try:
        loopback_only(target["endpoint"])
    except BaseException:
        if rgw is not None:
            rgw.stop()
        raise
    return target, server, rgw


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="16 MiB, 1 round, this package only, the endpoint from the "
                    "environment; writes no RESULTS.md")
    ap.add_argument("--rgw", action="store_true",
                    help="start Ceph RGW (scripts/rgw) for the run and stop it after")
    ap.add_argument("--rgw-mem", default="8G", help="RGW's memstore size (RGW_OSD_MEM)")
    ap.add_argument("--sizes", nargs="+", default=None, help="default: 256M 1G")
    ap.add_argument("--rounds", type=int, default=None, help="default: 3")
    ap.add_argument("--impls", nargs="+", choices=IMPLS, default=None)
    ap.add_argument("--chunk", type=parse_size, default=MiB, help="read() size (1M)")
    ap.add_argument("--ours-python", default=None,
                    help="the python of this package's venv (default: $VENV/bin/python, "
                    "VENV defaulting to the checkout's .venv)")
    ap.add_argument("--out", type=Path, default=None,
                    help="the JSON results (default bench/results-large.json; with --quick "
                    "bench/results-large-quick.json)")
    ap.add_argument("--results-md", type=Path, default=None,
                    help="the Markdown to update (default bench/RESULTS.md; none with --quick)")
    ap.add_argument("--server", default=None, help="what the server is, for the record")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="measure nothing: summarize the runs of this results file again "
                    "and rewrite it and the Markdown (after a change to the summary)")
    args = ap.parse_args(argv)
    if args.from_json is not None:
        return resummarize(args.from_json, args.results_md or HERE / "RESULTS.md")

    if args.quick:
        args.sizes = args.sizes or ["16M"]
        args.rounds = args.rounds or 1
        args.impls = args.impls or ["ours"]
        args.out = args.out or HERE / "results-large-quick.json"
    else:
        args.sizes = args.sizes or ["256M", "1G"]
        args.rounds = args.rounds or 3
        args.impls = args.impls or list(IMPLS)
        args.out = args.out or HERE / "results-large.json"
        args.results_md = args.results_md or HERE / "RESULTS.md"
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")

    venv = Path(os.environ.get("VENV") or ROOT / ".venv")
    if not venv.is_absolute():
        venv = ROOT / venv
    pythons = {"ours": args.ours_python or str(venv / "bin" / "python")}
    for impl, d in PEER_VENVS.items():
        pythons[impl] = str(d / "bin" / "python")
    for impl in args.impls:
        if not os.access(pythons[impl], os.X_OK):
            hint = "make build" if impl == "ours" else "bench/peers.sh"
            raise SystemExit(f"{pythons[impl]} is missing: run {hint} first")

    # a TERM stops the run the way Ctrl-C does, so the gateway is stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rgw = None
    try:
        target, server, rgw = target_for(args, "bench-large")
        if rgw is not None:
            mk = pythons["storages"] if "storages" in args.impls else pythons["ours"]
            run_worker(mk, dict(target, impl="storages", op="mkbucket"))
        measured = measure(args, target, pythons, rgw)
    finally:
        if rgw is not None:
            rgw.stop()

    first = measured["versions"].get("ours") or next(iter(measured["versions"].values()))
    impl_versions = {}
    for impl, v in measured["versions"].items():
        if impl == "ours":
            impl_versions[impl] = (f"django-s3-storage {v.get('django-s3-storage', '?')} from "
                                   f"{v.get('django_s3_storage_path', '?')} (commit "
                                   f"{checkout()}), run by {pythons['ours']}")
        elif impl == "dss015":
            impl_versions[impl] = f"boto3 {v.get('boto3')}, from bench/venvs/dss015"
        else:
            impl_versions[impl] = f"boto3 {v.get('boto3')}, from bench/venvs/storages"
    boto = next((v for v in measured["versions"].values() if "boto3" in v), {})
    command = os.environ.get("BENCH_COMMAND") or shlex.join(
        ["python", "bench/large.py", *(argv if argv is not None else sys.argv[1:])])
    summary = summarize(measured["runs"], args.impls)
    result = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(), "server": server, "command": command,
            "versions": {"python": first.get("python"), "django": first.get("django"),
                         "boto3": boto.get("boto3"), "botocore": boto.get("botocore")},
            "impl_versions": impl_versions, "impls": args.impls, "rounds": args.rounds,
            "sizes": [parse_size(s) for s in args.sizes], "chunk": args.chunk, "seed": SEED,
            "expected_sha256": measured["expected_sha256"],
        },
        "runs": measured["runs"],
        "summary": summary,
        "targets": targets(summary),
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    if args.results_md is not None:
        write_results_md(args.results_md, markdown(result))
        print(f"updated {args.results_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
