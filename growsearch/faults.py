"""Fault injection for tests and ``growsearch bench faults``: really cause the fault.

Set ``GROWSEARCH_INJECT_FAULT`` to ``STAGE:CANDIDATE:ACTION[:MARKER]``, e.g.
``train:c0001:raise`` or ``train:c0001:kill-once:/tmp/marker``. Stages: ``screen`` and
``train`` (per candidate, in whichever process runs the trial: the search's own or a Ray
worker), ``save`` (a trained candidate's checkpoint), ``promote`` and ``report``
(candidate ``-``; in the search process). There the trial raises, its weights become inf
so training really diverges (``nan``), the process kills itself with SIGKILL
(``kill-once`` only while MARKER does not exist, so a retry or resume goes through), the
search's whole process group gets SIGINT or SIGTERM (``sigint-once``, ``sigterm-once``:
Ctrl-C in a terminal, or a job scheduler stopping the job), or the disk is full for the
checkpoint being saved (``disk-full-once``: the file-size limit drops to 16 KiB, so the
operating system itself refuses the write with EFBIG). ``pause`` holds the process there
while MARKER exists (it is created on arrival; at most 10 minutes), so that a test can act
at a known point of a running search instead of racing it. Unset in normal use: one dict
lookup.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

ENV = "GROWSEARCH_INJECT_FAULT"
# the search's process group: Ray runs trials in processes of its own group, and a signal
# fault must reach the search as Ctrl-C in its terminal would, wherever the hook fires
GROUP_ENV = "GROWSEARCH_FAULT_PGID"
FULL_DISK_BYTES = 16 * 1024


class InjectedFaultError(RuntimeError):
    pass


def remember_search_group() -> None:
    """Called by the search process before any trial starts (and before Ray starts, whose
    workers inherit the environment): signal faults fired in a trial stop this group."""
    if os.environ.get(ENV):
        os.environ[GROUP_ENV] = str(os.getpgid(0))


def maybe_inject(stage: str, cid: str) -> str | None:
    """Cause the configured fault here, if any; returns ``"nan"`` when the caller should
    poison its model's weights (so that the training loop really meets a NaN loss), and
    ``"disk-full"`` when the caller's next writes should meet a full disk (see
    :func:`fault_during`)."""
    spec = os.environ.get(ENV)
    if not spec:
        return None
    for item in spec.split(","):
        parts = item.split(":")
        if len(parts) < 3 or parts[0] != stage or parts[1] != cid:
            continue
        action = parts[2]
        if action == "raise":
            raise InjectedFaultError(f"injected fault in {stage} of {cid}")
        if action == "nan":
            return "nan"
        if action == "pause" and len(parts) > 3:
            marker = Path(parts[3])
            marker.write_text(f"paused at {stage} of {cid} (pid {os.getpid()}); delete this file to go on")
            deadline = time.monotonic() + 600
            while marker.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            continue
        if action in ("kill", "kill-once", "sigint-once", "sigterm-once", "disk-full-once"):
            marker = Path(parts[3]) if len(parts) > 3 else None
            if action != "kill" and marker is not None:
                if marker.exists():
                    continue
                marker.write_text("fault injected once")
            if action == "disk-full-once":
                return "disk-full"
            if action.startswith("sig"):
                group = int(os.environ.get(GROUP_ENV) or os.getpgid(0))
                os.killpg(group, signal.SIGINT if action == "sigint-once" else signal.SIGTERM)
                return None
            os.kill(os.getpid(), signal.SIGKILL)
    return None


@contextlib.contextmanager
def fault_during(stage: str, cid: str) -> Iterator[None]:
    """The configured fault of ``stage`` for the writes inside the block: with
    ``disk-full-once`` files cannot grow beyond :data:`FULL_DISK_BYTES` until the block
    ends (Python ignores SIGXFSZ, so a write raises ``OSError: File too large``)."""
    if maybe_inject(stage, cid) != "disk-full":
        yield
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    limit = FULL_DISK_BYTES if hard == resource.RLIM_INFINITY else min(FULL_DISK_BYTES, hard)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
