"""Where the time of a large upload goes: wall time, the client's CPU and the
server's CPU (every process whose command line holds --server-match) for one
upload of --size MiB, by this package (single PUT, or the Writer with a part size)
and by boto3 (put_object, upload_fileobj), against the server in S3_TEST_* env.

    scripts/rgw start /tmp/rgw-cpu > /tmp/rgw-cpu.env
    env $(cat /tmp/rgw-cpu.env) .venv/bin/python bench/upload_cpu.py --server-match /tmp/rgw-cpu/ceph.conf
    scripts/rgw stop /tmp/rgw-cpu

Each mode runs in this one process in turn, --rounds times; the output is one line
per upload. The bytes are random and held in memory (so no generator is timed).
"""
from __future__ import annotations

import argparse
import io
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

MiB = 1 << 20
ROOT = Path(__file__).resolve().parent.parent


def server_cpu(match: str) -> float:
    """CPU seconds (user + system) of the server's processes so far."""
    pids = subprocess.run(["pgrep", "-f", match], capture_output=True, text=True).stdout.split()
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512, help="MiB per upload")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--server-match", required=True, help="pgrep -f pattern of the server")
    ap.add_argument("--modes", nargs="+",
                    default=["boto-put", "boto-multipart", "put", "writer-8", "writer-16"])
    args = ap.parse_args()
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    endpoint = os.environ["S3_TEST_ENDPOINT_URL"]
    if not endpoint.startswith("http://127.0.0.1:"):
        sys.exit("only a server on 127.0.0.1")
    keys = dict(aws_access_key_id=os.environ["S3_TEST_ACCESS_KEY"],
                aws_secret_access_key=os.environ["S3_TEST_SECRET_KEY"])
    sys.path.insert(0, str(ROOT))
    import boto3

    from django_s3_storage import _s3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **keys)
    try:
        s3.create_bucket(Bucket="upload-cpu")
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    c = _s3.Client("upload-cpu", endpoint_url=endpoint, region="us-east-1",
                   access_key=keys["aws_access_key_id"],
                   secret_key=keys["aws_secret_access_key"])
    data = os.urandom(MiB) * args.size
    view = memoryview(data)
    for _ in range(args.rounds):
        for mode in args.modes:
            s0, r0, t0 = server_cpu(args.server_match), resource.getrusage(0), time.monotonic()
            if mode == "boto-put":
                s3.put_object(Bucket="upload-cpu", Key="big", Body=data)
            elif mode == "boto-multipart":
                s3.upload_fileobj(io.BytesIO(data), "upload-cpu", "big")
            elif mode == "put":
                c.put_object("big", data)
            else:
                part = int(mode.split("-")[1]) * MiB
                with c.writer("big", part_size=part, threshold=8 * MiB) as w:
                    for i in range(0, len(data), MiB):
                        w.write(view[i:i + MiB])
            t1, r1, s1 = time.monotonic(), resource.getrusage(0), server_cpu(args.server_match)
            client = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
            print(f"{mode:15} {args.size} MiB: wall {t1 - t0:.2f} s, client CPU {client:.2f} s, "
                  f"server CPU {s1 - s0:.2f} s", flush=True)
            c.delete_object("big")


if __name__ == "__main__":
    main()
