#!/usr/bin/env python3
"""Regenerate README.md's generated parts: the CLI reference (from --help) and the outputs of the example
sessions (by running them; dataprep.cli.examples). tests/test_docs.py fails when either drifts.

    python bin/update_readme.py              # both
    python bin/update_readme.py --reference  # only the CLI reference (fast)

Examples that read ../shared/data (or DATAPREP_SHARED) keep their text when the real data is absent.
"""

import os
import sys
from pathlib import Path

from dataprep.cli import examples, reference

repo = Path(__file__).resolve().parent.parent
shared = Path(os.environ.get("DATAPREP_SHARED", repo.parent / "shared"))
readme = repo / "README.md"
text = reference.update(readme.read_text(encoding="utf-8"))
if "--reference" not in sys.argv[1:]:
    if not shared.is_dir():
        print(f"no real data at {shared}: its examples keep their current text", file=sys.stderr)
    text = examples.update(text, repo, shared)
readme.write_text(text, encoding="utf-8")
print(f"updated {readme}")
