"""The demo site on a local S3 server: what `make demo` runs.

Starts moto's S3 server on 127.0.0.1 (a free port) with two buckets, demo-media
(private: the uploads, with presigned links) and demo-static (public: the admin's
static files), migrates a SQLite database in a temporary folder, creates the admin
user demo (password demo), runs this package's collectstatic into demo-static, and
serves the site with Django's runserver on http://127.0.0.1:8000/ until Ctrl-C.

    python example/run.py [--port 8000] [--seconds N]   # N: stop by itself after N s
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]  # demo_site; servers.MotoServer

from servers import MotoServer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--seconds", type=float, default=0, help="stop after this long (0: never)")
    args = ap.parse_args()
    server = MotoServer()
    tmp = tempfile.mkdtemp(prefix="s3-demo-")
    try:
        for bucket in ("demo-media", "demo-static"):
            server.create_bucket(bucket)
        os.environ.update(DEMO_S3_ENDPOINT=server.endpoint, DEMO_DIR=tmp,
                          DJANGO_SETTINGS_MODULE="demo_site.settings")
        import django

        django.setup()
        from django.contrib.auth.models import User
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        User.objects.create_superuser("demo", "demo@example.com", "demo")
        call_command("collectstatic", interactive=False, verbosity=1)
        print(f"S3 server (moto): {server.endpoint} (buckets demo-media, demo-static)\n"
              f"Site: http://127.0.0.1:{args.port}/  Admin: http://127.0.0.1:{args.port}/admin/"
              f" (user demo, password demo). Ctrl-C stops.", flush=True)
        if args.seconds > 0:
            timer = threading.Timer(args.seconds, os.kill, (os.getpid(), signal.SIGINT))
            timer.daemon = True
            timer.start()
        call_command("runserver", f"127.0.0.1:{args.port}", use_reloader=False)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
