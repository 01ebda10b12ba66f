"""A child process that ends when its parent ends, without a thread polling for it.

On Linux, `prctl(PR_SET_PDEATHSIG, sig)` asks the kernel to send `sig` to a process when its
parent exits, however it exits (SIGKILL and the OOM killer included), and the request survives
`exec`. Two things to know about it:
- "parent" is the *thread* that started the child: the launcher starts every child from its one
  thread, and a worker grows its OCR pool from its event loop's thread (the main one);
- the parent may die before the child asks; the child checks `getppid()` right after asking, so
  it never waits for a signal that was already missed.
Elsewhere (no `prctl`) only the check is made: a child outlives a parent killed with SIGKILL.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
# The exit code of a process whose parent was already gone when it started.
EXIT_ORPHANED = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


# Loaded at import, so nothing is loaded between fork and exec in `preexec_fn`.
_prctl = _load_prctl()


def end_with_parent(parent_pid: int, signum: int = signal.SIGTERM) -> None:
    """Have `signum` sent to this process when its parent exits; exit now if `parent_pid` is
    already gone. Called in the child: as a `preexec_fn`, or in a pool's initializer."""
    if _prctl is not None:
        _prctl(ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(signum))
    if os.getppid() != parent_pid:
        os._exit(EXIT_ORPHANED)


def parent_death_signal() -> int:
    """The signal this process gets when its parent exits (0 for none, or without prctl)."""
    if _prctl is None:
        return 0
    value = ctypes.c_int(0)
    _prctl(ctypes.c_int(PR_GET_PDEATHSIG), ctypes.byref(value))
    return value.value
