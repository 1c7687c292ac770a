"""manage.py s3_sync_meta STORAGE_PATH [STORAGE_PATH ...]

Rewrites the headers of every file in each storage from the current settings."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import import_string


class Command(BaseCommand):
    help = "Syncronizes the meta information on S3 files."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("storage_path", metavar="storage_path", nargs="*",
                            help="Dotted path to a storage, e.g. "
                                 "django.core.files.storage.default_storage")

    def handle(self, *args: Any, **options: Any) -> None:
        verbosity = int(options.get("verbosity", 1))
        for storage_path in options["storage_path"]:
            try:
                storage = import_string(storage_path)
            except ImportError as e:
                raise CommandError(f"Cannot import storage {storage_path!r}: {e}") from None
            if not hasattr(storage, "sync_meta_iter"):
                raise CommandError(f"{storage_path!r} is not an S3 storage (no sync_meta_iter)")
            for path in storage.sync_meta_iter():
                if verbosity >= 1:
                    # a key with a control character must not forge an output line
                    self.stdout.write(path if path.isprintable() else repr(path)[1:-1])
