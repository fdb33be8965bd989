"""The ``dataprep`` command's own process: at most two glibc malloc arenas.

Why. glibc gives threads that allocate at the same time arenas of their own (up to eight per core), and memory
freed in one arena serves only later allocations from that arena. ``dataprep tokenize`` allocates from the main
thread, the encode thread, the thread that loads fastokens' vocabulary (~165 MB) and the Rust encoders' thread
pools, so freed memory piled up where no other thread could reuse it: on the 52,002-row bench, peak RSS was
~500 MB with the default, ~415 MB with two arenas, at the same CPU time (``bin/bench_tokenize.py``).

Only the command sets this, at start-up (a library must not change its host's allocator), only with glibc
(elsewhere nothing happens), and never over a ``MALLOC_ARENA_MAX`` the user set.
"""

from __future__ import annotations

import os
import sys

M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas for this process; True when it was set here."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: their own allocators
            return False
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False
