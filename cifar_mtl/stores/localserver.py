"""A throwaway PostgreSQL server on this machine, for the tests, the benchmarks and
trying the team setup on one machine: Debian's `postgresql` binaries (on the PATH or
in /usr/lib/postgresql/<version>/bin), a fresh cluster (initdb) in a temporary
folder, listening only on a unix socket in that folder, trust authentication, no
fsync (nothing in it is meant to last). `Server()` starts it; `new_database()` makes
an empty database and returns its URL; `stop()` ends it and deletes the folder. The
server is started with PR_SET_PDEATHSIG, so it stops with the process that started
it even when that process is killed.

Not for real data: a team's server is set up once, with backups (README, Team).
"""

from __future__ import annotations

import ctypes
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

_COUNTER = itertools.count(1)
PR_SET_PDEATHSIG = 1


def find_binary(name: str) -> str | None:
    """`name` (initdb, postgres) on the PATH or in Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                      key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return versions[-1] if versions else None


def _as_user(uid: int | None, gid: int | None, death_signal: int | None):
    """preexec_fn: drop to `uid`/`gid` (PostgreSQL refuses to run as root), then ask the
    kernel to send `death_signal` when the test process dies (after setuid, which clears it)."""
    def run():
        if gid is not None:
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
        if death_signal is not None:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
    return run


class Server:
    """One running cluster: `url(dbname)`, `new_database()`, `stop()`."""

    def __init__(self):
        initdb, postgres = find_binary("initdb"), find_binary("postgres")
        if not (initdb and postgres):
            raise FileNotFoundError("PostgreSQL's initdb/postgres not found (apt-get install -y postgresql)")
        self.folder = Path(tempfile.mkdtemp(prefix="cifar-mtl-pg-"))
        self.data, self.socket = self.folder / "data", self.folder
        uid = gid = None
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres") if _has_user("postgres") else pwd.getpwnam("nobody")
            uid, gid = user.pw_uid, user.pw_gid
            os.chown(self.folder, uid, gid)
        self.user = "cifar"
        subprocess.run(
            [initdb, "-D", str(self.data), "-U", self.user, "--auth=trust", "--no-sync", "-E", "UTF8",
             "--locale=C"],
            check=True, capture_output=True, preexec_fn=_as_user(uid, gid, None), cwd=self.folder,
        )
        self.owner = os.getpid()
        self.proc = subprocess.Popen(
            [postgres, "-D", str(self.data), "-k", str(self.socket), "-c", "listen_addresses=",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=300", "-c", "shared_buffers=32MB"],
            stdout=subprocess.DEVNULL, stderr=open(self.folder / "server.log", "ab"),
            preexec_fn=_as_user(uid, gid, signal.SIGQUIT), cwd=self.folder,
        )
        self._wait_ready()

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{dbname}?host={self.socket}"

    def _wait_ready(self, timeout: float = 60.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.folder / 'server.log').read_text()[-2000:]}")
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def new_database(self) -> str:
        """A new empty database's URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(_COUNTER)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if os.getpid() != self.owner:  # a forked child inherits this object: not its server
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: clients disconnected
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
