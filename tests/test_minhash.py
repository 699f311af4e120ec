"""minhash_dedup: signatures agree with datasketch, LSH clusters, short texts, templates, keep policy."""

import json

import numpy as np
import polars as pl
import pytest
from datasketch import MinHash
from hypothesis import given, settings
from hypothesis import strategies as st

import curate
from curate.minhash.signature import band_keys, lsh_params, shingle_hashes, signatures
from curate.minhash.skeleton import otsu
from curate.stages import MinhashDedup


def chats(prompts, answers=None, source="s", ids=None):
    answers = answers or [f"answer {i}" for i in range(len(prompts))]
    return pl.DataFrame(
        {
            "id": ids or [f"r{i:03d}" for i in range(len(prompts))],
            "source": [source] * len(prompts),
            "kind": ["instruction"] * len(prompts),
            "text": [None] * len(prompts),
            "messages": [
                [{"role": "user", "content": p}, {"role": "assistant", "content": a}]
                for p, a in zip(prompts, answers, strict=True)
            ],
            "n_tokens": [1] * len(prompts),
            "meta": ["{}"] * len(prompts),
        },
        schema_overrides={"text": pl.String},
    )


def test_signatures_equal_datasketch():
    docs = [["a b c", "b c d", "c d e"], ["x"], [f"w{i} w{i + 1}" for i in range(300)]]
    owner = np.concatenate([np.full(len(d), i) for i, d in enumerate(docs)])
    flat = pl.Series([s for d in docs for s in d])
    hashes = shingle_hashes(flat)
    lookup = dict(zip(flat.to_list(), hashes.tolist(), strict=True))
    sig = signatures(owner, hashes, len(docs), 64, seed=7)
    for i, doc in enumerate(docs):
        reference = MinHash(num_perm=64, seed=7, hashfunc=lambda s: lookup[s])
        reference.update_batch(doc)
        assert np.array_equal(reference.hashvalues, sig[i])


@pytest.mark.parametrize("num_perm", [16, 64, 128, 256])
def test_lsh_parameters_are_datasketchs_choice(num_perm):
    from datasketch.lsh import _optimal_param  # datasketch's own optimisation (scipy quadrature)

    for threshold in np.round(np.arange(0.1, 0.96, 0.05), 2).tolist():
        for verify, weights in ((True, (0.2, 0.8)), (False, (0.5, 0.5))):
            assert lsh_params(threshold, num_perm, verify) == _optimal_param(threshold, num_perm, *weights)


def test_lsh_parameters_weigh_misses_when_verified_and_bands_depend_on_rows():
    assert lsh_params(0.8, 128, verify=False) == (9, 13)  # datasketch's MinHashLSH default weights
    bands, rows = lsh_params(0.8, 128)  # verified pairs: misses weigh more, so more bands
    assert bands > 9 and bands * rows <= 128
    sig = np.arange(2 * 128, dtype=np.uint32).reshape(2, 128)
    sig[1] = sig[0]
    sig[1, 0] += 1  # differs in band 0 only
    keys = band_keys(sig, 9, 13)
    assert keys[0, 0] != keys[1, 0] and (keys[0, 1:] == keys[1, 1:]).all()


def test_otsu_splits_a_bimodal_distribution():
    values = np.array([1, 1, 1, 2, 2, 50, 60, 64], dtype=float)
    assert otsu(np.log2(values), np.ones(len(values))) == np.log2(50)
    assert otsu(np.array([3.0, 3.0]), np.ones(2)) is None


def test_near_duplicates_cluster_and_the_first_is_kept():
    base = "the quick brown fox jumps over the lazy dog near the quiet river bank today"
    prompts = [base, base + " again", "completely different words about cooking pasta at home tonight", base]
    out = MinhashDedup(fields="prompt", threshold=0.7).apply_with_reasons(chats(prompts))
    assert out["_drop"].to_list() == [None, "near_duplicate:r000", None, "near_duplicate:r000"]
    kept = out.filter(pl.col("_drop").is_null())
    assert kept["dup_cluster"].to_list() == ["r000", "r002"]
    assert kept["dup_cluster_size"].to_list() == [3, 1]


def test_short_texts_never_collapse_into_one_cluster():
    prompts = ["Hi", "Hello", "Sort numbers", "Sort letters", "Reverse it", "Why?", "Add 2 and 3", "Name a fruit"]
    for template in (False, True):
        out = MinhashDedup(fields="prompt", template=template).process(chats(prompts))
        assert out.height == len(prompts), template
    empty = MinhashDedup(fields="response").process(chats(["a", "b"], answers=["!!!", "???"]))
    assert empty.height == 2  # no units at all: never clustered


def test_cluster_id_is_the_smallest_id_whatever_the_order():
    base = "write a short poem about the sea and the wind and the stars at night"
    frame = chats([base, base, base], ids=["zeta", "alpha", "mid"])
    out = MinhashDedup().process(frame)
    assert out["id"].to_list() == ["zeta"] and out["dup_cluster"].to_list() == ["alpha"]


def test_keep_per_cluster_and_rank_by():
    base = "summarize the following article about climate change in three sentences please"
    frame = chats([base] * 5).with_columns(pl.Series("score", [0.1, 0.9, 0.5, 0.9, 0.2]))
    out = MinhashDedup(fields="prompt", keep_per_cluster=2, rank_by="score").process(frame)
    assert out["id"].to_list() == ["r001", "r003"]  # the two best; a tie goes to input order
    assert out["dup_cluster_size"].to_list() == [5, 5]


def test_scope_source():
    base = "list five interesting facts about the planet mars for a school project"
    frame = pl.concat([chats([base], source="a"), chats([base], source="b", ids=["x"])])
    assert MinhashDedup(fields="prompt", scope="global").process(frame).height == 1
    assert MinhashDedup(fields="prompt", scope="source").process(frame).height == 2


def test_char_units_for_cjk_text():
    prompts = [
        "请把下面这句话翻译成英文：今天天气很好",
        "请把下面这句话翻译成英文：今天天气不错",
        "写一首关于春天的短诗",
    ]
    out = MinhashDedup(fields="prompt", ngram=3, threshold=0.5).apply_with_reasons(chats(prompts))
    assert out["_drop"].to_list() == [None, "near_duplicate:r000", None]
    words = MinhashDedup(fields="prompt", ngram=3, threshold=0.5, unit="word").process(chats(prompts))
    assert words.height == 3  # as whole "words" the two differ


def test_template_mode_groups_a_skeleton_with_different_fillers():
    topics = [
        "dogs",
        "the moon",
        "jazz music",
        "volcanoes",
        "chess openings",
        "tea",
        "rivers",
        "robots",
        "ancient rome",
        "bread baking",
        "glaciers",
        "bees",
    ]
    templated = [f"Write a short paragraph explaining why {t} matter to people today." for t in topics]
    others = [f"Translate the sentence number {i} into French: I like {t}." for i, t in enumerate(topics)]
    unique = ["Compose a haiku about autumn leaves falling.", "What is the capital city of Peru?"]
    frame = chats(templated + others + unique)
    plain = MinhashDedup(fields="prompt").process(frame)
    assert plain.height == len(frame)  # fillers differ too much for plain near-duplicate search
    skeleton = MinhashDedup(fields="prompt", template=True, keep_per_cluster=2).apply_with_reasons(frame)
    sizes = skeleton.filter(pl.col("_drop").is_null()).group_by("dup_cluster").agg(pl.col("dup_cluster_size").first())
    assert sorted(sizes["dup_cluster_size"].to_list(), reverse=True)[:2] == [12, 12]
    assert skeleton["_drop"].is_not_null().sum() == 20


def test_include_input_false_ignores_the_alpaca_input(tmp_path):
    rows = [
        {
            "instruction": "Rewrite the sentence in passive voice.",
            "input": f"Sentence {w} was written by {w}.",
            "output": "ok",
        }
        for w in ["alice", "bob", "carol", "dave"]
    ]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "pipeline": {"name": "t", "output": "out"},
        "sources": [{"name": "a", "path": "a.jsonl"}],
        "stages": [{"use": "minhash_dedup", "fields": "prompt", "include_input": False}],
    }
    result = curate.build(cfg, base_dir=tmp_path)
    assert result.manifest["totals"]["records_out"] == 1
    cfg["stages"][0]["include_input"] = True
    assert curate.build(cfg, base_dir=tmp_path, output=tmp_path / "o2").manifest["totals"]["records_out"] == 4


def test_build_writes_templates_stats_and_ledger_reasons(tmp_path):
    prompts = [f"Generate a list of {n} ideas for a birthday party theme." for n in range(3, 15)] + [
        "Explain photosynthesis to a child.",
        "Who wrote Hamlet?",
    ]
    rows = [{"instruction": p, "input": "", "output": f"answer {i}"} for i, p in enumerate(prompts)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "pipeline": {"name": "t", "output": "out"},
        "sources": [{"name": "a", "path": "a.jsonl"}],
        "stages": [{"use": "minhash_dedup", "fields": "prompt", "template": True, "keep_per_cluster": 3}],
    }
    one = curate.build(cfg, base_dir=tmp_path, output=tmp_path / "one", work_dir=tmp_path / "w1")
    two = curate.build(cfg, base_dir=tmp_path, output=tmp_path / "two", work_dir=tmp_path / "w2", workers=2)
    assert (one.output / "shards" / "train-00000.parquet").read_bytes() == (
        two.output / "shards" / "train-00000.parquet"
    ).read_bytes()
    templates = [json.loads(line) for line in (one.output / "templates.jsonl").read_text().splitlines()]
    assert templates[0]["size"] == 12 and templates[0]["kept"] == 3
    assert templates[0]["skeleton"].startswith("generate a list of ⟨num⟩ ideas")
    assert len(templates[0]["examples"]) == 3 and templates[0]["sources"] == {"a": 12}
    stats = one.manifest["stage_stats"]["minhash_dedup"]
    assert stats["dropped"] == 9 and stats["bands"] * stats["rows"] <= 128
    reasons = one.ledger.filter(pl.col("status") == "dropped")["reason"].unique().to_list()
    assert reasons == [f"near_duplicate:{templates[0]['cluster']}"]
    shard = pl.read_parquet(one.output / "shards" / "train-00000.parquet")
    assert {"dup_cluster", "dup_cluster_size"} <= set(shard.columns)


def test_a_stage_used_twice_keeps_both_reports(tmp_path):
    """Two `minhash_dedup` stages: the second reports as `minhash_dedup_2` / `templates_2.jsonl` instead of
    overwriting the first's stats and clusters."""
    prompts = [f"Generate a list of {n} ideas for a birthday party theme." for n in range(3, 15)]
    common = "Start with a theme, send the invitations early, plan the games and the food, and decorate the room"
    answers = [f"{common} for {n} guests." for n in range(3, 15)]
    rows = [{"instruction": p, "input": "", "output": a} for p, a in zip(prompts, answers, strict=True)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "pipeline": {"name": "t", "output": "out"},
        "sources": [{"name": "a", "path": "a.jsonl"}],
        "stages": [
            {"use": "minhash_dedup", "fields": "prompt", "template": True, "keep_per_cluster": 6},
            {"use": "minhash_dedup", "fields": "response", "threshold": 0.3, "keep_per_cluster": 2},
        ],
    }
    result = curate.build(cfg, base_dir=tmp_path)
    first, second = result.manifest["stage_stats"]["minhash_dedup"], result.manifest["stage_stats"]["minhash_dedup_2"]
    assert (first["records"], first["dropped"]) == (12, 6)
    assert (second["records"], second["dropped"]) == (6, 4)
    clusters = [json.loads(line) for line in (result.output / "templates.jsonl").read_text().splitlines()]
    clusters_2 = [json.loads(line) for line in (result.output / "templates_2.jsonl").read_text().splitlines()]
    assert [c["size"] for c in clusters] == [12] and [c["size"] for c in clusters_2] == [6]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"threshold": 0}, "threshold: must be in (0, 1]"),
        ({"bands": 4}, "give both bands and rows"),
        ({"bands": 20, "rows": 10}, "bands x rows = 200 exceeds num_perm = 128"),
        ({"ngram": 0}, "ngram: must be >= 1"),
        ({"keep_per_cluster": 0}, "keep_per_cluster: must be >= 1"),
        ({"fields": "answer"}, "fields: must be one of"),
        ({"rank_by": "scroe"}, "rank_by: no column 'scroe' at this point"),
    ],
)
def test_parameter_validation(tmp_path, params, message):
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    cfg = {
        "pipeline": {"name": "t"},
        "sources": [{"name": "a", "path": "a.jsonl"}],
        "stages": [{"use": "minhash_dedup", **params}],
    }
    with pytest.raises(curate.ConfigError) as info:
        curate.validate(cfg, base_dir=tmp_path)
    assert any(message in p for p in info.value.problems), info.value.problems


def _reference_pairs(keys: np.ndarray, scope: np.ndarray, eligible: np.ndarray) -> set[tuple[int, int]]:
    """The documented rule, written plainly: in each (scope, band, key) bucket with members
    m0 < m1 < ..., pair every member with m0 and with its predecessor."""
    buckets: dict[tuple, list[int]] = {}
    for i in range(len(keys)):
        if eligible[i]:
            for band in range(keys.shape[1]):
                buckets.setdefault((int(scope[i]), band, int(keys[i, band])), []).append(i)
    pairs = set()
    for members in buckets.values():
        for k in range(1, len(members)):
            pairs.add((members[0], members[k]))
            pairs.add((members[k - 1], members[k]))
    return pairs


@given(st.integers(0, 40), st.integers(1, 4), st.integers(1, 5), st.integers(0, 2**32 - 1))
@settings(max_examples=200, deadline=None)
def test_candidate_pairs_follow_the_bucket_rule(n, bands, distinct, seed):
    from curate.minhash.clusters import candidate_pairs

    rng = np.random.default_rng(seed)
    keys = rng.integers(0, distinct, size=(n, bands)).astype(np.uint64)
    scope = rng.integers(0, 2, size=n).astype(np.int64)
    eligible = rng.random(n) < 0.8
    got = candidate_pairs(keys, scope, eligible)
    assert got.dtype == np.int64 and got.shape[1] == 2
    assert [tuple(p) for p in got.tolist()] == sorted(_reference_pairs(keys, scope, eligible))


def _batch_files(frame, steps, folder, cuts):
    """The shingled frame written as batch files cut at `cuts` (the middle one out of `_row` order)."""
    from curate.stages.base import Context

    shingled = steps[0].apply(frame, Context())
    bounds = [0, *cuts, shingled.height]
    files = []
    for i in range(len(bounds) - 1):
        part = shingled[bounds[i] : bounds[i + 1]]
        files.append(folder / f"batch-{i:06d}.parquet")
        (part.reverse() if i == 1 else part).write_parquet(files[-1])
    return files


def _same_as_decide(cluster, files, folder, parallelism):
    from curate.executor import BarrierTasks
    from curate.stages.base import Context

    rows = pl.scan_parquet(files)
    whole, split, scratch = folder / "whole", folder / "split", folder / "scratch"
    for path in (whole, split, scratch):
        path.mkdir()
    expected = cluster.decide(rows, Context(artifacts=whole))
    got = cluster.decide_in_tasks(
        rows, Context(artifacts=split, scratch=scratch), files, BarrierTasks(None, parallelism)
    )
    assert got.equals(expected)
    for name in ("templates.jsonl", "minhash_dedup.stats.json"):
        assert (split / name).read_text() == (whole / name).read_text()
    return expected, json.loads((whole / "minhash_dedup.stats.json").read_text())


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    parallelism=st.integers(1, 12),
    scope=st.sampled_from(["global", "source"]),
    verify=st.booleans(),
)
def test_band_tasks_decide_exactly_like_the_whole_barrier(tmp_path_factory, seed, parallelism, scope, verify):
    """The band buckets split over any number of tasks (reading batch files, as on an executor) give
    the decisions, stats and templates.jsonl that `decide` gives over all rows in one process."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(60)]
    base = [" ".join(rng.choice(words, size=12)) for _ in range(25)]
    prompts = base + [p.replace(p.split()[int(rng.integers(12))], "zz", 1) for p in base[:15]] + base[:5] + [""]
    frame = chats(prompts).with_columns(
        pl.Series("source", ["a", "b"] * (len(prompts) // 2) + ["a"] * (len(prompts) % 2)),
        pl.int_range(pl.len(), dtype=pl.Int64).mul(3).alias("_row"),
    )
    steps = MinhashDedup(fields="prompt", threshold=0.7, scope=scope, verify=verify).steps()
    folder = tmp_path_factory.mktemp("pass")
    expected, _ = _same_as_decide(steps[1], _batch_files(frame, steps, folder, [17, 30]), folder, parallelism)
    assert expected["dup_cluster_size"].max() > 1  # the planted near-copies were found


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    parallelism=st.integers(1, 5),
    scope=st.sampled_from(["global", "source"]),
)
def test_template_tasks_decide_exactly_like_the_whole_barrier(tmp_path_factory, seed, parallelism, scope):
    """Template mode as partitioned tasks (df parts, run-length histograms, signatures per batch file)
    equals the whole-data template mask: same clusters, skeleton stats, templates.jsonl."""
    rng = np.random.default_rng(seed)
    fillers = [f"item{i}" for i in range(200)]
    skeletons = [
        "Generate a list of {} ideas for a birthday party theme today.",
        "Translate the word {} into French and use it in a sentence.",
        "Write a short poem about {} in the style of a sonnet please.",
    ]
    prompts = [skeletons[int(rng.integers(3))].format(rng.choice(fillers)) for _ in range(40)]
    prompts += [" ".join(rng.choice(fillers, size=int(rng.integers(3, 30)))) for _ in range(15)] + ["", "hi"]
    passage = " ".join(rng.choice(fillers, size=40))
    prompts += [f"Question about this text: {passage} Answer {i}." for i in range(6)]  # one passage, many prompts
    order = rng.permutation(len(prompts))
    prompts = [prompts[i] for i in order]
    frame = chats(prompts).with_columns(
        pl.Series("source", rng.choice(["a", "b", "c"], size=len(prompts))),
        pl.int_range(pl.len(), dtype=pl.Int64).mul(2).alias("_row"),
    )
    steps = MinhashDedup(fields="prompt", template=True, scope=scope, keep_per_cluster=2).steps()
    folder = tmp_path_factory.mktemp("pass")
    expected, stats = _same_as_decide(steps[1], _batch_files(frame, steps, folder, [20, 41]), folder, parallelism)
    assert stats["template_ngrams"] > 0 and expected["dup_cluster_size"].max() > 2


def test_template_tasks_on_records_without_ngrams(tmp_path):
    frame = chats(["", "", ""]).with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("_row"))
    steps = MinhashDedup(fields="prompt", template=True).steps()
    _same_as_decide(steps[1], _batch_files(frame, steps, tmp_path, [1, 2]), tmp_path, 2)


def test_template_flags_that_do_not_fit_their_batch_file_stop_the_build(tmp_path):
    """`template_signatures` reads the membership bits `template_runs` stored for each batch file; bits
    for another number of n-gram occurrences (the work dir changed in between) must fail, not shift."""
    from curate.errors import FatalError
    from curate.minhash.template_tasks import (
        RunTask,
        SignatureTask,
        flags_path,
        occurrences,
        template_runs,
        template_signatures,
    )

    frame = chats(["Write a poem about the sea today.", "Write a poem about the moon today."]).with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("_row"), pl.lit("a").alias("source")
    )
    steps = MinhashDedup(fields="prompt", template=True).steps()
    files = _batch_files(frame, steps, tmp_path, [])
    batch = str(files[0])
    flags, signatures = tmp_path / "flags", tmp_path / "sig"
    flags.mkdir(), signatures.mkdir()
    keys = np.sort(occurrences(batch, None).keys[:3])
    template_runs(RunTask((batch,), None, keys, str(flags)))
    task = SignatureTask((batch,), None, str(flags), None, 16, 1, str(signatures))
    assert template_signatures(task) == 0  # the stored bits fit
    saved = np.load(flags_path(str(flags), batch))
    np.savez(flags_path(str(flags), batch), bits=saved["bits"], count=int(saved["count"]) - 1)
    with pytest.raises(FatalError, match="template flags"):
        template_signatures(task)


def test_clusters_of_two_sources_with_the_same_ids_get_names_of_their_own():
    """`id_field` ids are unique within a source only: "r000" of source a and of source b head two
    unrelated clusters, which must not share a name (the validation split takes a cluster as a unit)."""
    poem = "write a short poem about the sea and the wind and the stars at night please"
    recipe = "give me a recipe for a quick vegetable soup with carrots and potatoes today"
    frame = pl.concat([chats([poem, poem + " now"], source="a"), chats([recipe, recipe + " now"], source="b")])
    out = MinhashDedup(fields="prompt", threshold=0.7).apply_with_reasons(frame)
    assert out.select("source", "id", "dup_cluster", "_drop").rows() == [
        ("a", "r000", "r000", None),
        ("a", "r001", "r000", "near_duplicate:r000"),
        ("b", "r000", "r000@b", None),
        ("b", "r001", "r000@b", "near_duplicate:r000@b"),
    ]
