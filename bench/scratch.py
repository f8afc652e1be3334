"""A scratch PostgreSQL database per benchmark, cloned from a migrated template.

Migrating a fresh database takes most of a quick benchmark's time, so the template
(`bench_template_<database>`) is kept between runs and only migrated forward; each
benchmark gets a copy (`CREATE DATABASE … TEMPLATE`, about a second) and drops it after.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


@contextmanager
def scratch_database(label: str) -> Iterator[str]:
    """Point the default connection at a fresh migrated database; yields its name."""
    base = connection.settings_dict["NAME"]
    template = f"bench_template_{base}"
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
