"""Write the JSON Schemas in `schemas/` from the code that defines them: `python -m curate.schema`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from curate.config import MixtureSection, OutputSection, PipelineSection, SourceConfig
from curate.mixture.section import GroupSection
from curate.params import json_schema_for
from curate.record import record_json_schema
from curate.stages import STAGES


def config_json_schema() -> dict[str, Any]:
    """JSON Schema of mixture.toml, generated from the same dataclasses that validate it."""
    stage_schemas = []
    for name, cls in STAGES.items():
        schema = json_schema_for(cls, extra={"use": {"const": name}})
        schema["required"] = ["use", *schema.get("required", [])]
        schema["description"] = (cls.__doc__ or "").strip().splitlines()[0]
        stage_schemas.append(schema)
    source = json_schema_for(SourceConfig)
    mixture = json_schema_for(MixtureSection)
    mixture["properties"]["groups"]["additionalProperties"] = json_schema_for(GroupSection)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/curate/curate/schemas/config.schema.json",
        "title": "curate mixture.toml",
        "type": "object",
        "properties": {
            "pipeline": json_schema_for(PipelineSection),
            "sources": {"type": "array", "minItems": 1, "items": source},
            "stages": {"type": "array", "items": {"oneOf": stage_schemas}},
            "mixture": mixture,
            "output": json_schema_for(OutputSection),
        },
        "required": ["pipeline", "sources"],
        "additionalProperties": False,
    }


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
