"""decontaminate: n-gram overlap with eval sets, per-eval counts, validation."""

import json

import polars as pl
import pytest

import curate
from curate.config import load_config
from tests.conftest import write_jsonl

QUESTION = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)


@pytest.fixture
def folder(tmp_path):
    write_jsonl(tmp_path / "evals" / "math.jsonl", [{"question": QUESTION, "answer": "72"}])
    write_jsonl(tmp_path / "evals" / "tiny.jsonl", [{"text": "Say the magic word"}])
    write_jsonl(
        tmp_path / "train.jsonl",
        [
            {
                "instruction": "Solve: " + QUESTION.upper().replace(",", " ,"),
                "input": "",
                "output": "72",
            },  # reformatted copy
            {"instruction": "Natalia sold clips to 48 friends.", "input": "", "output": "ok"},  # 6 shared words only
            {
                "instruction": "Please say the magic word now!",
                "input": "",
                "output": "please",
            },  # contains a short eval item
            {"instruction": "Write a poem about autumn.", "input": "", "output": "Leaves fall."},
        ],
    )
    return tmp_path


def config(**stage):
    return {
        "pipeline": {"name": "d", "output": "out"},
        "sources": [{"name": "train", "path": "train.jsonl"}],
        "stages": [
            {
                "use": "decontaminate",
                "eval": [
                    {
                        "name": "math",
                        "path": "evals/math.jsonl",
                        "format": "prompt_response",
                        "fields": {"prompt": "question", "response": "answer"},
                    },
                    {"name": "tiny", "path": "evals/tiny.jsonl"},
                ],
                **stage,
            }
        ],
    }


def test_overlapping_records_are_dropped_with_the_eval_name(folder):
    result = curate.build(config(), base_dir=folder)
    reasons = result.ledger.sort("line")["reason"].to_list()
    assert reasons == ["contaminated:math", None, "contaminated:tiny", None]
    assert result.manifest["stage_stats"]["decontaminate"] == {"contaminated": {"math": 1, "tiny": 1}}


def test_ngram_length_is_a_parameter(folder):
    result = curate.build(config(ngram=5), base_dir=folder)
    assert result.ledger.sort("line")["reason"].to_list()[:2] == ["contaminated:math", "contaminated:math"]


def test_notebook_use_with_paths_relative_to_cwd(folder, monkeypatch):
    monkeypatch.chdir(folder)
    stage = curate.stages.Decontaminate(eval=[{"name": "tiny", "path": "evals/tiny.jsonl"}])
    frame = curate.read_source("train.jsonl")
    out = stage.apply_with_reasons(frame)
    assert out["_drop"].to_list() == [None, None, "contaminated:tiny", None]


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ({"eval": []}, "stages[0].eval: name at least one eval set"),
        ({"eval": [{"name": "x", "path": "nope.jsonl"}]}, "stages[0].eval[0].path: not found: 'nope.jsonl'"),
        ({"eval": [{"path": "evals/tiny.jsonl"}]}, "stages[0].eval[0].name: required"),
        (
            {"eval": [{"name": "x", "path": "evals/tiny.jsonl", "colour": 1}]},
            "stages[0].eval[0]: unknown keys ['colour']",
        ),
        ({"eval": [{"name": "x", "path": "evals/tiny.jsonl"}], "ngram": 0}, "stages[0].ngram: must be >= 1"),
    ],
)
def test_validation(folder, stage, message):
    cfg = config()
    cfg["stages"][0] = {"use": "decontaminate", **stage}
    with pytest.raises(curate.ConfigError) as info:
        curate.validate(cfg, base_dir=folder)
    assert any(message in p for p in info.value.problems), info.value.problems


def test_editing_an_eval_set_invalidates_the_cache(folder):
    first = curate.build(config(), base_dir=folder)
    assert first.manifest["stage_stats"]["decontaminate"]["contaminated"]["tiny"] == 1
    (folder / "evals" / "tiny.jsonl").write_text(json.dumps({"text": "write a poem about autumn"}) + "\n")
    again = curate.build(config(), base_dir=folder)
    assert again.run["cached_passes"] == []
    assert again.manifest["stage_stats"]["decontaminate"]["contaminated"] == {"math": 1, "tiny": 1}
    assert pl.read_parquet(again.output / "ledger.parquet").filter(pl.col("reason") == "contaminated:tiny")[
        "line"
    ].to_list() == [4]


def test_an_eval_set_a_worker_does_not_see_is_a_clean_error_naming_it(folder):
    # checked where the config was loaded; a worker (a Ray node) that does not see the file says so
    loaded = load_config(config(), base_dir=folder)
    (folder / "evals" / "tiny.jsonl").unlink()
    with pytest.raises(curate.FatalError) as info:
        curate.build(loaded)
    assert str(info.value).startswith(
        "decontaminate eval set 'tiny' cannot be read here (path: not found: 'evals/tiny.jsonl' (relative to "
    )
    assert str(info.value).endswith("keep eval sets on storage every node mounts at the same path")


def test_an_eval_set_that_fits_no_format_is_no_storage_problem(folder):
    loaded = load_config(config(), base_dir=folder)
    (folder / "evals" / "tiny.jsonl").write_text('{"foo": "bar"}\n')  # after the config was checked
    with pytest.raises(curate.FatalError) as info:
        curate.build(loaded)
    assert str(info.value).startswith("decontaminate eval set 'tiny': format: cannot detect the record format")
