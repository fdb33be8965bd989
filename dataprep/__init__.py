"""dataprep: exact, fast, reproducible SFT training sets from raw instruction data.

The stage functions are importable without the CLI, e.g.::

    from dataprep.io import read_batches
    from dataprep.normalize import normalize_batch
"""

__version__ = "0.1.0"
