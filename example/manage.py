#!/usr/bin/env python
"""The demo site's manage.py; `python example/run.py` (make demo) sets it up and runs it."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
