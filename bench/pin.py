"""Where the benchmark's processes run.

On a VM a lock-step exchange runs about five times faster when client and server happen to
share a vCPU (no wake-up across CPUs), and the scheduler moves them at will, so unpinned runs
of one load land in two modes. With pinning on, every server (and all it forks) runs on one
CPU and every load generator on another, as if on two machines. W's two workers share the
server CPU too: W measures what splitting the load over processes costs per transfer, which
two vCPUs (one of them the load's) can show; what a second core adds, they cannot.
"""
from __future__ import annotations

import os

_cpus = sorted(os.sched_getaffinity(0))
SERVER_CPU, LOAD_CPU = (_cpus[0], _cpus[1]) if len(_cpus) >= 2 else (None, None)
enabled = SERVER_CPU is not None


def _to(cpu):
    if not enabled:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def server():
    """preexec_fn for a server's Popen (None when pinning is off)."""
    return _to(SERVER_CPU)


def load():
    """preexec_fn for a load generator's run (None when pinning is off)."""
    return _to(LOAD_CPU)


def describe() -> str:
    return f"servers on CPU {SERVER_CPU}, load generators on CPU {LOAD_CPU}" if enabled else "unpinned"
