"""The command caps glibc's malloc arenas and BLAS threads for its own process, unless the user chose a number."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dataprep.memory import limit_malloc_arenas

CHECK = "from dataprep.memory import limit_malloc_arenas; print(limit_malloc_arenas())"


def run(env: dict[str, str]) -> str:
    return subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_arenas_are_capped_on_glibc_unless_the_user_set_them() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    import ctypes

    glibc = hasattr(ctypes.CDLL(None), "gnu_get_libc_version")
    assert run(env) == str(glibc)
    assert run({**env, "MALLOC_ARENA_MAX": "8"}) == "False"


def test_elsewhere_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert limit_malloc_arenas() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads in /proc")
def test_the_command_runs_numpy_without_a_blas_thread_pool() -> None:
    """A dataprep command's process holds no OpenBLAS worker thread after numpy is imported (one thread in all,
    the main one), unless the user asked for a number of BLAS threads."""
    code = ("import os, sys; from dataprep.memory import single_blas_thread; print(single_blas_thread()); "
            "import numpy; print(len(os.listdir('/proc/self/task')))")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "1"]
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OPENBLAS_NUM_THREADS": "2"},
                         capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "False"
