"""The throwaway PostgreSQL server of the tests (`cifar_mtl.stores.localserver`): started
on first use, once per test process, stopped when that process ends (and, through
PR_SET_PDEATHSIG, even if it is killed), so nothing of it outlives the run.

`server()` skips the calling test (with the reason) when the binaries or psycopg are
missing. `.ci/run` installs Debian's `postgresql`, so CI runs these tests.
"""

from __future__ import annotations

import atexit

import pytest

from cifar_mtl.stores.localserver import Server, find_binary

_SERVER = None


def server() -> Server:
    """This process's server, started on first use; skips the test when it cannot run."""
    global _SERVER
    if _SERVER is None:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            pytest.skip("psycopg is not installed (pip install 'psycopg[binary]')")
        if not (find_binary("initdb") and find_binary("postgres")):
            pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql): PostgreSQL tests skipped")
        _SERVER = Server()
        atexit.register(_SERVER.stop)
    return _SERVER
