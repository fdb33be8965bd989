#!/usr/bin/env python3
"""Regenerate the CLI reference block of README.md from the commands' --help (tests fail if it drifts)."""

from pathlib import Path

from dataprep.cli.reference import update

readme = Path(__file__).resolve().parent.parent / "README.md"
readme.write_text(update(readme.read_text(encoding="utf-8")), encoding="utf-8")
print(f"updated {readme}")
