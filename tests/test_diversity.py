"""`diversity` and `diverse_select`: vectors, novelty, greedy selection, metrics, builds."""

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import curate
from curate.config import load_config
from curate.diversity.knn import novelty
from curate.diversity.metrics import dataset_metrics, distinct_n, mean_pairwise_distance
from curate.diversity.select import ACCEPTED, BUDGET, TOLERANCE, TOO_SIMILAR, greedy_select, naive_select
from curate.diversity.vectors import center, hashed_vectors
from curate.errors import ConfigError, FatalError
from curate.stages import DiverseSelect, Diversity
from tests.conftest import write_jsonl

FIXTURES = Path(__file__).parent / "fixtures" / "diversity"


def chats(prompts: list[str], sources: list[str] | None = None, **extra: list) -> pl.DataFrame:
    n = len(prompts)
    return pl.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "source": sources or ["s"] * n,
            "kind": ["instruction"] * n,
            "text": [None] * n,
            "messages": [
                [{"role": "user", "content": p}, {"role": "assistant", "content": f"answer {i}"}]
                for i, p in enumerate(prompts)
            ],
            "n_tokens": [len(p.split()) for p in prompts],
            "meta": ["{}"] * n,
            **extra,
        },
        schema_overrides={"text": pl.String, "n_tokens": pl.Int64},
    )


def p3() -> pl.DataFrame:
    rows = [json.loads(line) for line in (FIXTURES / "p3_templates.jsonl").read_text().splitlines()]
    return chats([r["prompt"] for r in rows], template=[r["template"] for r in rows])


WHOLE = {"frame": 0, "min_df": 0}  # compare whole prompts, every feature (not the defaults)
TEMPLATED = [f"Translate the word '{w}' into French, please." for w in ("cat", "dog", "house", "tree", "car", "sun")]
UNIQUE = "Explain why the sky looks blue at noon but red at sunset, using Rayleigh scattering."
OTHERS = [
    "Write a haiku about autumn leaves.",
    "What is the capital of Australia?",
    "List three prime numbers greater than fifty.",
    "Summarise the plot of Hamlet in two sentences.",
]


# ------------------------------------------------------------------------------------------ vectors


def test_vectors_are_deterministic_normalised_and_batch_independent():
    texts = pl.Series([*TEMPLATED, UNIQUE, "", "我们今天去公园散步。"])
    a, b = hashed_vectors(texts, 128), hashed_vectors(texts, 128)
    assert a.dtype == np.float32 and a.shape == (len(texts), 128)
    assert np.array_equal(a, b)
    norms = np.linalg.norm(a, axis=1)
    assert np.allclose(norms[[0, 1, 2, 3, 4, 5, 6, 8]], 1.0, atol=1e-5) and norms[7] == 0.0
    alone = hashed_vectors(pl.Series([UNIQUE]), 128)
    assert np.array_equal(alone[0], a[6])  # a record's vector does not depend on its batch


def test_vectors_see_similar_texts_as_similar():
    v = hashed_vectors(pl.Series([TEMPLATED[0], TEMPLATED[1], UNIQUE, "我们今天去公园", "我们明天去公园"]), 256)
    assert v[0] @ v[1] > 0.5 > v[0] @ v[2]
    assert v[3] @ v[4] > 0.4  # CJK: character uni- and bigrams
    assert v[3] @ v[0] == pytest.approx(0.0, abs=0.3)


def test_center_removes_the_shared_component_and_keeps_identical_records_identical():
    v = hashed_vectors(pl.Series([*TEMPLATED, UNIQUE]), 256)
    c = center(v)
    assert np.allclose(np.linalg.norm(c, axis=1), 1.0, atol=1e-5)
    same = hashed_vectors(pl.Series(["the same text"] * 4 + [""]), 64)
    c = center(same)
    assert np.allclose(c[:4] @ c[:4].T, 1.0, atol=1e-5) and not c[4].any()


# ------------------------------------------------------------------------------------------ diversity


def test_unique_record_is_more_novel_than_templated_ones():
    out = Diversity(k=3).process(chats([*TEMPLATED, UNIQUE, *OTHERS]))
    scores = out["diversity"].to_list()
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[len(TEMPLATED)] > max(scores[: len(TEMPLATED)])
    assert out.height == len(TEMPLATED) + 1 + len(OTHERS)  # never drops rows


def test_exact_copies_score_zero_and_empty_prompts_are_null():
    frame = chats(["Copy me exactly."] * 4 + ["", *OTHERS])
    scores = Diversity(k=3).process(frame)["diversity"].to_list()
    assert scores[:4] == [0.0] * 4 and scores[4] is None


def test_source_scope_searches_neighbours_in_the_same_source_only():
    frame = p3().with_columns(
        pl.when(pl.int_range(pl.len()) % 2 == 0).then(pl.lit("a")).otherwise(pl.lit("b")).alias("source")
    )
    glob = Diversity(k=5, frame=8).process(frame)
    scoped = Diversity(k=5, frame=8, scope="source").process(frame)
    # fewer candidate neighbours (own source only) can only make a record look more novel
    assert (scoped["diversity"] >= glob["diversity"] - 1e-6).all()
    assert (scoped["diversity"] > glob["diversity"] + 0.01).any()
    # with the framed view, a record's nearest neighbour mostly shares its template
    v = center(hashed_vectors(frame["messages"].list.first().struct.field("content"), 256, frame=8))
    sims = v @ v.T
    np.fill_diagonal(sims, -1)
    templates = frame["template"].to_numpy()
    assert (templates[sims.argmax(axis=1)] == templates).mean() > 0.8


def test_approximate_knn_agrees_with_exact_on_clustered_data():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 32))
    points = centres[rng.integers(0, 40, 3000)] + 0.3 * rng.normal(size=(3000, 32))
    points = (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)
    points[:20] = points[0]  # 20 exact copies
    exact, cells = novelty(points, 5, seed=1, exact_limit=10_000)
    approx, cells2 = novelty(points, 5, seed=1, exact_limit=100, max_candidates=200)
    assert set(cells.tolist()) == {0} and len(set(cells2.tolist())) > 10
    assert np.all(approx[:20] == 0.0) and np.all(exact[:20] == 0.0)
    assert np.all(approx >= exact - 1e-5)  # fewer candidates can only make neighbours less similar
    assert np.abs(approx - exact).mean() < 0.05


# ------------------------------------------------------------------------------------------ greedy selection


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 120),
    dim=st.integers(2, 6),
    threshold=st.floats(0.05, 1.0),
    max_records=st.one_of(st.none(), st.integers(1, 80)),
    max_tokens=st.one_of(st.none(), st.integers(1, 600)),
    block=st.integers(1, 50),
    copies=st.integers(0, 10),
)
def test_greedy_selection_equals_the_naive_rule(seed, n, dim, threshold, max_records, max_tokens, block, copies):
    rng = np.random.default_rng(seed)
    v = unit_rows(rng, n, dim)
    v[rng.integers(0, n, copies)] = v[0]  # exact copies, the case a threshold of 1 must catch
    tokens = rng.integers(1, 30, n)
    status = greedy_select(v, tokens, threshold, max_records, max_tokens, block=block)
    assert np.array_equal(status, naive_select(v, tokens, threshold, max_records, max_tokens))
    chosen = np.flatnonzero(status == ACCEPTED)
    sims = v[chosen] @ v[chosen].T
    np.fill_diagonal(sims, -1)
    assert (sims < threshold - TOLERANCE / 2).all()
    assert max_records is None or len(chosen) <= max_records
    assert max_tokens is None or tokens[chosen].sum() <= max_tokens
    # once the budget closes the selection, everything after it is budget
    first_budget = np.flatnonzero(status == BUDGET)
    if len(first_budget):
        assert (status[first_budget[0] :] == BUDGET).all()
    # every too-similar record is close to an earlier accepted one
    for i in np.flatnonzero(status == TOO_SIMILAR):
        earlier = chosen[chosen < i]
        assert (v[earlier] @ v[i] >= threshold - TOLERANCE).any()


def test_selection_scales_with_blocks():
    v = unit_rows(np.random.default_rng(3), 5000, 16)
    tokens = np.ones(5000)
    assert np.array_equal(greedy_select(v, tokens, 0.8, block=512), greedy_select(v, tokens, 0.8, block=37))


# ------------------------------------------------------------------------------------------ diverse_select stage


def reasons(out: pl.DataFrame) -> list:
    return out.sort("_row")["_drop"].to_list()


def test_diverse_select_drops_similar_records_with_reasons():
    out = DiverseSelect(max_similarity=0.5, **WHOLE).apply_with_reasons(chats([*TEMPLATED, UNIQUE, *OTHERS]))
    got = reasons(out)
    assert got[0] is None and set(got[1 : len(TEMPLATED)]) == {"diverse_select:too_similar"}
    assert got[len(TEMPLATED) :] == [None] * (1 + len(OTHERS))


def test_diverse_select_min_df_compares_recurring_wording_only():
    lone = [
        "Write a haiku about autumn leaves.",
        "List three prime numbers greater than fifty.",
        "Name a primary colour.",
    ]
    frame = chats([*TEMPLATED, *lone])
    got = reasons(DiverseSelect(max_similarity=0.9, min_df=3).apply_with_reasons(frame))
    # the template's fixed words recur in 6 records; the filler word (cat, dog, ...) does not count
    assert got[: len(TEMPLATED)] == [None] + ["diverse_select:too_similar"] * (len(TEMPLATED) - 1)
    assert got[len(TEMPLATED) :] == [None] * len(lone)  # nothing recurring: never too similar
    assert reasons(DiverseSelect(max_similarity=0.9, min_df=0).apply_with_reasons(frame)) == [None] * frame.height


def test_diverse_select_budgets():
    frame = chats([UNIQUE, *OTHERS])
    by_records = reasons(DiverseSelect(max_similarity=1.0, max_records=2, **WHOLE).apply_with_reasons(frame))
    assert by_records == [None, None] + ["diverse_select:budget"] * 3
    tokens = frame["n_tokens"].to_list()
    limit = tokens[0] + tokens[1] + tokens[2] - 1  # the third record no longer fits
    by_tokens = reasons(DiverseSelect(max_similarity=1.0, max_tokens=limit, **WHOLE).apply_with_reasons(frame))
    assert by_tokens == [None, None] + ["diverse_select:budget"] * 3


def test_diverse_select_rank_by_visits_high_ranks_first():
    frame = chats(TEMPLATED[:3], score=[0.1, 0.9, None])
    out = DiverseSelect(max_similarity=0.5, rank_by="score", **WHOLE).process(frame)
    assert out["id"].to_list() == ["r1"]  # the best-ranked of three near copies
    kept = DiverseSelect(max_similarity=0.5, **WHOLE).process(frame)
    assert kept["id"].to_list() == ["r0"]  # no rank: input order


def test_diverse_select_rank_by_must_exist_and_be_numeric():
    with pytest.raises(FatalError, match=r"no column 'depth'.*available columns: id, source"):
        DiverseSelect(rank_by="depth").process(chats(OTHERS))
    with pytest.raises(FatalError, match="not numeric"):
        DiverseSelect(rank_by="label").process(chats(OTHERS, label=["a"] * 4))


def test_diverse_select_per_source_scope_and_budget():
    prompts = [TEMPLATED[0], TEMPLATED[1], UNIQUE, TEMPLATED[2], TEMPLATED[3], OTHERS[0]]
    frame = chats(prompts, sources=["a", "a", "a", "b", "b", "b"])
    scoped = DiverseSelect(max_similarity=0.5, scope="source", max_records=1, **WHOLE).apply_with_reasons(frame)
    assert reasons(scoped) == [None, "diverse_select:too_similar", "diverse_select:budget"] * 2
    together = DiverseSelect(max_similarity=0.5, **WHOLE).apply_with_reasons(frame)
    assert reasons(together)[3:5] == ["diverse_select:too_similar"] * 2  # b's copies meet a's across sources


# ------------------------------------------------------------------------------------------ metrics


def test_metrics_rank_a_templated_set_below_a_varied_one():
    templated = dataset_metrics(pl.Series(TEMPLATED * 3))
    varied = dataset_metrics(pl.Series([UNIQUE, *OTHERS, "我们今天去公园散步。"]))
    assert templated["distinct_1"] < varied["distinct_1"] and templated["distinct_2"] < varied["distinct_2"]
    assert templated["mean_pairwise_distance"] < varied["mean_pairwise_distance"]
    assert templated["clusters"] >= 1 and templated["cluster_entropy_norm"] < varied["cluster_entropy_norm"]
    assert varied["clusters_from"] == "vectors"
    given_clusters = dataset_metrics(pl.Series(OTHERS), clusters=pl.Series(["x", "x", None, None]))
    assert given_clusters["clusters_from"] == "minhash_dedup" and given_clusters["clusters"] == 1


def test_distinct_n_and_pairwise_distance_by_hand():
    assert distinct_n(pl.Series(["a b a", "b c"])) == (3 / 5, 3 / 3)
    v = np.array([[1, 0], [0, 1], [1, 0]], dtype=np.float32)
    assert mean_pairwise_distance(v) == pytest.approx((1 + 0 + 1) / 3)


# ------------------------------------------------------------------------------------------ builds


@pytest.fixture
def pipeline(tmp_path):
    rows = [json.loads(line) for line in (FIXTURES / "p3_templates.jsonl").read_text().splitlines()]
    write_jsonl(tmp_path / "p3.jsonl", [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    write_jsonl(tmp_path / "mine.jsonl", [{"instruction": p, "output": "ok"} for p in [*TEMPLATED, UNIQUE, *OTHERS]])
    return {
        "pipeline": {"name": "div", "seed": 3, "output": "out", "batch_size": 7},
        "sources": [
            {
                "name": "p3",
                "path": "p3.jsonl",
                "format": "prompt_response",
                "fields": {"prompt": "prompt", "response": "completion"},
            },
            {"name": "mine", "path": "mine.jsonl"},
        ],
        "stages": [
            {"use": "diversity", "k": 3, "frame": 8, "sample_size": 20},
            {"use": "diverse_select", "max_similarity": 0.5, "max_records": 12, "frame": 8, "min_df": 2},
        ],
    }


def test_build_writes_scores_reasons_and_metrics(tmp_path, pipeline):
    result = curate.build(pipeline, base_dir=tmp_path)
    ledger = result.ledger.filter(pl.col("status") == "dropped")
    assert set(ledger["stage"]) == {"diverse_select"}
    assert set(ledger["reason"]) == {"diverse_select:too_similar", "diverse_select:budget"}
    assert (result.ledger["status"] == "kept").sum() == 12
    shard = pl.read_parquet(tmp_path / "out" / "shards" / "train-00000.parquet")
    assert shard["diversity"].is_between(0.0, 1.0).all() and not any(c.startswith("_") for c in shard.columns)
    stats = result.manifest["stage_stats"]
    assert stats["diversity"]["overall"]["records"] == 59
    assert set(stats["diversity"]["sources"]) == {"p3", "mine"}
    assert stats["diversity"]["overall"]["sample"]["records"] == 20
    assert stats["diverse_select"]["selected"] == 12 and stats["diverse_select"]["candidates"] == 59
    mixture = result.manifest["diversity"]
    kept_sources = set(result.ledger.filter(pl.col("status") == "kept")["source"])
    assert mixture["mixture"]["records"] == 12 and set(mixture["sources"]) == kept_sources  # all 12 (< 20)
    assert 0.0 < mixture["mixture"]["mean_pairwise_distance"] <= 1.0
    # neither the batch size nor the worker count changes anything
    pipeline["pipeline"]["batch_size"] = 5
    other = curate.build(pipeline, base_dir=tmp_path, output=tmp_path / "o2", work_dir=tmp_path / "w2", workers=2)
    assert other.manifest["stage_stats"] == result.manifest["stage_stats"]
    assert other.ledger.equals(result.ledger) and other.manifest["diversity"] == result.manifest["diversity"]


def test_build_uses_minhash_clusters_when_present(tmp_path, pipeline):
    pipeline["stages"] = [
        {"use": "minhash_dedup", "fields": "prompt", "template": True, "keep_per_cluster": 3},
        {"use": "diversity", "sample_size": 100},
    ]
    result = curate.build(pipeline, base_dir=tmp_path)
    overall = result.manifest["stage_stats"]["diversity"]["overall"]
    assert overall["sample"]["clusters_from"] == "minhash_dedup" and "dup_clusters" in overall
    assert overall["dup_clusters"]["clusters"] >= 1 and 0 < overall["dup_clusters"]["clustered_share"] < 1
    assert result.manifest["diversity"]["mixture"]["clusters_from"] == "minhash_dedup"


def test_build_without_diversity_stage_has_no_manifest_metrics(tmp_path, pipeline):
    pipeline["stages"] = [{"use": "normalize"}]
    assert "diversity" not in curate.build(pipeline, base_dir=tmp_path).manifest


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"use": "diverse_select", "max_similarity": 0.0}, "stages[0].max_similarity: must be in (0, 1], got 0.0"),
        ({"use": "diverse_select", "max_similarity": 1.5}, "stages[0].max_similarity: must be in (0, 1]"),
        ({"use": "diverse_select", "max_records": 0}, "stages[0].max_records: must be >= 1, got 0"),
        ({"use": "diverse_select", "max_tokens": -5}, "stages[0].max_tokens: must be >= 1, got -5"),
        ({"use": "diverse_select", "rank_by": "_row"}, "stages[0].rank_by: internal columns"),
        ({"use": "diverse_select", "scope": "sources"}, "stages[0].scope: must be one of 'global' | 'source'"),
        ({"use": "diverse_select", "min_df": -1}, "stages[0].min_df: must be >= 0, got -1"),
        ({"use": "diversity", "k": 0}, "stages[0].k: must be >= 1, got 0"),
        ({"use": "diversity", "field": "answer"}, "stages[0].field: must be one of 'prompt' | 'response' | 'all'"),
        ({"use": "diversity", "max_candidates": 5, "k": 10}, "stages[0].max_candidates: must be > k = 10"),
        ({"use": "diversity", "dim": 100000}, "stages[0].dim: must be <= 4096"),
    ],
)
def test_parameter_validation(tmp_path, table, message):
    (tmp_path / "a.jsonl").write_text('{"text": "hello"}\n')
    with pytest.raises(ConfigError) as info:
        load_config(
            {"pipeline": {"name": "t"}, "sources": [{"name": "a", "path": "a.jsonl"}], "stages": [table]}, tmp_path
        )
    assert any(message in p for p in info.value.problems), info.value.problems
