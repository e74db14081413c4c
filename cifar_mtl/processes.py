"""Processes on this machine: is a pid still the process we started, stop a process
group, and exclusive file locks.

Linux's `/proc` tells a live process from a reused pid: the start time (clock ticks
since boot) and the boot id must match what was recorded when the process started,
and its command line must name what it works on. Without `/proc` (another Unix),
signal 0 is the best available check. Nothing here knows about jobs or databases.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from pathlib import Path


def boot_id() -> str | None:
    """This boot's id (`/proc/sys/kernel/random/boot_id`), None where there is none."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of `pid`, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # The command name may hold spaces and parentheses; the fields after the last ')' do not.
    fields = text[text.rfind(")") + 2 :].split()
    return fields[0], int(fields[19])


def process_start(pid: int) -> int | None:
    """`pid`'s start time in clock ticks since boot, None if it is gone (or no /proc)."""
    stat = proc_stat(pid)
    return stat[1] if stat else None


def process_alive(pid: int | None, start: int | None, boot: str | None, marker: str) -> bool:
    """Whether `pid` is still the process we recorded: alive, not a zombie, same start
    time and boot, and `marker` one of its command-line arguments.

    The start-time and boot checks make a reused pid (another process, or after a
    machine restart) read as dead rather than as ours.
    """
    if not pid:
        return False
    if not Path("/proc").is_dir():  # no procfs: signal 0 is the best we have
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return False  # someone else's process now holds the pid
        return True
    stat = proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    if boot and boot_id() and boot != boot_id():
        return False
    if start is not None and stat[1] != start:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True
    return marker.encode() in cmdline


def signal_group(pid: int, sig: int, wait: float, alive) -> bool:
    """Send `sig` to the process group led by `pid` while `alive()` says it is ours.

    Returns True if it is still alive after `wait` seconds. The group reaches the
    process's children too (a process started with `start_new_session` leads its group).
    """
    if not alive():
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + wait
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive()


def stop_group(pid: int, grace: float, alive) -> bool:
    """SIGTERM the group led by `pid`, then SIGKILL after `grace` s; True if it needed SIGKILL."""
    if not signal_group(pid, signal.SIGTERM, grace, alive):
        return False
    signal_group(pid, signal.SIGKILL, 10.0, alive)
    return True


def describe_exit(code: int | None, usage_code: int = 2) -> str:
    """A process's end in words, from its exit code (negative: killed by that signal)."""
    if code is None:
        return "the worker process is gone (killed, out of memory, or the machine restarted)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (often the out-of-memory killer)" if -code == signal.SIGKILL else ""
        return f"the worker was killed by {name}{hint}"
    if code == usage_code:
        return f"the worker refused its configuration (exit code {usage_code})"
    return f"the worker exited with code {code}"


def _flock(fd: int, wait: float) -> bool:
    """Take an exclusive flock on `fd`, retrying for `wait` s; whether it was taken."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def try_lock(path: Path, release: bool = False, wait: float = 0.0):
    """Take an exclusive flock on `path` (created if missing), retrying for `wait` s: the fd,
    or None if another process holds it. With `release=True` let go at once and return
    True/False (was it free)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if not _flock(fd, wait):
        os.close(fd)
        return False if release else None
    if release:
        os.close(fd)
        return True
    return fd


@contextlib.contextmanager
def folder_lock(folder: Path, timeout: float = 60.0):
    """Hold an exclusive flock on the folder itself for the `with` block (no lock file left
    behind); TimeoutError after `timeout` s. Yields the folder's fd (e.g. to fsync it)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        if not _flock(fd, timeout):
            raise TimeoutError(f"another process held the lock on {folder} for {timeout:g} s")
        yield fd
    finally:
        os.close(fd)  # closing the fd lets go of the lock
