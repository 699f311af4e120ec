"""Write the JSON Schemas in `schemas/` from the code that defines them: `python -m curate.schema`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from curate.config import config_json_schema
from curate.record import record_json_schema

SCHEMAS = {"record.schema.json": record_json_schema, "config.schema.json": config_json_schema}


def render(name: str) -> str:
    """The exact text of one schema file."""
    return json.dumps(SCHEMAS[name](), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(folder: str = "schemas") -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for name in SCHEMAS:
        (out / name).write_text(render(name), encoding="utf-8")
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main(*sys.argv[1:])
