"""manage.py s3_sync_meta STORAGE [STORAGE ...] [--prefix P] [--dry-run]

Rewrites the headers of every file in each storage from the current settings.
STORAGE: a STORAGES alias (default, staticfiles) or a dotted path to a storage."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import import_string

BAR = 30  # characters of the progress bar
REDRAW = 0.1  # seconds between two redraws of it


def printable(name: str) -> str:
    # a key with a control character must not forge an output line
    return name if name.isprintable() else repr(name)[1:-1]


class Command(BaseCommand):
    help = (
        "Rewrites the headers (cache control, content type, ACL, storage class, "
        "encryption, metadata) of every file in S3 storages from the current settings."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "storage_path",
            metavar="storage",
            nargs="*",
            help="A STORAGES alias (default, staticfiles) or the dotted path "
            "to a storage, e.g. django.core.files.storage.default_storage",
        )
        parser.add_argument(
            "--prefix", default="", help="Only the files whose names start with this."
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="List the files that would be rewritten; change nothing.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        paths: list[str] = options["storage_path"]
        if not paths:
            raise CommandError(
                "Name at least one storage: a STORAGES alias (default, "
                "staticfiles) or a dotted path such as "
                "django.core.files.storage.default_storage."
            )
        targets = [(path, self.storage(path)) for path in paths]  # all, before any work
        verbosity = int(options.get("verbosity", 1))
        dry_run: bool = options["dry_run"]
        errors: list[tuple[str, BaseException]] = []
        done = 0
        started = time.monotonic()
        for path, storage in targets:
            try:
                names = list(storage.sync_meta_names(options["prefix"]))
            except ValueError as e:
                raise CommandError(f"--prefix: {e}") from None
            except OSError as e:  # the listing failed: the next storage still runs
                errors.append((f"{path} (the listing)", e))
                continue
            before, here = len(errors), 0
            progress = (
                Progress(self, path, len(names))
                if verbosity >= 1 and self.stdout.isatty()
                else None
            )
            for name in storage.sync_meta_iter(names=names, dry_run=dry_run, errors=errors):
                here += 1
                if progress is not None:
                    progress.show(here, len(errors) - before)
                if verbosity >= 2 or (verbosity == 1 and progress is None):
                    self.stdout.write(printable(name))
            done += here
            if progress is not None:
                progress.show(here, len(errors) - before, final=True)
        seconds = time.monotonic() - started
        if verbosity >= 1:
            verb = "would be rewritten" if dry_run else "rewritten"
            self.stdout.write(
                f"{done} file{'s' * (done != 1)} {verb} in {len(targets)} "
                f"storage{'s' * (len(targets) != 1)} in {seconds:.1f} s"
                f"{f', {len(errors)} failed' if errors else ''}."
            )
        if errors:
            for name, error in errors:
                self.stderr.write(f"{printable(name)}: {type(error).__name__}: {error}")
            raise CommandError(
                f"{len(errors)} file{'s' * (len(errors) != 1)} could not be "
                "rewritten (listed above)."
            )

    def storage(self, path: str) -> Any:
        from django.core.files.storage import storages

        if "." not in path:
            try:
                storage = storages[path]
            except Exception as e:  # InvalidStorageError, or the backend's own error
                raise CommandError(f"No storage {path!r} in STORAGES: {e}") from None
        else:
            try:
                storage = import_string(path)
            except ImportError as e:
                raise CommandError(f"Cannot import storage {path!r}: {e}") from None
        if not hasattr(storage, "sync_meta_iter"):
            raise CommandError(f"{path!r} is not an S3 storage (no sync_meta_iter)")
        return storage


class Progress:
    """A bar on a terminal: count, rate and failures, redrawn at most every REDRAW s."""

    def __init__(self, command: BaseCommand, label: str, total: int) -> None:
        self.out, self.label, self.total = command.stdout, label, total
        self.started = time.monotonic()
        self.drawn = -REDRAW
        self.show(0, 0)

    def show(self, rewritten: int, failed: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.drawn < REDRAW:
            return
        self.drawn = now
        count = rewritten + failed
        filled = BAR * count // self.total if self.total else BAR
        rate = count / max(now - self.started, 1e-3)
        self.out.write(
            f"\r{self.label} [{'#' * filled}{'.' * (BAR - filled)}] "
            f"{count}/{self.total} {rate:.0f} files/s"
            f"{f', {failed} failed' if failed else ''}",
            ending="\n" if final else "",
        )
        self.out.flush()
