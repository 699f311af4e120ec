"""Mixture groups: config errors with their locations, overlap and ungrouped records on the data, and
realized group shares on real records (GSM8K worked solutions vs SVAMP equations, tagged by cot_tag)."""

import polars as pl
import pytest

import curate
from curate.config import load_config
from curate.errors import ConfigError, FatalError
from curate.mixture import MixtureSection, plan_mixture
from tests.conftest import write_jsonl
from tests.mixture_helpers import real_pipeline


def config(tmp_path, mixture, stages=None):
    write_jsonl(tmp_path / "a.jsonl", [{"text": "alpha document one"}])
    write_jsonl(tmp_path / "b.jsonl", [{"text": "beta document two"}])
    write_jsonl(tmp_path / "c.jsonl", [{"text": "gamma document three"}])
    return {
        "pipeline": {"name": "g", "output": "out"},
        "sources": [{"name": n, "path": f"{n}.jsonl"} for n in ("a", "b", "c")],
        "stages": stages or [],
        "mixture": mixture,
    }


def problems(tmp_path, mixture, stages=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(config(tmp_path, mixture, stages), base_dir=tmp_path)
    return str(info.value)


def test_valid_source_groups_load(tmp_path):
    cfg = load_config(
        config(
            tmp_path,
            {
                "groups": {
                    "one": {"sources": ["a", "b"], "weight": 0.7, "temperature": 2.0},
                    "two": {"sources": ["c"], "weight": 0.3, "max_epochs": 3},
                }
            },
        ),
        base_dir=tmp_path,
    )
    assert set(cfg.mixture.parsed_groups()) == {"one", "two"}


@pytest.mark.parametrize(
    ("mixture", "expected"),
    [
        (
            {"weights": {"a": 1, "b": 0, "c": 0}, "groups": {"x": {"sources": ["a"], "weight": 1}}},
            "mixture: give either weights",
        ),
        ({"total_tokens": 10}, "mixture: needs weights"),
        (
            {"groups": {"x": {"sources": ["a", "zz"], "weight": 0.5}, "y": {"sources": ["b", "c"], "weight": 0.5}}},
            "mixture.groups.x.sources[1]: no source named 'zz'",
        ),
        (
            {"groups": {"x": {"sources": ["a", "b"], "weight": 0.5}, "y": {"sources": ["b", "c"], "weight": 0.5}}},
            "mixture.groups.y.sources[0]: 'b' is already in group 'x'; groups must not overlap",
        ),
        (
            {"groups": {"x": {"sources": ["a", "b"], "weight": 0.4}, "y": {"sources": ["c"], "weight": 0.5}}},
            "mixture.groups: the groups' weight values sum to 0.9 (x 0.4 + y 0.5), must be 1",
        ),
        (
            {
                "groups": {
                    "cot": {"sources": ["a", "b"], "weight": 0.5, "weights": {"a": 0.5, "b": 0.4}},
                    "y": {"sources": ["c"], "weight": 0.5},
                }
            },
            "mixture.groups.cot.weights: sum is 0.9, must be 1",
        ),
        (
            {
                "groups": {
                    "x": {"sources": ["a", "b"], "weight": 0.5, "weights": {"a": 0.5, "b": 0.5}, "temperature": 2.0},
                    "y": {"sources": ["c"], "weight": 0.5},
                }
            },
            "mixture.groups.x: give weights or temperature, not both",
        ),
        (
            {"groups": {"x": {"weight": 0.5}, "y": {"sources": ["a", "b", "c"], "weight": 0.5}}},
            "mixture.groups.x: give exactly one of sources = [...], where = '...' or rest = true (got none)",
        ),
        (
            {"groups": {"x": {"sources": ["a"], "where": "true", "weight": 1}}},
            "(got sources and where)",
        ),
        (
            {"groups": {"x": {"rest": True, "weight": 0.5}, "y": {"rest": True, "weight": 0.5}}},
            "mixture.groups: only one group may have rest = true (x, y do)",
        ),
        (
            {"groups": {"x": {"sources": ["a", "b"], "weight": 1}}},
            "mixture.groups: source(s) 'c' are in no group",
        ),
        ({"groups": {"a": {"rest": True, "weight": 1}}}, "mixture.groups.a: a group cannot have the name of a source"),
        ({"groups": {"x": {"rest": True, "weight": 1, "temperature": 0}}}, "mixture.groups.x.temperature: must be"),
        ({"groups": {"x": {"rest": True, "weight": 1, "wieght": 1}}}, "mixture.groups.x.wieght: unknown key"),
        ({"groups": {"x": {"rest": True}}}, "mixture.groups.x.weight: required key is missing"),
        ({"groups": {"x": {"where": "cot and", "weight": 1}}}, "mixture.groups.x.where: "),
        (
            {"groups": {"x": {"where": "cot", "weight": 0.5}, "y": {"rest": True, "weight": 0.5}}},
            "mixture.groups.x.where: no column 'cot' after the last stage",
        ),
        ({"weights": {"a": 1, "b": 0, "c": 0}, "ungrouped": "drop"}, "mixture.ungrouped: only used with"),
        ({"weights": {"a": 1, "b": 0, "c": 0}, "validation": 1.5}, "mixture.validation: a share must be > 0 and < 1"),
        ({"weights": {"a": 1, "b": 0, "c": 0}, "validation": 0}, "mixture.validation: a token count must be >= 1"),
    ],
)
def test_config_problems_name_their_location(tmp_path, mixture, expected):
    assert expected in problems(tmp_path, mixture)


def test_where_may_read_columns_a_stage_adds(tmp_path):
    mixture = {"groups": {"cot": {"where": "cot", "weight": 0.5}, "rest": {"rest": True, "weight": 0.5}}}
    cfg = load_config(config(tmp_path, mixture, stages=[{"use": "cot_tag"}]), base_dir=tmp_path)
    assert cfg.mixture.parsed_groups()["cot"].where == "cot"
    text = problems(tmp_path, {**mixture, "groups": {**mixture["groups"], "cot": {"where": "cots", "weight": 0.5}}})
    assert "no column 'cots'" in text


def test_temperature_shares_follow_n_to_the_one_over_t():
    available = pl.DataFrame({"source": ["a", "b", "c"], "records": [1, 1, 1], "tokens": [100, 400, 1600]})
    names = ["a", "b", "c"]

    def shares(group: dict) -> dict[str, float]:
        plan = plan_mixture(available, MixtureSection(groups={"g": {"sources": names, "weight": 1.0, **group}}), names)
        return {c.source: c.share for c in plan.cells}

    assert shares({}) == pytest.approx({"a": 100 / 2100, "b": 400 / 2100, "c": 1600 / 2100})
    assert shares({"temperature": 2.0}) == pytest.approx({"a": 10 / 70, "b": 20 / 70, "c": 40 / 70})
    hot = shares({"temperature": 1000.0})
    assert max(hot.values()) - min(hot.values()) < 0.01
    assert shares({"weights": {"a": 0.5, "b": 0.25, "c": 0.25}}) == pytest.approx({"a": 0.5, "b": 0.25, "c": 0.25})


def test_binding_group_and_source_are_named():
    available = pl.DataFrame({"source": ["a", "b"], "records": [10, 10], "tokens": [1000, 100]})
    groups = {"x": {"sources": ["a"], "weight": 0.5}, "y": {"sources": ["b"], "weight": 0.5, "max_epochs": 2}}
    plan = plan_mixture(available, MixtureSection(groups=groups), ["a", "b"])
    assert (plan.binding_source, plan.binding_group, plan.max_feasible_tokens) == ("b", "y", 400)


def test_cot_group_gets_its_share_of_tokens(tmp_path):
    groups = {
        "cot": {"where": "cot and kind == 'instruction'", "weight": 0.4},
        "rest": {"rest": True, "weight": 0.6, "temperature": 2.0},
    }
    result = curate.build(real_pipeline(tmp_path, groups=groups), base_dir=tmp_path)
    shards = pl.read_parquet(result.output / "shards" / "train-*.parquet")
    total = shards["n_tokens"].sum()
    cot_tokens = shards.filter(pl.col("cot") & (pl.col("kind") == "instruction"))["n_tokens"].sum()
    largest = shards["n_tokens"].max()
    # the rule: each cell is within half of its largest record of its target
    target = round(0.4 * result.manifest["mixture"]["total_tokens"])
    assert abs(cot_tokens - target) <= largest / 2
    groups_out = {g["group"]: g for g in result.manifest["mixture"]["groups"]}
    assert groups_out["cot"]["realized_tokens"] == cot_tokens
    assert groups_out["cot"]["realized_share"] == pytest.approx(cot_tokens / total, abs=1e-6)
    assert groups_out["rest"]["definition"] == {"rest": True, "weight": 0.6, "temperature": 2.0}
    # SVAMP equations are not CoT: all of them are in the rest group
    assert shards.filter(pl.col("source") == "svamp")["cot"].sum() == 0


def test_overlapping_where_groups_are_listed_before_writing(tmp_path):
    groups = {
        "cot": {"where": "cot", "weight": 0.4},
        "math": {"where": "source in ['gsm8k', 'svamp']", "weight": 0.4},
        "rest": {"rest": True, "weight": 0.2},
    }
    with pytest.raises(FatalError) as info:
        curate.build(real_pipeline(tmp_path, groups=groups), base_dir=tmp_path)
    text = str(info.value)
    assert "groups 'cot' and 'math':" in text and "record(s) in both, e.g. gsm8k:" in text
    assert not (tmp_path / "out").exists()


def test_ungrouped_records_stop_the_build_or_are_dropped_in_the_ledger(tmp_path):
    groups = {"cot": {"where": "cot", "weight": 0.5}, "pretrain": {"sources": ["docs"], "weight": 0.5}}
    with pytest.raises(FatalError) as info:
        curate.build(real_pipeline(tmp_path, groups=groups), base_dir=tmp_path)
    assert "are in no mixture group" in str(info.value) and "svamp: 40 record(s)" in str(info.value)
    assert not (tmp_path / "out").exists()
    result = curate.build(real_pipeline(tmp_path, groups=groups, ungrouped="drop"), base_dir=tmp_path)
    svamp = result.ledger.filter(pl.col("source") == "svamp")
    assert svamp["reason"].unique().to_list() == ["not_in_group"]
    assert svamp["stage"].unique().to_list() == ["mixture"] and svamp["split"].null_count() == 40
    assert result.manifest["sources"]["svamp"]["records_out"] == 0
