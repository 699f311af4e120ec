"""The `fasttext_classifier` stage and the bundled reasoning classifier (reasoning_v1.ftz)."""

import json

import polars as pl
import pytest

import curate
from curate import ConfigError, FatalError
from curate.classify import bundled_model
from curate.config import load_config
from curate.stages import FasttextClassifier
from curate.stages import fasttext_classifier as module
from tests.conftest import REPO, write_jsonl
from tests.test_stages import chats, docs

FIX = REPO / "tests" / "fixtures" / "classifier"
GSM8K = [json.loads(line) for line in (FIX / "gsm8k_train.jsonl").read_text().splitlines()]
SELF_INSTRUCT = [json.loads(line) for line in (FIX / "self_instruct.jsonl").read_text().splitlines()]
WORKED = GSM8K[0]["answer"]
PLAIN = "Dear Sam, thank you for the lovely flowers. They brighten up the whole kitchen. Love, Ana"


def test_bundled_model_is_small_and_loads_offline():
    path = bundled_model()
    assert path.is_file() and path.stat().st_size < 1_000_000
    assert FasttextClassifier().problems("s") == []


def test_bundled_model_scores_worked_answers_above_plain_answers():
    out = FasttextClassifier().process(chats((GSM8K[0]["question"], WORKED), ("Write a note.", PLAIN)))
    worked, plain = out["fasttext_reasoning"].to_list()
    assert worked > 0.9 and plain < 0.1
    gsm = FasttextClassifier().process(chats(*[(r["question"], r["answer"]) for r in GSM8K]))["fasttext_reasoning"]
    plain = FasttextClassifier().process(chats(*[(r["instruction"], r["output"]) for r in SELF_INSTRUCT]))
    assert gsm.min() > plain["fasttext_reasoning"].median()
    assert (gsm >= 0.5).mean() == 1.0 and (plain["fasttext_reasoning"] >= 0.5).mean() <= 0.1


def test_field_selects_the_turns_the_model_reads():
    # the reasoning is in the user turn here, the assistant only acknowledges it
    df = chats((WORKED, "Thanks, noted."))
    score = {f: FasttextClassifier(field=f).process(df)["fasttext_reasoning"][0] for f in ("response", "prompt", "all")}
    assert score["prompt"] > 0.9 and score["response"] < 0.5
    assert score["all"] > score["response"]


def test_pretrain_records_use_their_text_for_every_field():
    df = docs(WORKED, PLAIN)
    for field in ("response", "prompt", "all"):
        worked, plain = FasttextClassifier(field=field).process(df)["fasttext_reasoning"].to_list()
        assert worked > 0.9 > 0.1 > plain


def test_no_text_in_the_field_gives_null_and_no_row_is_dropped():
    df = pl.concat([chats(("Only a question?", "x")), docs("a document")])
    df = df.with_columns(
        pl.when(pl.col("kind") == "instruction")
        .then(pl.lit([{"role": "user", "content": "Only a question?"}], dtype=df.schema["messages"]))
        .otherwise(pl.col("messages"))
        .alias("messages")
    )
    out = FasttextClassifier().apply_with_reasons(df)
    assert out.height == 2 and out["_drop"].null_count() == 2 and out["_error"].null_count() == 2
    assert out["fasttext_reasoning"][0] is None and out["fasttext_reasoning"][1] is not None


def test_column_and_max_chars():
    out = FasttextClassifier(column="cot_score", max_chars=40).process(docs(WORKED))
    assert "cot_score" in out.columns and "fasttext_reasoning" not in out.columns
    full = FasttextClassifier().process(docs(WORKED))["fasttext_reasoning"][0]
    assert out["cot_score"][0] != full  # only the first 40 characters were read


def config(tmp_path, **stage):
    write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Add 2 and 3.", "output": "2 + 3 = 5. The answer is 5."}])
    return {
        "pipeline": {"name": "t", "output": "out"},
        "sources": [{"name": "a", "path": "a.jsonl"}],
        "stages": [{"use": "fasttext_classifier", **stage}],
    }


@pytest.mark.parametrize(
    ("stage", "fragment"),
    [
        ({"label": "reasonin"}, "stages[0].label: the model has no label 'reasonin'; its labels: other, reasoning"),
        ({"column": "text"}, "stages[0].column: 'text' must be a new column name"),
        ({"column": "Bad Name"}, "stages[0].column: 'Bad Name' must be a new column name"),
        ({"field": "answer"}, "stages[0].field: must be one of 'response' | 'prompt' | 'all'"),
        ({"max_chars": 0}, "stages[0].max_chars: must be >= 1"),
        ({"model": "models/none.ftz"}, "stages[0].model: file not found:"),
        ({"model": "a.jsonl"}, "stages[0].model: cannot load fastText model"),
    ],
)
def test_parameters_are_checked_with_the_config(tmp_path, stage, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(config(tmp_path, **stage), base_dir=tmp_path)
    assert fragment in str(info.value)


def test_relative_model_path_is_relative_to_the_config_folder(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "r.ftz").write_bytes(bundled_model().read_bytes())
    cfg = load_config(config(tmp_path, model="models/r.ftz"), base_dir=tmp_path)
    assert cfg.stages[0].model == str(tmp_path / "models" / "r.ftz")
    assert cfg.stages[0].writes == ("fasttext_reasoning",)


def test_large_model_label_is_checked_at_the_first_batch(monkeypatch):
    monkeypatch.setattr(module, "CHECK_AT_CONFIG_BYTES", 0)
    stage = FasttextClassifier(label="quality")
    assert stage.problems("s") == []  # not loaded at config time
    with pytest.raises(FatalError, match="no label 'quality'; its labels: other, reasoning"):
        stage.process(docs("text"))


def test_build_writes_the_score_column(tmp_path):
    table = config(tmp_path, column="reasoning")
    table["output"] = {"formats": ["parquet"]}
    result = curate.build(table, base_dir=tmp_path)
    shards = pl.read_parquet(result.output / "shards" / "*.parquet")
    assert shards["reasoning"].to_list()[0] > 0.5
    assert result.manifest["totals"]["records_out"] == 1
