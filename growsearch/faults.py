"""Fault injection for tests and ``growsearch bench faults``: really cause the fault.

Set ``GROWSEARCH_INJECT_FAULT`` to ``STAGE:CANDIDATE:ACTION[:MARKER]``, e.g.
``train:c0001:raise`` or ``train:c0001:kill-once:/tmp/marker``. Stages: ``screen`` and
``train`` (per candidate), ``promote`` and ``report`` (candidate ``-``; in the search
process). There the trial raises, its weights become inf so training really diverges
(``nan``), the process kills itself with SIGKILL (``kill-once`` only while MARKER does
not exist, so a retry or resume goes through), or its whole process group gets SIGINT or
SIGTERM (``sigint-once``, ``sigterm-once``: Ctrl-C in a terminal, or a job scheduler
stopping the job). Unset in normal use: one dict lookup.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

ENV = "GROWSEARCH_INJECT_FAULT"


class InjectedFaultError(RuntimeError):
    pass


def maybe_inject(stage: str, cid: str) -> str | None:
    """Cause the configured fault here, if any; returns ``"nan"`` when the caller should
    poison its model's weights (so that the training loop really meets a NaN loss)."""
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
        if action in ("kill", "kill-once", "sigint-once", "sigterm-once"):
            marker = Path(parts[3]) if len(parts) > 3 else None
            if action != "kill" and marker is not None:
                if marker.exists():
                    continue
                marker.write_text("fault injected once")
            if action.startswith("sig"):
                os.killpg(os.getpgid(0), signal.SIGINT if action == "sigint-once" else signal.SIGTERM)
                return None
            os.kill(os.getpid(), signal.SIGKILL)
    return None
