"""Each stage on small hand-written frames (the notebook API: `Stage().process(df)`)."""

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.stages import STAGES, ExactDedup, FilterLength, Language, Normalize
from curate.stages.base import Stage
from curate.stages.runner import expand
from curate.stages.tokens import CountTokens


def docs(*texts: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [f"d{i}" for i in range(len(texts))],
            "source": ["s"] * len(texts),
            "kind": ["pretrain"] * len(texts),
            "text": list(texts),
            "messages": [None] * len(texts),
            "n_tokens": [None] * len(texts),
        },
        schema_overrides={
            "messages": pl.List(pl.Struct({"role": pl.String, "content": pl.String})),
            "n_tokens": pl.Int64,
        },
    )


def chats(*pairs: tuple[str, str], source: str = "s") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [f"c{i}" for i in range(len(pairs))],
            "source": [source] * len(pairs),
            "kind": ["instruction"] * len(pairs),
            "text": [None] * len(pairs),
            "messages": [[{"role": "user", "content": u}, {"role": "assistant", "content": a}] for u, a in pairs],
            "n_tokens": [None] * len(pairs),
        },
        schema_overrides={"text": pl.String, "n_tokens": pl.Int64},
    )


def test_stage_table_is_explicit_and_complete():
    """Every user-facing stage class defined in curate/stages/ is in STAGES under its own name."""
    import importlib
    import inspect
    import pkgutil

    import curate.stages

    defined = set()
    for info in pkgutil.iter_modules(curate.stages.__path__):
        module = importlib.import_module(f"curate.stages.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Stage) and cls is not Stage and cls.__module__ == module.__name__:
                defined.add(cls)
    assert defined == set(STAGES.values())
    assert {"normalize", "filter_length", "exact_dedup", "language", "minhash_dedup", "filter"} <= set(STAGES)
    for name, cls in STAGES.items():
        assert cls.name == name
        assert issubclass(cls, Stage)
        assert cls.__doc__ and ("drops" in cls.__doc__.lower()), f"{name} must say whether it drops rows"


# ------------------------------------------------------------------------------------------ normalize


def test_normalize_rules():
    out = Normalize().process(docs("Cafe\u0301\r\nline  two\t\tend   \n\n\n\nnext\x07 \u200b"))
    assert out["text"].to_list() == ["Café\nline two end\n\nnext"]


def test_normalize_can_keep_whitespace_and_form():
    out = Normalize(form="none", whitespace=False, control_chars=False).process(docs("a\u0301  b\x07"))
    assert out["text"].to_list() == ["a\u0301  b\x07"]


def test_normalize_nfkc():
    assert Normalize(form="NFKC").process(docs("ﬁve ２"))["text"].to_list() == ["five 2"]


def test_normalize_cleans_message_contents_and_keeps_roles():
    out = Normalize().process(chats(("  What   is 2+2? ", "It is\u00a0 4.  ")))
    assert out["messages"].to_list() == [
        [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "It is 4."}]
    ]


def test_normalize_quarantines_records_left_empty():
    out = Normalize().apply_with_reasons(pl.concat([docs("fine", " \u200b\t "), docs("ok")]))
    assert out.filter(pl.col("_error").is_not_null())["text"].to_list() == [""]
    assert out.filter(pl.col("_error").is_not_null())["_error"].to_list() == ["empty_after_normalize"]
    chat = Normalize().apply_with_reasons(chats(("question", "  \x00 ")))
    assert chat["_error"].to_list() == ["empty_after_normalize"]


# -------------------------------------------------------------------------------------- filter_length


def test_filter_length_tokens_and_chars_with_reasons():
    df = CountTokens().apply(
        docs("one", "one two three four five six", "x" * 300), ctx=__import__("curate").stages.Context()
    )
    out = FilterLength(min_tokens=2, max_chars=200).apply_with_reasons(df)
    reasons = dict(zip(out["text"].to_list(), out["_drop"].to_list(), strict=True))
    assert reasons["one"] == "too_few_tokens"
    assert reasons["one two three four five six"] is None
    assert reasons["x" * 300] == "too_many_chars"


def test_filter_length_applies_only_to_listed_kinds():
    frame = pl.concat([docs("a"), chats(("b", "c"))], how="diagonal_relaxed")
    out = FilterLength(min_chars=5, kinds=["pretrain"]).process(frame)
    assert out["kind"].to_list() == ["instruction"]


def test_filter_length_validation():
    assert FilterLength().problems("stages[0]") == [
        "stages[0]: set at least one of min_tokens, max_tokens, min_chars, max_chars"
    ]
    assert "stages[0].max_chars: 1 is below min_chars = 2" in FilterLength(min_chars=2, max_chars=1).problems(
        "stages[0]"
    )


# ---------------------------------------------------------------------------------------- exact_dedup


def test_exact_dedup_keeps_first_and_names_it():
    out = ExactDedup().apply_with_reasons(docs("same text", "other", "same  text", "same text"))
    assert out["_drop"].to_list() == [None, None, "exact_duplicate_of:d0", "exact_duplicate_of:d0"]


def test_exact_dedup_casefold_and_whitespace_options():
    frame = docs("Hello World", "hello world", "Hello  World")
    assert ExactDedup(whitespace=False).process(frame).height == 3
    assert ExactDedup().process(frame).height == 2
    assert ExactDedup(casefold=True).process(frame).height == 1


def test_exact_dedup_compares_roles_and_kinds():
    frame = pl.concat([chats(("a", "b")), chats(("a", "b"))]).with_columns(pl.Series("id", ["x", "y"]))
    assert ExactDedup().process(frame)["id"].to_list() == ["x"]
    swapped = pl.DataFrame(
        {
            "id": ["p"],
            "source": ["s"],
            "kind": ["instruction"],
            "text": [None],
            "messages": [[{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]],
            "n_tokens": [None],
        },
        schema_overrides={"text": pl.String, "n_tokens": pl.Int64},
    )
    assert ExactDedup().process(pl.concat([chats(("a", "b")), swapped])).height == 2
    # a document whose text equals a chat's joined contents is not a duplicate of it
    assert ExactDedup().process(pl.concat([docs("a\nb"), chats(("a", "b"))], how="diagonal_relaxed")).height == 2


def test_exact_dedup_scope_source():
    frame = pl.concat([chats(("q", "a"), source="one"), chats(("q", "a"), source="two")])
    frame = frame.with_columns(pl.Series("id", ["x", "y"]))
    assert ExactDedup(scope="global").process(frame).height == 1
    assert ExactDedup(scope="source").process(frame).height == 2


def test_exact_dedup_is_idempotent():
    frame = docs("a", "b", "a", "c", "b", "a")
    once = ExactDedup().process(frame)
    twice = ExactDedup().process(once)
    assert once.equals(twice)


@settings(max_examples=20, deadline=None)
@given(
    texts=st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f", "g"]), min_size=1, max_size=40),
    sources=st.lists(st.sampled_from(["one", "two"]), min_size=40, max_size=40),
    parts=st.integers(1, 5),
    scope=st.sampled_from(["global", "source"]),
)
def test_exact_dedup_hash_parts_decide_like_one_barrier(tmp_path_factory, texts, sources, parts, scope):
    """The barrier split into hash-partitioned tasks (as on an executor) drops exactly what one
    `decide` over every row drops, with the same reasons."""
    from curate.executor import BarrierTasks
    from curate.stages.base import Context

    frame = docs(*texts).with_columns(
        pl.Series("source", sources[: len(texts)]), pl.int_range(pl.len(), dtype=pl.Int64).mul(2).alias("_row")
    )
    hashing, keep_first = ExactDedup(scope=scope).steps()
    hashed = hashing.apply(frame, Context())
    folder = tmp_path_factory.mktemp("pass")
    files = [folder / "batch-000000.parquet", folder / "batch-000001.parquet"]
    hashed[: len(texts) // 2].write_parquet(files[0])
    hashed[len(texts) // 2 :].write_parquet(files[1])
    expected = keep_first.decide(pl.scan_parquet(files), Context()).sort("_row")
    got = keep_first.decide_in_tasks(pl.scan_parquet(files), Context(), files, BarrierTasks(None, parts))
    assert got.equals(expected)


# ------------------------------------------------------------------------------------------- language


def test_language_tags_real_text():
    out = Language().process(
        docs(
            "The quick brown fox jumps over the lazy dog near the river bank.",
            "Le renard brun rapide saute par-dessus le chien paresseux.",
            "今天天气很好，我们一起去公园散步，然后在湖边吃午饭。",
        )
    )
    assert out["lang"].to_list() == ["en", "fr", "zh"]
    assert all(0.5 < s <= 1.0 for s in out["lang_score"].to_list())


def test_language_keep_drops_with_reason():
    out = Language(keep=["en"]).apply_with_reasons(
        docs("This is an English sentence about cooking dinner.", "Dies ist ein deutscher Satz über das Kochen.")
    )
    assert out["_drop"].to_list() == [None, "language:de"]


def test_language_validation():
    assert Language(min_score=2.0).problems("stages[1]")[0].startswith("stages[1].min_score: must be between 0 and 1")


# ------------------------------------------------------------------------------------------- planning


def test_token_count_is_inserted_where_needed():
    steps = expand([Normalize(), FilterLength(min_tokens=3), ExactDedup()])
    names = [type(s).__name__ for s in steps]
    assert names == ["Normalize", "CountTokens", "FilterLength", "_HashContent", "_KeepFirst"]
    steps = expand([Normalize(), ExactDedup()])  # counted in the streaming pass, not after the barrier
    assert [type(s).__name__ for s in steps] == ["Normalize", "CountTokens", "_HashContent", "_KeepFirst"]
    assert [type(s).__name__ for s in expand([ExactDedup()])] == ["CountTokens", "_HashContent", "_KeepFirst"]
    steps = expand([FilterLength(min_tokens=3), Normalize()])
    assert [type(s).__name__ for s in steps] == ["CountTokens", "FilterLength", "Normalize", "CountTokens"]


#: Values for stage parameters that have no default (every other parameter keeps its default).
REQUIRED_EXAMPLES = {"filter": {"where": "n_tokens >= 10"}}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_round_trips_to_toml_table(name):
    cls = STAGES[name]
    required = REQUIRED_EXAMPLES.get(name, {})
    stage = cls(**required)
    assert stage.to_table() == {"use": name, **required}
    assert type(stage)(**{k: v for k, v in stage.to_table().items() if k != "use"}) == stage


def test_normalize_keeps_code_indentation():
    code = "def f(x):\n    if x:  # check\n\t\treturn [1,  2]\n"
    out = Normalize().process(docs(code))["text"].to_list()
    assert out == ["def f(x):\n    if x: # check\n\t\treturn [1, 2]"]
