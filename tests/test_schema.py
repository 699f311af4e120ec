"""The JSON Schemas in schemas/ are generated from code; they must not drift."""

import json

import jsonschema
import orjson
import pytest
import zstandard

from curate.schema import SCHEMAS, render
from tests.conftest import REPO


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_schema_file_matches_code(name):
    on_disk = (REPO / "schemas" / name).read_text(encoding="utf-8")
    assert on_disk == render(name), f"schemas/{name} is stale: run `make schemas`"


@pytest.mark.parametrize("render", ["messages", "chatml"])
def test_output_records_validate_against_record_schema(tmp_path, small_pipeline, render):
    import curate

    small_pipeline["output"] = {"render": render}
    result = curate.build(small_pipeline, base_dir=tmp_path)
    schema = json.loads((REPO / "schemas" / "record.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    shard = next(result.output.glob("shards/*.jsonl.zst"))
    lines = zstandard.ZstdDecompressor().stream_reader(shard.open("rb")).read().splitlines()
    records = [orjson.loads(line) for line in lines]
    assert any(r["kind"] == "instruction" for r in records)
    for record in records:
        validator.validate(record)
        if record["kind"] == "instruction":
            assert (record["messages"] is None) == (render == "chatml")
    broken = {**records[0], "text": None, "messages": None}
    assert not validator.is_valid(broken)


def test_quickstart_config_validates_against_config_schema():
    import tomllib

    schema = json.loads((REPO / "schemas" / "config.schema.json").read_text())
    config = tomllib.loads((REPO / "pipelines" / "quickstart.toml").read_text())
    jsonschema.Draft202012Validator(schema).validate(config)
