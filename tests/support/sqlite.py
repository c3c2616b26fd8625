"""A migrated SQLite file for each test, copied from one migrated once per run (a migration costs ~60 ms)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from watchword.store import database


def migrated_sqlite_url(directory: Path, name: str = "watchword.db") -> str:
    """The URL of `directory/name`, a fresh SQLite file holding the schema at the head revision."""
    target = directory / name
    shutil.copyfile(_migrated_template(), target)
    return f"sqlite:///{target}"


@functools.cache
def _migrated_template() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="watchword-schema-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    template = directory / "template.db"
    database.migrate(f"sqlite:///{template}")
    return template
