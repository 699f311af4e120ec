"""The expression language (`curate.expr`) and the `filter` stage."""

from __future__ import annotations

import json

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import curate
from curate.config import load_config
from curate.errors import ConfigError, FatalError
from curate.expr import ExprError, Expression
from curate.stages import Filter

FRAME = pl.DataFrame(
    {
        "_row": [0, 1, 2, 3, 4],
        "id": ["a", "b", "c", "d", "e"],
        "kind": ["pretrain", "instruction", "instruction", "instruction", "instruction"],
        "score": [None, 0.5, 0.1, None, 0.9],
        "styles": [[], ["step_list"], ["think_block", "step_list"], None, ["lets_think"]],
        "cot": [None, True, False, True, True],
        "text": ["The answer is 4", None, None, None, None],
    }
)


def matches(where: str, df: pl.DataFrame = FRAME) -> list[str]:
    """Ids of the rows where the condition is true (null counts as false)."""
    cond = Expression.parse(where).compile(df.schema).fill_null(False)
    return df.filter(cond)["id"].to_list()


@pytest.mark.parametrize(
    ("where", "ids"),
    [
        ("score >= 0.3", ["b", "e"]),
        ("score >= 0.3 or kind == 'pretrain'", ["a", "b", "e"]),  # null or true is true
        ("kind == 'instruction' and score < 0.6", ["b", "c"]),
        ("not score > 0.3", ["c"]),  # not null stays null: d is not matched
        ("score is null", ["a", "d"]),
        ("score is not null and score != 0.5", ["c", "e"]),
        ("cot", ["b", "d", "e"]),
        ("cot and not ('think_block' in styles)", ["b", "e"]),
        ("'step_list' in styles", ["b", "c"]),
        ("'step_list' not in styles", ["a", "e"]),
        ("id in ['a', 'c', 'z']", ["a", "c"]),
        ("id not in ['a', 'c']", ["b", "d", "e"]),
        ("'answer' in text", ["a"]),
        ("score > 0.2 and (kind == 'x' or id == 'e')", ["e"]),
        ("score > 0.2 && !(id == 'b') || id == 'a'", ["a", "e"]),
        ("KIND == 'pretrain' OR id == 'b'".replace("KIND", "kind"), ["a", "b"]),
        ("1 < score", []),
        ("0.4 < score", ["b", "e"]),
        ("score >= 1e-1", ["b", "c", "e"]),
        ("cot == true and score > .6", ["e"]),
    ],
)
def test_expression_semantics(where, ids):
    assert matches(where) == ids


def test_and_binds_tighter_than_or():
    tree = Expression.parse("id == 'a' or id == 'b' and score > 1").tree
    assert tree.op == "or" and tree.items[1].op == "and"
    assert matches("id == 'a' or id == 'b' and score > 1") == ["a"]
    assert matches("(id == 'a' or id == 'b') and score > 0.1") == ["b"]


def test_columns_and_clauses():
    expr = Expression.parse("score >= 0.3 and (kind == 'pretrain' or cot) and 'x' in styles")
    assert expr.columns == ["score", "kind", "cot", "styles"]
    assert [expr.text(c) for c in expr.clauses] == ["score >= 0.3", "(kind == 'pretrain' or cot)", "'x' in styles"]


@pytest.mark.parametrize(
    ("where", "pos", "message"),
    [
        ("", 0, "empty expression"),
        ("score >= ", 9, "expected a column or a value, found the end"),
        ("score = 3", 6, "'=' is not a comparison; use '=='"),
        ("score >= 0.3 and", 16, "found the end"),
        ("score >= 0.3 score", 13, "unexpected 'score'"),
        ("(score > 1", 10, "expected ')'"),
        ("score > 1 $ 2", 10, "unexpected character '$'"),
        ("x in [1, y]", 9, "a list holds literals only"),
        ("x is 3", 5, "expected 'null' after 'is'"),
        ("__import__('os')", 10, "unexpected '('"),
        ("__import__('os').system('x')", 16, "unexpected character '.'"),
        ("kind == 'open", 8, "unexpected character"),
        ("score > and", 8, "found the keyword 'and'"),
    ],
)
def test_syntax_errors_point_at_the_bad_token(where, pos, message):
    with pytest.raises(ExprError) as err:
        Expression.parse(where)
    assert err.value.pos == pos
    assert message in err.value.message
    assert str(err.value).endswith("\n      " + where + "\n      " + " " * pos + "^")


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("scor > 1", "unknown column 'scor', did you mean 'score'"),
        ("score", "column 'score' is Float64, not a boolean"),
        ("score > 'high'", "column 'score' is a number, compared with 'high'"),
        ("kind == 3", "column 'kind' is a string, compared with 3"),
        ("score == null", "compare with null using 'is null'"),
        ("'x' in score", "'in' needs a list or a string column"),
        ("styles == 'x'", r"column 'styles' is List\(String\), which cannot be compared; test a list with 'in'"),
        ("kind != styles", r"column 'styles' is List\(String\), which cannot be compared"),
        ("kind == score", "column 'kind' is a string, compared with column 'score', a number"),
        ("styles", r"column 'styles' is List\(String\), not a boolean; compare it \(e.g. '...' in styles\)"),
        ("[1, 2]", "expected a condition"),
    ],
)
def test_compile_errors(where, message):
    with pytest.raises(ExprError, match=message):
        Expression.parse(where).compile(FRAME.schema)


def test_filter_stage_reason_is_the_failed_clause():
    out = Filter(where="kind == 'instruction' and (score > 0.2 or cot) and 'step_list' in styles").apply_with_reasons(
        FRAME
    )
    assert out.select("id", "_drop").rows() == [
        ("a", "kind == 'instruction'"),
        ("b", None),
        ("c", "(score > 0.2 or cot)"),
        ("d", "'step_list' in styles"),  # styles null: unknown counts as failed
        ("e", "'step_list' in styles"),
    ]
    kept = Filter(where="kind == 'instruction' and (score > 0.2 or cot) and 'step_list' in styles").process(FRAME)
    assert kept["id"].to_list() == ["b"]
    assert kept.columns == FRAME.columns


def test_filter_drop_action_and_whole_condition_reason():
    out = Filter(where="score < 0.3  or  kind == 'pretrain'", action="drop").apply_with_reasons(FRAME)
    assert out.select("id", "_drop").rows() == [
        ("a", "not (score < 0.3 or kind == 'pretrain')"),
        ("b", None),
        ("c", "not (score < 0.3 or kind == 'pretrain')"),
        ("d", None),
        ("e", None),
    ]
    keep = Filter(where="score >= 0.3 or kind == 'pretrain'").apply_with_reasons(FRAME)
    failed = "score >= 0.3 or kind == 'pretrain'"
    assert keep["_drop"].to_list() == [None, None, failed, failed, None]


def test_filter_on_a_column_missing_at_run_time_is_fatal():
    with pytest.raises(FatalError, match="unknown column 'reasoning_depth'"):
        Filter(where="reasoning_depth > 0.5").process(FRAME)


def config_with(where: str, stages_before: list[dict] | None = None) -> dict:
    return {
        "pipeline": {"name": "t"},
        "sources": [{"name": "s", "path": "data.jsonl"}],
        "stages": [*(stages_before or []), {"use": "filter", "where": where}],
    }


def test_config_reports_syntax_and_column_errors_at_their_location(tmp_path):
    (tmp_path / "data.jsonl").write_text('{"text": "hello"}\n')
    with pytest.raises(ConfigError) as err:
        load_config(config_with("lang == 'en' and n_tokens > 'x'"), base_dir=tmp_path)
    problems = err.value.problems
    assert len(problems) == 1
    assert problems[0].startswith("stages[0].where: no column 'lang' at this point (character 1); columns: id, kind")
    with pytest.raises(ConfigError) as err:
        load_config(config_with("n_tokens > 'x'"), base_dir=tmp_path)
    assert err.value.problems[0].startswith("stages[0].where: column 'n_tokens' is a number, compared with 'x'")
    with pytest.raises(ConfigError) as err:
        load_config(config_with("n_tokens >"), base_dir=tmp_path)
    assert err.value.problems[0].startswith("stages[0].where: expected a column or a value")
    # a column added by an earlier stage is known
    config = load_config(config_with("lang == 'en'", [{"use": "language"}]), base_dir=tmp_path)
    assert config.stages[1].where == "lang == 'en'"


def test_in_on_a_list_column_a_stage_adds_passes_the_check_and_filters(tmp_path):
    """`'x' in cot_style` (documented): the check cannot know the type of a column a stage adds, so it
    must not refuse it; the build then compiles it against the real list column."""
    rows = [
        {"instruction": "Add 2 and 3.", "output": "Step 1: 2 + 3 = 5.\nStep 2: so the answer is 5."},
        {"instruction": "Greet.", "output": "Hello there."},
        {"instruction": "Add 4 and 4.", "output": "<think>4 + 4 = 8</think> 8"},
    ]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    raw = {
        "pipeline": {"name": "t", "output": "out"},
        "sources": [{"name": "s", "path": "data.jsonl", "format": "alpaca"}],
        "stages": [{"use": "cot_tag"}, {"use": "filter", "where": "'step_list' in cot_style"}],
    }
    result = curate.build(raw, base_dir=tmp_path)
    kept = result.ledger.filter(pl.col("status") == "kept")
    assert kept.height == 1
    styles = curate.open(result.output).records.select("cot_style").collect()["cot_style"].to_list()
    assert len(styles) == 1 and "step_list" in styles[0]
    raw["stages"] = [{"use": "cot_tag"}]
    group = {"where": "not ('think_block' in cot_style)", "weight": 0.5}
    raw["mixture"] = {"groups": {"a": group, "b": {"rest": True, "weight": 0.5}}}
    load_config(raw, base_dir=tmp_path)  # the mixture's `where` passes the check too
    raw["mixture"] = {"groups": {"a": {"where": "'x' in n_tokens", "weight": 1.0}}}
    with pytest.raises(ConfigError, match="column 'n_tokens' is Int64; 'in' needs a list or a string column"):
        load_config(raw, base_dir=tmp_path)
    # comparing the list itself cannot be checked before the build, which then stops with a clean error
    raw["mixture"] = {"groups": {"a": {"where": "cot_style == 'x'", "weight": 0.5}, "b": {"rest": True, "weight": 0.5}}}
    with pytest.raises(FatalError, match=r"mixture.groups.a.where: column 'cot_style' is List\(String\), which cannot"):
        curate.build(raw, base_dir=tmp_path, output=tmp_path / "o2")
    raw.pop("mixture")
    raw["stages"] = [{"use": "cot_tag"}, {"use": "filter", "where": "cot_style == 'x'"}]
    with pytest.raises(FatalError, match="filter: where: column 'cot_style' is List"):
        curate.build(raw, base_dir=tmp_path, output=tmp_path / "o3")


def test_filter_in_a_build_puts_the_reason_in_the_ledger(tmp_path, small_pipeline):
    small_pipeline["stages"].append({"use": "filter", "where": "kind == 'pretrain' or n_tokens >= 12"})
    result = curate.build(small_pipeline, base_dir=tmp_path)
    ledger = result.ledger
    dropped = ledger.filter(pl.col("stage") == "filter")
    assert dropped.height >= 1
    assert set(dropped["reason"]) == {"kind == 'pretrain' or n_tokens >= 12"}
    assert result.manifest["sources"]["inst"]["drop_reasons"]["filter"] == {
        "kind == 'pretrain' or n_tokens >= 12": dropped.height
    }
    assert ledger.filter(pl.col("source") == "docs")["status"].to_list() == ["kept"] * 6


# --- property test: compiled expressions agree with a direct three-valued evaluation ----------------

NUMBERS = st.one_of(st.none(), st.integers(-3, 3))
OPS = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def _compare(col, op, value):
    return f"{col} {op} {value}", lambda r: None if r[col] is None else OPS[op](r[col], value)


def _isnull(col, negated):
    return f"{col} is {'not ' if negated else ''}null", lambda r: (r[col] is None) != negated


def _member(col, negated, items):
    text = f"{col} {'not ' if negated else ''}in [{', '.join(map(str, items))}]"
    return text, lambda r: None if r[col] is None else (r[col] in items) != negated


def _and(a, b):
    def ev(r):
        x, y = a[1](r), b[1](r)
        return False if False in (x, y) else (None if None in (x, y) else True)

    return f"({a[0]} and {b[0]})", ev


def _or(a, b):
    def ev(r):
        x, y = a[1](r), b[1](r)
        return True if True in (x, y) else (None if None in (x, y) else False)

    return f"({a[0]} or {b[0]})", ev


def _not(a):
    return f"not {a[0]}", lambda r: None if a[1](r) is None else not a[1](r)


COL = st.sampled_from(["x", "y"])
ATOMS = st.one_of(
    st.builds(_compare, COL, st.sampled_from(list(OPS)), st.integers(-3, 3)),
    st.builds(_isnull, COL, st.booleans()),
    st.builds(_member, COL, st.booleans(), st.lists(st.integers(-3, 3), max_size=3)),
)
EXPRESSIONS = st.recursive(
    ATOMS,
    lambda inner: st.one_of(st.builds(_and, inner, inner), st.builds(_or, inner, inner), st.builds(_not, inner)),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(EXPRESSIONS, st.lists(st.tuples(NUMBERS, NUMBERS), min_size=1, max_size=8))
def test_compiled_expression_agrees_with_three_valued_logic(expression, rows):
    where, evaluate = expression
    df = pl.DataFrame({"x": [r[0] for r in rows], "y": [r[1] for r in rows]}, schema={"x": pl.Int64, "y": pl.Int64})
    got = df.select(Expression.parse(where).compile(df.schema).alias("c"))["c"].to_list()
    assert got == [evaluate({"x": x, "y": y}) for x, y in rows], where
