"""curate inspect: selections by source / expression / seeded sample, cluster members, one record's history."""

from __future__ import annotations

import polars as pl
import pytest
from click.testing import CliRunner

import curate
from curate import inspect as views
from curate.cli import main
from tests.report_helpers import build_rich


@pytest.fixture(scope="module")
def rich(tmp_path_factory):
    return build_rich(tmp_path_factory.mktemp("rich"))


def run(*args: str):
    return CliRunner().invoke(main, ["inspect", *args])


def test_select_by_source_and_expression_counts_what_polars_counts(rich):
    out = curate.open(rich.output)
    records = out.records.collect()
    sel = views.select(out, source="gsm8k", where="cot and reasoning_depth > 0.5", limit=5)
    expected = records.filter((pl.col("source") == "gsm8k") & pl.col("cot") & (pl.col("reasoning_depth") > 0.5))
    assert sel.total == expected.height > 0
    assert sel.records.height == min(5, expected.height)
    assert set(sel.records["id"]) <= set(expected["id"])
    none = views.select(out, where="n_tokens < 0")
    assert none.total == 0 and none.records.is_empty()


def test_sample_is_seeded(rich):
    out = curate.open(rich.output)
    a = views.select(out, sample=6, seed=1).records["id"].to_list()
    b = views.select(out, sample=6, seed=1).records["id"].to_list()
    c = views.select(out, sample=6, seed=2).records["id"].to_list()
    assert a == b and len(a) == 6 and a != c
    everything = views.select(out, sample=10_000, seed=0)
    assert everything.records.height == everything.total == rich.manifest["totals"]["records_out"]


def test_a_bad_expression_or_source_is_a_usage_error(rich):
    result = run(str(rich.output), "--where", "reasoning_dept > 0.5")
    assert result.exit_code == 2
    assert "did you mean 'reasoning_depth'" in result.output and "Traceback" not in result.output
    result = run(str(rich.output), "--source", "nope")
    assert result.exit_code == 2 and "unknown source 'nope'" in result.output


def test_cluster_lists_kept_and_dropped_members(rich):
    out = curate.open(rich.output)
    dropped = out.ledger.filter(pl.col("reason").str.starts_with("near_duplicate:")).collect()
    cluster_id = dropped["reason"][0].split(":", 1)[1]
    found = views.cluster(out, cluster_id)
    members = found["members"]
    gone = dropped.filter(pl.col("reason") == f"near_duplicate:{cluster_id}")
    assert set(gone["id"]) <= set(members.filter(pl.col("status") == "dropped")["id"])
    kept = out.records.filter(pl.col("dup_cluster") == cluster_id).select("id").unique().collect()
    assert set(kept["id"]) == set(members.filter(pl.col("status") == "kept")["id"])
    assert members.height <= found["template"]["size"]
    assert members["id"].n_unique() == members.height
    with pytest.raises(views.QueryError):
        views.cluster(out, "0000000000000000")


def test_cli_views(rich):
    out = curate.open(rich.output)
    summary = run(str(rich.output))
    assert summary.exit_code == 0 and "gsm8k" in summary.output and "reasoning_depth" in summary.output
    kept_id = out.ledger.filter(pl.col("status") == "kept").head(1).collect()["id"][0]
    shown = run(str(rich.output), "--id", kept_id)
    assert shown.exit_code == 0, shown.output
    assert f"{kept_id}: kept" in shown.output and "reasoning_depth" in shown.output and "content:" in shown.output
    row = out.ledger.filter(pl.col("status") == "dropped").head(1).collect().row(0, named=True)
    shown = run(str(rich.output), "--id", row["id"])
    assert f"dropped ({row['source']}) by {row['stage']}" in shown.output
    cluster_id = row["reason"].split(":", 1)[1]
    listed = run(str(rich.output), "--cluster", cluster_id)
    assert listed.exit_code == 0 and row["id"] in listed.output and "skeleton:" in listed.output
    picked = run(str(rich.output), "--source", "web", "--sample", "2", "--seed", "5")
    web = out.records.filter(pl.col("source") == "web").select(pl.len()).collect().item()
    assert picked.exit_code == 0 and f"2 of {web} matching record instances" in picked.output
    missing = run(str(rich.output), "--id", "nope")
    assert missing.exit_code == 1 and "no record with id 'nope'" in missing.output


def test_untrusted_text_is_not_rich_markup(tmp_path):
    from tests.conftest import write_jsonl

    write_jsonl(tmp_path / "a.jsonl", [{"text": "[bold red]not markup[/bold red] and [link=x]y[/link] " * 3}])
    cfg = {"pipeline": {"name": "m", "output": "out"}, "sources": [{"name": "a", "path": "a.jsonl"}]}
    result = curate.build(cfg, base_dir=tmp_path)
    record_id = result.ledger["id"][0]
    shown = run(str(result.output), "--id", record_id)
    assert shown.exit_code == 0 and "[bold red]not markup[/bold red]" in shown.output
