"""curate.open: lazy records and ledger, templates, explain, to_hf; Pipeline.to_toml round-trips."""

from __future__ import annotations

import tomllib

import polars as pl
import pytest

import curate
from curate.errors import ConfigError, FatalError
from curate.stages import CotTag, FilterLength
from tests.conftest import REPO
from tests.report_helpers import build_rich, rich_config


@pytest.fixture(scope="module")
def rich(tmp_path_factory):
    return build_rich(tmp_path_factory.mktemp("rich"))


def test_open_gives_lazy_frames_matching_the_manifest(rich):
    out = curate.open(rich.output)
    assert out.manifest == rich.manifest
    assert isinstance(out.records, pl.LazyFrame) and isinstance(out.ledger, pl.LazyFrame)
    assert out.splits == ["train", "validation"]
    records = out.records.collect()
    assert records.height == rich.manifest["totals"]["records_out"]
    splits = records.group_by("split").agg(pl.len(), pl.col("n_tokens").sum()).sort("split")
    for row in splits.iter_rows(named=True):
        assert rich.manifest["splits"][row["split"]] == {"records": row["len"], "tokens": row["n_tokens"]}
    assert out.ledger.select(pl.len()).collect().item() == rich.manifest["totals"]["records_in"]
    assert out.ledger.collect().equals(rich.ledger)
    assert "train" in repr(out)


def test_templates_are_the_clusters_largest_first(rich):
    out = curate.open(rich.output)
    t = out.templates
    assert t.height == rich.manifest["stage_stats"]["minhash_dedup"]["clusters"]
    assert t["size"].to_list() == sorted(t["size"].to_list(), reverse=True)
    first = t.row(0, named=True)
    assert sum(s["records"] for s in first["sources"]) == first["size"]
    assert out.template(first["cluster"])["skeleton"] == first["skeleton"]
    assert out.template("nope") is None


def test_explain_a_kept_record(rich):
    out = curate.open(rich.output)
    kept = out.ledger.filter(pl.col("status") == "kept").sort("times_sampled", descending=True).head(1).collect()
    record_id = kept["id"][0]
    e = out.explain(record_id)
    assert e.verdict.startswith(f"kept ({kept['source'][0]}), sampled {kept['times_sampled'][0]}x")
    for column in ("cot", "reasoning_depth", "fasttext_reasoning", "diversity", "lang", "dup_cluster"):
        assert column in e.columns
    assert e.record["messages"] or e.record["text"]
    assert e.cluster is not None and e.cluster["cluster"] == e.columns["dup_cluster"]
    assert record_id in str(e)


def test_explain_a_near_duplicate(rich):
    out = curate.open(rich.output)
    row = out.ledger.filter(pl.col("reason").str.starts_with("near_duplicate:")).head(1).collect().row(0, named=True)
    e = out.explain(row["id"])
    assert e.record is None
    assert e.verdict == f"dropped ({row['source']}) by minhash_dedup: {row['reason']}"
    assert e.cluster["cluster"] == row["reason"].split(":", 1)[1]
    assert e.cluster["size"] >= 2 and e.cluster["skeleton"]
    assert e.ledger[0]["file"] == row["file"] and e.ledger[0]["line"] == row["line"]


def test_explain_an_unknown_id(rich):
    with pytest.raises(FatalError, match="no record with id 'nope'"):
        curate.open(rich.output).explain("nope")


def test_open_refuses_a_folder_that_is_not_an_output(tmp_path):
    with pytest.raises(FatalError, match="not a curate output"):
        curate.open(tmp_path)


def test_to_hf_has_the_splits(rich):
    hf = curate.open(rich.output).to_hf()
    splits = rich.manifest["splits"]
    assert set(hf) == set(splits)
    for name, split in splits.items():
        assert hf[name].num_rows == split["records"]
    assert "reasoning_depth" in hf["train"].column_names


def test_pipeline_edit_run_and_to_toml_round_trip(tmp_path):
    p = curate.Pipeline.from_dict(rich_config(tmp_path), base_dir=tmp_path)
    p.stages.insert(1, FilterLength(min_tokens=20))
    p.stages.append(CotTag(field="all"))
    p.to_toml(tmp_path / "edited.toml")
    again = curate.Pipeline.from_toml(tmp_path / "edited.toml")
    assert again.config.sha256 == p.config.sha256
    assert [s.to_table() for s in again.stages] == [s.to_table() for s in p.stages]
    p.config.pipeline.seed = 7  # sections edited in Python are written as they are now
    assert tomllib.loads(p.to_toml())["pipeline"]["seed"] == 7
    result = again.run(output=tmp_path / "edited", work_dir=tmp_path / "work")
    assert result.manifest["stages"][1] == {"use": "filter_length", "min_tokens": 20}
    assert result.manifest["config_sha256"] == p.config.sha256


def test_quickstart_to_toml_round_trips():
    p = curate.Pipeline.from_toml(REPO / "pipelines" / "quickstart.toml")
    again = curate.Pipeline.from_dict(tomllib.loads(p.to_toml()), base_dir=REPO / "pipelines")
    assert again.config.sha256 == p.config.sha256


def test_to_toml_refuses_in_memory_sources(tmp_path):
    frame = pl.DataFrame({"text": ["a document"]})
    p = curate.Pipeline.from_dict({"pipeline": {"name": "m"}, "sources": [{"name": "m", "data": frame}]}, tmp_path)
    with pytest.raises(ConfigError, match="in-memory data"):
        p.to_toml()


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.zst", "hf"])
def test_records_read_from_any_record_format(tmp_path, small_pipeline, fmt):
    small_pipeline["output"] = {"formats": [fmt]}
    result = curate.build(small_pipeline, base_dir=tmp_path)
    out = curate.open(result.output)
    assert out.has_records
    records = out.records.collect()
    assert records.height == result.manifest["totals"]["records_out"]
    assert sorted(records["id"]) == sorted(result.ledger.filter(pl.col("status") == "kept")["id"])
    assert "report.html" in {p.name for p in result.output.iterdir()}


def test_token_formats_have_no_records_to_read(tmp_path, small_pipeline):
    from curate.inspect import QueryError, select

    small_pipeline["output"] = {"formats": ["megatron"]}
    result = curate.build(small_pipeline, base_dir=tmp_path)
    out = curate.open(result.output)
    assert not out.has_records and out.records.collect().is_empty()
    with pytest.raises(QueryError, match="no record shards"):
        select(out)
    assert out.explain(result.ledger["id"][0]).ledger  # the ledger still explains every record
