"""The offline post-incident report: tmpwarden's EMF log lines -> a PNG or an HTML page.

``python -m monitor report LOG -o OUT.png|OUT.html``. Reading is in :mod:`.timeline`
(pure, no matplotlib), drawing in :mod:`.chart` (matplotlib, imported only when a
report is drawn) and the page in :mod:`.page`. This package is not part of the
monitor layer a Lambda loads (see ``deploy/layer/``): it runs where the logs are read.
"""

from monitor.report.page import ReportError, ReportSummary, read_log, render_report

__all__ = ["ReportError", "ReportSummary", "read_log", "render_report"]
