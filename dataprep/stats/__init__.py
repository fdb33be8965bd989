"""``dataprep stats``: what a dataset holds, as text, JSON, one self-contained HTML page, or PNG plots.

:func:`compute_stats` reads the data and returns one JSON-able report; :func:`render_text`,
:func:`write_html` and :func:`write_pngs` draw from that report only.
"""

from dataprep.stats.compute import compute_stats

__all__ = ["compute_stats"]
