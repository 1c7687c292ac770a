"""The small-operation benchmark: import + first url(), url() variants, exists / size /
open().read() / save / delete of 1 KiB, listdir over 1,000 and 10,000 keys, 8 threads
of mixed small ops, and a small GET against boto3's own get_object, through the
Django storage API of this package and its peers (django-s3-storage 0.15.0,
django-storages 1.14.6, django-capo-s3 0.7.1; bench/peers.sh makes their venvs).

    make bench                               # with bench/collectstatic.py, on Ceph RGW
    python bench/small.py --rgw              # Ceph RGW started and stopped here
    python bench/small.py --quick --out F    # 1 round, few iterations, the peers whose
                                             # venvs exist (--impls ours: this package
                                             # only), against S3_TEST_ENDPOINT_URL etc.

Every measurement runs in a fresh process (bench/small_worker.py) of the
implementation's venv; the implementations are interleaved and their order rotates
from round to round. Figures: medians over the rounds, with min-max, and the ratio
of the best peer's figure to ours (> 1: ours is better).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import large  # noqa: E402  (worker_env, Rgw, machine, checkout, loopback_only)

IMPLS = ("ours", "dss015", "storages", "capo")
LABELS = {"ours": "this package", "dss015": "0.15", "storages": "d-s", "capo": "capo",
          "boto3": "boto3 get_object"}
VENVS = {"dss015": "dss015", "storages": "storages", "capo": "capo", "boto3": "storages"}
MARK_BEGIN = "<!-- bench-small:begin -->"
MARK_END = "<!-- bench-small:end -->"

# (row key, label, unit, better: "low" | "high", target ratio or None, absolute target)
ROWS: list[tuple[str, str, str, str, float | None, float | None]] = [
    ("import.wall", "import + first url(): wall", "ms", "low", 20, None),
    ("import.rss_added", "import + first url(): RSS added", "MiB", "low", 3, None),
    ("url.presigned", "url() presigned, CPU per call", "us", "low", 60, 3e-6),
    ("url.plain", "url() plain, CPU per call", "us", "low", 10, 0.5e-6),
    ("url.public", "url() public URL / custom domain, CPU per call", "us", "low", 10, 0.5e-6),
    ("ops.exists.cpu", "exists(), CPU per op", "us", "low", 15, None),
    ("ops.size.cpu", "size(), CPU per op", "us", "low", 15, None),
    ("ops.read.cpu", "open().read() 1 KiB, CPU per op", "us", "low", 15, None),
    ("ops.save.cpu", "save() 1 KiB, CPU per op", "us", "low", 15, None),
    ("ops.delete.cpu", "delete(), CPU per op", "us", "low", 15, None),
    ("ops.exists.wall", "exists(), wall per op", "us", "low", None, None),
    ("ops.size.wall", "size(), wall per op", "us", "low", None, None),
    ("ops.read.wall", "open().read() 1 KiB, wall per op (small GET)", "us", "low", None, None),
    ("ops.save.wall", "save() 1 KiB, wall per op", "us", "low", None, None),
    ("ops.delete.wall", "delete(), wall per op", "us", "low", None, None),
    ("listdir.small.cpu", "listdir {small} keys, CPU", "ms", "low", 20, None),
    ("listdir.large.cpu", "listdir {large} keys, CPU", "ms", "low", 20, None),
    ("threads.ops_per_s", "8 threads mixed small ops, ops/s", "ops/s", "high", 4, None),
]
SCALE = {"ms": 1e3, "us": 1e6, "MiB": 1 / (1024 * 1024), "ops/s": 1.0}


def run_worker(python: str, cfg: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    if cfg["impl"] == "ours" and "PYTHONPATH" in large.worker_env("ours"):
        large.compile_checkout(python)  # else a stale .pyc: storage.py compiled on import
    proc = subprocess.run([python, str(HERE / "small_worker.py")], input=json.dumps(cfg),
                          capture_output=True, text=True, timeout=timeout,
                          env=large.worker_env(cfg["impl"]), cwd=str(HERE))
    if proc.returncode != 0:
        raise SystemExit(f"worker {cfg['impl']} {cfg['op']} failed ({proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def flatten(res: dict[str, Any]) -> dict[str, float]:
    """The worker's answer as row key -> figure."""
    op, out = res["op"], {}
    if op == "import":
        out = {"import.wall": res["wall"], "import.rss_added": res["rss_added"]}
    elif op == "url":
        out = {f"url.{v}": res[v] for v in ("presigned", "plain", "public")}
    elif op == "ops":
        for o in ("exists", "size", "read", "save", "delete"):
            out[f"ops.{o}.cpu"] = res[o]["cpu"]
            out[f"ops.{o}.wall"] = res[o]["wall"]
    elif op == "listdir":
        out = {f"listdir.{res['which']}.cpu": res["cpu"]}
    elif op == "threads":
        out = {"threads.ops_per_s": res["ops_per_s"]}
    elif op == "getobject":
        out = {"getobject.wall": res["getobject"]["wall"]}
    return out


def measure(args: argparse.Namespace, target: dict[str, str],
            pythons: dict[str, str]) -> dict[str, Any]:
    impls = list(args.impls)
    run_id = uuid.uuid4().hex[:8]
    base = dict(target)
    listings = {"small": args.list_small, "large": args.list_large}
    # the listing prefixes, filled once by this package (not measured)
    for which, keys in listings.items():
        print(f"populating {keys} keys...", flush=True)
        run_worker(pythons["ours"], dict(base, impl="ours", op="populate", keys=keys,
                                         prefix=f"bench-small-{run_id}/list-{which}/"),
                   timeout=3600)
    runs: list[dict[str, Any]] = []
    versions: dict[str, Any] = {}
    n = args.n
    for rnd in range(args.rounds):
        order = impls[rnd % len(impls):] + impls[:rnd % len(impls)]
        jobs: list[dict[str, Any]] = [{"op": "import"}, {"op": "url", "n": n * 10},
                                      {"op": "ops", "n": n},
                                      {"op": "threads", "n": max(5, n // 4)}]
        jobs += [{"op": "listdir", "which": w, "n": 3 if args.rounds > 1 else 1}
                 for w in listings]
        for job in jobs:
            for impl in order:
                cfg = dict(base, impl=impl, **job,
                           prefix=f"bench-small-{run_id}/{impl}-{rnd}-{job['op']}/")
                if job["op"] == "listdir":
                    cfg["prefix"] = f"bench-small-{run_id}/list-{job['which']}/"
                print(f"round {rnd + 1}/{args.rounds}: {impl} {job['op']}", flush=True)
                res = run_worker(pythons[impl], cfg)
                if job["op"] == "listdir":
                    res["which"] = job["which"]
                    if res["files"] != listings[job["which"]]:
                        raise SystemExit(f"{impl} listdir saw {res['files']} keys, not "
                                         f"{listings[job['which']]}")
                versions[impl] = res["versions"]
                runs.append({"round": rnd, "impl": impl, "op": job["op"],
                             "figures": flatten(res)})
        if "boto3" in pythons:
            res = run_worker(pythons["boto3"], dict(base, impl="boto3", op="getobject", n=n,
                                                    prefix=f"bench-small-{run_id}/boto3-{rnd}/"))
            versions["boto3"] = res["versions"]
            runs.append({"round": rnd, "impl": "boto3", "op": "getobject",
                         "figures": flatten(res)})
    return {"runs": runs, "versions": versions, "run_prefix": f"bench-small-{run_id}/"}


def stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def summarize(runs: list[dict[str, Any]], impls: list[str], listings: dict[str, int]
              ) -> list[dict[str, Any]]:
    by: dict[tuple[str, str], list[float]] = {}
    for r in runs:
        for key, value in r["figures"].items():
            by.setdefault((key, r["impl"]), []).append(value)
    rows = []
    for key, label, unit, better, ratio_target, abs_target in ROWS:
        row: dict[str, Any] = {"row": key, "label": label.format(
            small=f"{listings['small']:,}", large=f"{listings['large']:,}"),
            "unit": unit, "better": better, "impls": {}}
        for impl in impls:
            if (key, impl) in by:
                row["impls"][impl] = stats(by[(key, impl)])
        add_ratio(row, ratio_target, abs_target)
        rows.append(row)
    # the small GET: ours (and the storages) against boto3's own get_object
    row = {"row": "small_get.wall", "label": "small GET 1 KiB, wall: open().read() vs "
           "boto3 get_object", "unit": "us", "better": "low", "impls": {}}
    for impl in impls:
        if ("ops.read.wall", impl) in by:
            row["impls"][impl] = stats(by[("ops.read.wall", impl)])
    if ("getobject.wall", "boto3") in by:
        row["impls"]["boto3"] = stats(by[("getobject.wall", "boto3")])
    add_ratio(row, 5, None, peers=("boto3",))
    rows.append(row)
    return rows


def add_ratio(row: dict[str, Any], ratio_target: float | None, abs_target: float | None,
              peers: tuple[str, ...] | None = None) -> None:
    """The best peer's median over ours (for "high" rows ours over the best peer's): > 1
    means ours is better; and whether the issue's target is met."""
    figures = row["impls"]
    ours = figures.get("ours", {}).get("median")
    others = {i: f["median"] for i, f in figures.items()
              if i != "ours" and (peers is None or i in peers)}
    row["ratio"] = row["best_peer"] = None
    if ours and others:
        if row["better"] == "low":
            best = min(others, key=lambda i: others[i])
            row["ratio"] = others[best] / ours
        else:
            best = max(others, key=lambda i: others[i])
            row["ratio"] = ours / others[best]
        row["best_peer"] = best
    met: bool | None = None
    if ratio_target is not None and row["ratio"] is not None:
        met = row["ratio"] >= ratio_target
    if abs_target is not None and ours is not None:
        met = (met is not False) and ours <= abs_target
    row["target"] = (f">= {ratio_target:g}x" if ratio_target else "") + (
        f"{' and ' if ratio_target else ''}<= {abs_target * 1e6:g} us" if abs_target else "")
    row["met"] = met


def fmt(value: float, unit: str) -> str:
    v = value * SCALE[unit]
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    impls = [i for i in meta["impls"]] + (["boto3"] if "boto3" in meta["venvs"] else [])
    lines = [MARK_BEGIN, "## Small operations (bench/small.py)", "",
             f"{meta['date']}, {meta['machine']['cpu']} ({meta['machine']['nproc']} cores), "
             f"{meta['server']}; `{meta['command']}`; {meta['rounds']} rounds, medians "
             "(min-max); ratio = best peer / ours (> 1: ours better).", "",
             "Versions: " + "; ".join(f"{LABELS.get(i, i)}: " + ", ".join(
                 f"{k} {v}" for k, v in sorted(meta["versions"].get(i, {}).items()))
                 for i in impls if i in meta["versions"]), "",
             "| row | unit | " + " | ".join(LABELS.get(i, i) for i in impls)
             + " | ratio | target |",
             "|---|---|" + "---|" * len(impls) + "---|---|"]
    for row in result["summary"]:
        cells = []
        for i in impls:
            f = row["impls"].get(i)
            cells.append("" if f is None else f"{fmt(f['median'], row['unit'])} "
                         f"({fmt(f['min'], row['unit'])}-{fmt(f['max'], row['unit'])})")
        ratio = "" if row["ratio"] is None else f"{row['ratio']:.3g}x vs {row['best_peer']}"
        met = {True: "met", False: "NOT met", None: "-"}[row["met"]]
        lines.append(f"| {row['label']} | {row['unit']} | " + " | ".join(cells)
                     + f" | {ratio} | {row['target'] or '-'} {met if row['target'] else ''} |")
    lines.append(MARK_END)
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str, begin: str, end: str, before: str) -> None:
    """Replaces the text between the markers begin/end, or adds the section just
    before the marker `before` (the large-file section), leaving the rest alone."""
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section.rstrip("\n") + rest.split(end, 1)[1]
    elif before in text:
        head, rest = text.split(before, 1)
        text = head + section + "\n" + before + rest
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def pythons_for(args: argparse.Namespace, wanted: list[str]) -> dict[str, str]:
    venv = Path(os.environ.get("VENV") or ROOT / ".venv")
    if not venv.is_absolute():
        venv = ROOT / venv
    pythons = {"ours": args.ours_python or str(venv / "bin" / "python")}
    for impl in [*wanted, "boto3"]:
        if impl in VENVS:
            p = HERE / "venvs" / VENVS[impl] / "bin" / "python"
            if os.access(p, os.X_OK):
                pythons[impl] = str(p)
    return pythons


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="1 round, few iterations, small listings; writes no RESULTS.md")
    ap.add_argument("--rgw", action="store_true", help="start Ceph RGW (scripts/rgw) and stop it")
    ap.add_argument("--rgw-mem", default="4G")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--n", type=int, default=None, help="calls per op (url(): 10x)")
    ap.add_argument("--impls", nargs="+", choices=IMPLS, default=None,
                    help="default: ours and every peer whose venv exists")
    ap.add_argument("--ours-python", default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--results-md", type=Path, default=None)
    ap.add_argument("--server", default=None)
    args = ap.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.n = args.n or (20 if args.quick else 200)
    args.list_small, args.list_large = (100, 300) if args.quick else (1000, 10000)
    if not args.quick:
        args.results_md = args.results_md or HERE / "RESULTS.md"
    args.out = args.out or HERE / ("results-small-quick.json" if args.quick
                                   else "results-small.json")
    pythons = pythons_for(args, list(IMPLS))
    args.impls = args.impls or [i for i in IMPLS if i in pythons]
    for impl in args.impls:
        if impl not in pythons or not os.access(pythons[impl], os.X_OK):
            raise SystemExit(f"no venv for {impl}: run bench/peers.sh (or make build)")
    if "storages" not in args.impls:
        pythons.pop("boto3", None)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rgw = None
    try:
        target, server, rgw = large.target_for(args, "bench-small")
        if rgw is not None:
            large.run_worker(pythons.get("storages", pythons["ours"]),
                             dict(target, impl="storages", op="mkbucket"))
        measured = measure(args, target, pythons)
    finally:
        if rgw is not None:
            rgw.stop()

    listings = {"small": args.list_small, "large": args.list_large}
    command = os.environ.get("BENCH_COMMAND") or shlex.join(
        ["python", "bench/small.py", *(argv if argv is not None else sys.argv[1:])])
    result = {
        "meta": {"date": datetime.datetime.now(datetime.timezone.utc).strftime(
                     "%Y-%m-%d %H:%M UTC"),
                 "machine": large.machine(), "server": server, "command": command,
                 "checkout": large.checkout(), "versions": measured["versions"],
                 "impls": args.impls, "venvs": sorted(pythons), "rounds": args.rounds,
                 "n": args.n, "listings": listings},
        "runs": measured["runs"],
        "summary": summarize(measured["runs"], args.impls, listings),
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))
    print(f"wrote {args.out}")
    if args.results_md is not None:
        write_section(args.results_md, markdown(result), MARK_BEGIN, MARK_END,
                      large.MARK_BEGIN)
        print(f"updated {args.results_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
