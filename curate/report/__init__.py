"""`report.html`: a self-contained page of charts and tables about a build output.

Written into every build output, and regenerated with `curate report OUT` (`curate.report(out)`).
`data.py` aggregates (bounded, lazy over the shards), `svg.py` draws, `html.py` lays out the page.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

from curate.report.data import collect
from curate.report.html import page
from curate.results import open_output

FILE = "report.html"


def write_report(output: str | Path) -> Path:
    """Write `report.html` into a build output folder; return its path."""
    out = open_output(output)
    path = out.path / FILE
    tmp = path.with_name(f".{FILE}.tmp")
    tmp.write_text(page(collect(out)), encoding="utf-8")
    tmp.replace(path)
    return path


class _CallablePackage(types.ModuleType):
    """Makes `curate.report(out)` call `write_report` while `curate.report` stays this package."""

    def __call__(self, output: str | Path) -> Path:
        return write_report(output)


sys.modules[__name__].__class__ = _CallablePackage

__all__ = ["FILE", "write_report"]
