"""The command caps glibc's malloc arenas for its own process, unless the user chose a number."""

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
