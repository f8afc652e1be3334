"""A scratch PostgreSQL database per benchmark, cloned from a migrated template.

Migrating a fresh database takes most of a quick benchmark's time, so the template
(`bench_template_<database>_<migrations digest>`) is kept between runs; each benchmark gets
a copy (`CREATE DATABASE … TEMPLATE`, about a second) and drops it after. The name carries
a digest of every migration file, so a renumbered or edited migration gets a new template
instead of "migrating forward" a template that already holds its tables.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.apps import apps
from django.db import connection


def migrations_digest() -> str:
    """A short hash of every installed app's migration files: names and contents."""
    digest = hashlib.sha256()
    for config in sorted(apps.get_app_configs(), key=lambda c: c.label):
        folder = Path(config.path) / "migrations"
        for path in sorted(folder.glob("*.py")) if folder.is_dir() else ():
            digest.update(f"{config.label}/{path.name}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


@contextmanager
def scratch_database(label: str) -> Iterator[str]:
    """Point the default connection at a fresh migrated database; yields its name."""
    base = connection.settings_dict["NAME"]
    template = f"bench_template_{base}_{migrations_digest()}"
    name = f"bench_{label}_{base}"
    connection.settings_dict.setdefault("TEST", {})["NAME"] = template
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=True, serialize=False)
    connection.close()
    quote = connection.ops.quote_name
    with connection._nodb_cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {quote(name)}")
        cursor.execute(f"CREATE DATABASE {quote(name)} TEMPLATE {quote(template)}")
    connection.settings_dict["NAME"] = name
    try:
        yield name
    finally:
        connection.close()
        connection.settings_dict["NAME"] = base
        with connection._nodb_cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {quote(name)}")
