"""An exclusive lock on a results folder: one process writes a search at a time.

Two ``growsearch run --resume`` (or two ``growsearch demo``) on one folder would both ask
the study for trials and overwrite each other's records. The lock is ``flock`` on
``DIR/.lock``, which holds the holder's pid, host and start time: a second process gets
one line naming the holder and exit code 2. The kernel drops the lock with its holder's
last file descriptor, so a lock left by ``kill -9`` is stale by construction and the next
process takes it over (and says so). The descriptor is not inherited by child processes
(Ray's workers, MLflow's server), so a killed driver's leftovers never hold the folder.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from growsearch.errors import ConfigError

NAME = ".lock"


class FolderLock:
    """``with FolderLock(out):`` -- hold ``out/.lock`` exclusively, or raise ConfigError."""

    def __init__(self, out: str | Path, command: str = "growsearch") -> None:
        self.out = Path(out)
        self.path = self.out / NAME
        self.command = command
        self.fd: int | None = None

    def holder(self) -> dict[str, object]:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def check(self) -> None:
        """Refuse now, writing nothing, if a live process holds the folder (a peek: the lock
        is taken by :meth:`acquire`, once every other check has passed)."""
        if self.path.is_file():
            fd = self._flock(os.open(self.path, os.O_RDONLY | os.O_CLOEXEC))
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _flock(self, fd: int) -> int:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            who = self.holder()
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(who.get("since", 0)))) \
                if who.get("since") else "unknown time"
            raise ConfigError(f"--out: {self.out} is in use by {who.get('command', 'another process')} (pid "
                              f"{who.get('pid', '?')} on {who.get('host', '?')}, since {since}); wait for it to "
                              "finish or stop it, or choose another folder") from None

    def acquire(self) -> FolderLock:
        self.out.mkdir(parents=True, exist_ok=True)
        fd = self._flock(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666))
        previous = self.holder()
        if previous.get("pid") and (previous.get("pid"), previous.get("host")) != (os.getpid(), socket.gethostname()):
            print(f"growsearch: note: took over the lock of {self.out} left by pid {previous.get('pid')} on "
                  f"{previous.get('host')} (that process is gone)", file=sys.stderr)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
                                  "command": self.command}).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)  # released cleanly: nobody to name, nothing to take over
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
