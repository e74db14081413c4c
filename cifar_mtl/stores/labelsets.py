"""Label sets in the team database: the `label_sets` table (component `labelsets`).

With `CIFAR_MTL_DB` set, every version of a label set built anywhere is also a row
here, so a team whose members (or app replicas) do not share one artifacts folder
sees the same sets (`cifar_mtl.labelsets`). One row per (name, version): who built
it and when, its manifest (JSON text) and its rows (the CSV text of the file,
byte for byte). Rows are only ever added; the primary key makes two builders
racing for one version number fail one insert, which then takes the next number.

This module only stores rows; `cifar_mtl.labelsets` builds, writes and reads sets.
"""

from __future__ import annotations

from cifar_mtl.errors import UserError
from cifar_mtl.stores.database import Component, Database, SchemaError, now, rows_as_dicts, statements_migration

LABELSETS_SCHEMA_VERSION = 1
COLUMNS = ("name", "version", "created_at", "created_by", "manifest", "rows_csv")


class LabelSetStoreError(UserError):
    """The label-set table cannot be used, or a version is already taken."""


class LabelSetSchemaError(LabelSetStoreError, SchemaError):
    """The database cannot hold label sets (foreign, damaged, newer than this code)."""


class VersionTaken(LabelSetStoreError):
    """Another builder recorded this (name, version) first: take the next number."""


_SCHEMA_1 = (
    """CREATE TABLE label_sets (
        name TEXT NOT NULL,
        version INTEGER NOT NULL CHECK (version >= 1),
        created_at TEXT NOT NULL,
        created_by TEXT,
        manifest TEXT NOT NULL,
        rows_csv TEXT NOT NULL,
        PRIMARY KEY (name, version)
    )""",
)


# The same statements on both engines: TEXT and INTEGER mean the same in each here.
_migration_1 = statements_migration(_SCHEMA_1)


COMPONENT = Component(
    name="labelsets", version=LABELSETS_SCHEMA_VERSION, migrations={1: _migration_1},
    postgres_migrations={1: _migration_1}, tables={1: {"label_sets": COLUMNS}},
    label="label set", owner="LabelSetTable", schema_error=LabelSetSchemaError,
    closed_error=LabelSetStoreError,
)


class LabelSetTable:
    """The `label_sets` table of the database at `target` (an SQLite file or a postgresql:// URL)."""

    def __init__(self, target, *, timeout: float = 30.0):
        self._db = Database(target, COMPONENT, timeout=timeout)
        self.where = self._db.where

    def close(self) -> None:
        self._db.close()

    def schema_version(self) -> int:
        return self._db.schema_version()

    def add(self, name: str, version: int, manifest_json: str, rows_csv: str, created_by: str | None) -> None:
        """Record one version; `VersionTaken` when (name, version) exists already."""
        try:
            with self._db.write() as conn:
                conn.execute(
                    "INSERT INTO label_sets (name, version, created_at, created_by, manifest, rows_csv) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (name, int(version), now(), created_by, manifest_json, rows_csv),
                )
        except self._db.engine.IntegrityError:
            raise VersionTaken(f"label set {name!r} v{version} is already recorded in {self.where}") from None

    def latest_version(self, name: str) -> int:
        """The highest recorded version of `name`, 0 when there is none."""
        with self._db.use() as conn:
            row = conn.execute("SELECT MAX(version) FROM label_sets WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def versions(self) -> list[dict]:
        """Every recorded version without its rows: name, version, created_at, created_by, manifest."""
        with self._db.use() as conn:
            return rows_as_dicts(conn.execute(
                "SELECT name, version, created_at, created_by, manifest FROM label_sets ORDER BY name, version"
            ))

    def get(self, name: str, version: int) -> dict | None:
        """One version with its manifest and rows_csv, or None."""
        with self._db.use() as conn:
            found = rows_as_dicts(conn.execute(
                "SELECT * FROM label_sets WHERE name = ? AND version = ?", (name, int(version))
            ))
        return found[0] if found else None
