"""The record of pass 0's scan (which batches the workers cut each input into), so that a resumed
pass 0 reuses it, and the batch files it spilled, instead of cutting every input again."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import astuple
from pathlib import Path

from curate.config import SourceConfig
from curate.ingest.cut import Cut
from curate.ingest.source import Cuts

_VERSION = 3  # 2: cuts carry their kind and digest; 3: and the stamp of an input read in place


def save_scan(path: Path, cuts: Cuts) -> None:
    """Write the scan's batches (by source number and file) to `path`, atomically."""
    files = [
        {"source": source, "file": str(file), "cuts": [list(astuple(cut)) for cut in found]}
        for (source, file), found in cuts.items()
    ]
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(json.dumps({"version": _VERSION, "files": files}))
    os.replace(partial, path)


def load_scan(path: Path, sources: Sequence[SourceConfig]) -> Cuts | None:
    """The scan recorded in `path` for these sources, or None when it cannot be reused as it is: not
    there, unreadable, another version, a file no source has now, or a spilled batch file gone."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("version") != _VERSION:
        return None
    by_name = [{str(f): f for f in src.files} for src in sources]
    cuts: dict = {}
    try:
        for entry in record["files"]:
            source, name = entry["source"], entry["file"]
            if not 0 <= source < len(by_name) or name not in by_name[source]:
                return None
            found = [Cut(*values) for values in entry["cuts"]]
            if any(cut.spill is not None and not os.path.exists(cut.spill) for cut in found):
                return None
            cuts[(source, by_name[source][name])] = found
    except (KeyError, TypeError):  # not a record this code wrote
        return None
    return cuts
