"""The validation split: no record and no near-duplicate cluster in both splits, sizes, output layout."""

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import curate
from curate.errors import FatalError
from curate.mixture import MixtureSection, available_tokens, plan_mixture, select_validation
from tests.conftest import write_jsonl
from tests.mixture_helpers import real_pipeline


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(1, 120),
    n_clusters=st.integers(1, 30),
    clustered=st.floats(0.0, 1.0),
    share=st.floats(0.01, 0.5),
    seed=st.integers(0, 2**31),
    data_seed=st.integers(0, 2**16),
)
def test_clusters_are_never_split_and_cells_get_their_share(n, n_clusters, clustered, share, seed, data_seed):
    rng = np.random.default_rng(data_seed)
    cluster = [f"c{rng.integers(n_clusters)}" if rng.random() < clustered else None for _ in range(n)]
    rows = pl.DataFrame(
        {
            "_row": np.arange(n),
            "source": rng.choice(["a", "b"], n).tolist(),
            "n_tokens": rng.integers(1, 50, n),
            "dup_cluster": cluster,
        },
        schema_overrides={"dup_cluster": pl.String},
    )
    section = MixtureSection({"a": 0.5, "b": 0.5})
    plan = plan_mixture(available_tokens(rows), section, ["a", "b"])
    tokens = round(share * int(rows["n_tokens"].sum()) / 2)
    try:
        held = select_validation(rows, plan, tokens, seed)
    except FatalError as exc:  # a source too small for its half of the split is refused, not truncated
        assert "validation needs" in str(exc)
        return
    chosen = rows.with_columns(pl.col("_row").is_in(held.implode()).alias("v"))
    both = chosen.drop_nulls("dup_cluster").group_by("dup_cluster").agg(pl.col("v").n_unique().alias("k"))
    assert both.filter(pl.col("k") > 1).is_empty()  # a cluster is wholly in one split
    assert held.n_unique() == held.len()
    if chosen["dup_cluster"].null_count() == n:  # no clusters: each cell within half a record of its share
        for source in ("a", "b"):
            mine = chosen.filter(pl.col("source") == source)
            if mine.is_empty():
                continue
            got = int(mine.filter(pl.col("v"))["n_tokens"].sum())
            assert abs(got - round(0.5 * tokens)) <= mine["n_tokens"].max() / 2
    assert select_validation(rows, plan, tokens, seed).equals(held)


def near_duplicates(folder, clusters=8, size=4, singles=8):
    rng = np.random.default_rng(0)
    vocabulary = [f"w{i}" for i in range(500)]
    rows = []
    for _ in range(clusters):
        base = rng.choice(vocabulary, 80).tolist()
        rows += [{"text": " ".join([*base, f"variant{v}"])} for v in range(size)]
    rows += [{"text": " ".join(rng.choice(vocabulary, 80).tolist())} for _ in range(singles)]
    order = rng.permutation(len(rows))
    write_jsonl(folder / "web.jsonl", [rows[i] for i in order])


def test_build_with_minhash_keeps_clusters_out_of_both_splits(tmp_path):
    near_duplicates(tmp_path)
    cfg = real_pipeline(tmp_path, weights={"gsm8k": 0, "svamp": 0.3, "docs": 0, "web": 0.7}, validation=0.3)
    cfg["sources"].append({"name": "web", "path": "web.jsonl"})
    cfg["stages"].append({"use": "minhash_dedup", "keep_per_cluster": 10})
    result = curate.build(cfg, base_dir=tmp_path)
    shards = {p.name for p in (result.output / "shards").iterdir()}
    assert {"train-00000.parquet", "validation-00000.parquet"} <= shards
    train = pl.read_parquet(result.output / "shards" / "train-*.parquet")
    valid = pl.read_parquet(result.output / "shards" / "validation-*.parquet")
    assert set(train["id"]).isdisjoint(set(valid["id"]))
    clusters = valid.drop_nulls("dup_cluster").filter(pl.col("dup_cluster_size") > 1)["dup_cluster"]
    assert clusters.len() > 0  # the test exercises clusters
    assert set(clusters).isdisjoint(set(train["dup_cluster"].drop_nulls()))
    m = result.manifest
    assert m["splits"]["validation"] == {"records": valid.height, "tokens": int(valid["n_tokens"].sum())}
    assert m["splits"]["train"]["tokens"] == int(train["n_tokens"].sum())
    assert m["mixture"]["validation"]["tokens"] == int(valid["n_tokens"].sum())
    ledger = result.ledger
    in_valid = ledger.filter(pl.col("split") == "validation")
    assert in_valid.height == valid.height and set(in_valid["times_sampled"]) == {1}
    assert ledger.filter(pl.col("status") != "kept")["split"].null_count() == (ledger["status"] != "kept").sum()
    assert sum(s["records"] for s in m["shards"] if s.get("split") == "validation" and s["format"] == "parquet") == (
        valid.height
    )


def test_validation_token_count_and_proportions(tmp_path):
    weights = {"gsm8k": 0.5, "svamp": 0.25, "docs": 0.25}
    result = curate.build(real_pipeline(tmp_path, weights=weights, validation=800), base_dir=tmp_path)
    valid = pl.read_parquet(result.output / "shards" / "validation-*.parquet")
    per_source = dict(valid.group_by("source").agg(pl.col("n_tokens").sum()).iter_rows())
    largest = dict(valid.group_by("source").agg(pl.col("n_tokens").max()).iter_rows())
    for source, w in weights.items():  # without clusters: each source within half a record of its share
        assert abs(per_source.get(source, 0) - round(w * 800)) <= largest.get(source, 400) / 2
    train_ids = set(pl.read_parquet(result.output / "shards" / "train-*.parquet")["id"])
    assert train_ids.isdisjoint(set(valid["id"]))


def test_validation_larger_than_a_source_is_refused(tmp_path):
    cfg = real_pipeline(tmp_path, weights={"gsm8k": 0.5, "svamp": 0.25, "docs": 0.25}, validation=100_000)
    with pytest.raises(FatalError, match="validation needs"):
        curate.build(cfg, base_dir=tmp_path)
    assert not (tmp_path / "out").exists()


def test_each_split_is_cut_into_its_own_numbered_shards(tmp_path):
    cfg = real_pipeline(tmp_path, weights={"gsm8k": 0.5, "svamp": 0.25, "docs": 0.25}, validation=0.3)
    cfg["output"] = {"formats": ["parquet"], "shard_max_records": 4, "shard_max_tokens": 400}
    result = curate.build(cfg, base_dir=tmp_path)
    for split in ("train", "validation"):
        rows = [s for s in result.manifest["shards"] if s["split"] == split]
        assert [s["path"] for s in rows] == [f"shards/{split}-{i:05d}.parquet" for i in range(len(rows))]
        assert len(rows) > 1
        for s in rows:
            shard = pl.read_parquet(result.output / s["path"])
            assert shard.height <= 4 and (shard["n_tokens"].sum() <= 400 or shard.height == 1)
        assert sum(s["records"] for s in rows) == result.manifest["splits"][split]["records"]
