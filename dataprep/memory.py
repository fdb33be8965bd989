"""The ``dataprep`` command's own process: at most two glibc malloc arenas, and no idle BLAS thread pool.

Why. glibc gives threads that allocate at the same time arenas of their own (up to eight per core), and memory
freed in one arena serves only later allocations from that arena. ``dataprep tokenize`` allocates from the main
thread, the encode thread, the thread that loads fastokens' vocabulary (~165 MB) and the Rust encoders' thread
pools, so freed memory piled up where no other thread could reuse it: on the 52,002-row bench, peak RSS was
~500 MB with the default, ~415 MB with two arenas, at the same CPU time (``bin/bench_tokenize.py``).

Only the command sets this, at start-up (a library must not change its host's allocator), only with glibc
(elsewhere nothing happens), and never over a ``MALLOC_ARENA_MAX`` the user set.

numpy's OpenBLAS starts a thread per core when numpy is imported, and on the 2-core bench machine that thread
burnt ~0.1 s of CPU in every run (6% of ``dataprep run`` on the bench recipe) though no dataprep stage
multiplies matrices: numpy sorts, counts and hashes here, and training runs on torch's own kernels. So the
command asks OpenBLAS for one thread, again never over the user's own ``OPENBLAS_NUM_THREADS``.
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


def single_blas_thread() -> bool:
    """Ask numpy's OpenBLAS (not imported yet) for no thread pool; True when it was set here."""
    if "OPENBLAS_NUM_THREADS" in os.environ or "numpy" in sys.modules:
        return False
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    return True
