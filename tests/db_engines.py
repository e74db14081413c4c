"""Fixtures that run a test once per database engine: SQLite (a file in the test's
folder) and PostgreSQL (a new database on the throwaway server of
`tests.postgres_server`; skipped with the reason when PostgreSQL is not installed).

Import the fixtures a module needs (`from tests.db_engines import db_target`); each is
function-scoped, and the server behind them is one per test process.
"""

import pytest

from cifar_mtl.stores.database import DB_ENV, engine_for
from tests import postgres_server

ENGINES = ["sqlite", "postgresql"]


def new_target(engine: str, folder):
    """A fresh, empty database for `engine`: a file path under `folder`, or a URL."""
    if engine == "sqlite":
        return folder / "reviews.sqlite"
    return postgres_server.server().new_database()


@pytest.fixture(params=ENGINES)
def db_target(request, tmp_path):
    """A fresh database: an SQLite file path, or a postgresql:// URL."""
    return new_target(request.param, tmp_path)


@pytest.fixture(params=ENGINES)
def engine_home(request, home, monkeypatch):
    """The test's artifacts home, with the job queue and reviews in SQLite (the home's
    file) or in PostgreSQL (`CIFAR_MTL_DB` set to a fresh database). Request it before
    fixtures that open the database (e.g. `runner`)."""
    if request.param == "postgresql":
        monkeypatch.setenv(DB_ENV, new_target("postgresql", None))
    return home


def raw(target):
    """A connection of `target`'s engine outside any store (`?` placeholders, autocommit),
    for tests that look at or tamper with the tables directly. Close it after use."""
    return engine_for(target).connect(target, 10.0)


def is_postgres(target) -> bool:
    return engine_for(target).name == "postgresql"
