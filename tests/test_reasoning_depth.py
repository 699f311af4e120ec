"""`reasoning_depth`: features on real and hand-written examples, the score's properties, validation."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from curate.config import load_config
from curate.errors import ConfigError, FatalError
from curate.reasoning.depth import (
    ASCII_PATTERNS,
    CONNECTIVES,
    FEATURES,
    NON_ASCII_WORD_CHAR,
    UNICODE_PATTERNS,
    VERSIONS,
    _regex_feature_frame,
    load_model,
    model_from_json,
    prose_expr,
    regex_features,
)
from curate.stages import STAGES, ReasoningDepth
from curate.stages.base import Context
from curate.tokens import DEFAULT_ENCODING, get_encoding

FIXTURES = Path(__file__).parent / "fixtures" / "reasoning"
MESSAGES = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))


def examples() -> list[dict]:
    with open(FIXTURES / "depth_examples.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def chats(*pairs: tuple[str, str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "kind": ["instruction"] * len(pairs),
            "text": [None] * len(pairs),
            "messages": [[{"role": "user", "content": p}, {"role": "assistant", "content": a}] for p, a in pairs],
        },
        schema={"kind": pl.String, "text": pl.String, "messages": MESSAGES},
    )


def docs(*texts: str) -> pl.DataFrame:
    return pl.DataFrame(
        {"kind": ["pretrain"] * len(texts), "text": list(texts), "messages": [None] * len(texts)},
        schema={"kind": pl.String, "text": pl.String, "messages": MESSAGES},
    )


def score(prompt: str, answer: str) -> dict:
    return ReasoningDepth().process(chats((prompt, answer))).row(0, named=True)


def auc(pos: list[float], neg: list[float]) -> float:
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


# ------------------------------------------------------------------------------------------ real examples


def test_real_positives_rank_above_real_negatives():
    rows = examples()
    out = ReasoningDepth().process(chats(*[(r["prompt"], r["answer"]) for r in rows]))
    scores = out["reasoning_depth"].to_list()
    pos = [s for s, r in zip(scores, rows, strict=True) if r["label"] == 1]
    neg = [s for s, r in zip(scores, rows, strict=True) if r["label"] == 0]
    assert len(pos) >= 15 and len(neg) >= 15
    assert auc(pos, neg) >= 0.9
    gsm = [s for s, r in zip(scores, rows, strict=True) if r["source"] == "gsm8k"]
    long_plain = [s for s, r in zip(scores, rows, strict=True) if r.get("slice") in ("long_plain", "structure_list")]
    # long essays and tip lists are not reasoning (one essay with "therefore" scores 0.7: see EVAL_REASONING_DEPTH.md)
    assert sum(gsm) / len(gsm) > 0.8 > 0.4 > sum(long_plain) / len(long_plain)


def test_gsm8k_steps_are_counted_and_the_score_is_graded():
    rows = [r for r in examples() if r["source"] == "gsm8k"]
    out = ReasoningDepth().process(chats(*[(r["prompt"], r["answer"]) for r in rows]))
    truth = [r["gsm8k_steps"] for r in rows]
    for found, expected in zip(out["rd_steps"], truth, strict=True):
        assert abs(found - expected) <= 1
    assert spearmanr(out["rd_steps"].to_list(), truth).statistic >= 0.9
    assert spearmanr(out["reasoning_depth"].to_list(), truth).statistic >= 0.5
    assert out["reasoning_depth"].max() < 1.0  # graded, not saturated


def test_flan_rationale_beats_its_own_answer_only_version():
    rows = examples()
    rationale = {r["file"]: r for r in rows if r["source"] == "flan_cot"}
    bare = {r["file"]: r for r in rows if r["source"] == "flan_answer_only"}
    assert rationale.keys() == bare.keys()
    for key in rationale:
        assert (
            score(rationale[key]["prompt"], rationale[key]["answer"])["reasoning_depth"]
            > score(bare[key]["prompt"], bare[key]["answer"])["reasoning_depth"]
        )


# ------------------------------------------------------------------------------------------ features


def test_steps_feature():
    gsm = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72"
    assert score("q", gsm)["rd_steps"] == 2
    # a decimal point does not cut a sentence; a sentence without numbers or connectives is no step
    assert score("q", "She earns 0.2 x 50 = 10 dollars. What a nice day. So she is happy.")["rd_steps"] == 2
    assert score("q", "1. Buy flour.\n2. Mix it.\n3. Bake it.")["rd_steps"] == 0  # a list is structure


def test_connectives_feature_per_100_tokens():
    answer = "It rains because clouds cool. Therefore the ground is wet, so we stay in."
    row = score("Why is it wet?", answer)
    tokens = len(get_encoding(DEFAULT_ENCODING).encode_ordinary(answer))
    assert row["rd_answer_tokens"] == tokens
    assert row["rd_connectives"] == pytest.approx(100 * 3 / tokens)
    assert score("q", "Socks are soft. Sonnets are old.")["rd_connectives"] == 0  # whole words only
    assert score("q", "因为下雨，所以地面是湿的。因此我们待在家里。")["rd_connectives"] > 0


def test_math_feature():
    assert score("q", "48/2 = <<48/2=24>>24")["rd_math"] == 2  # the equation and the annotation
    assert score("q", "We have $x^2 = 4$, so $x = \\sqrt{4}$.")["rd_math"] >= 3
    assert score("q", "Paris is the capital of France.")["rd_math"] == 0


def test_code_with_explanation_and_code_is_not_maths():
    code_only = "def add(a, b):\n    total = sum([a, b])\n    return total\n"
    explained = (
        "The function below adds two numbers and returns the result to the caller.\n"
        f"```python\n{code_only}```\n"
        "It uses the built-in sum function so that any numeric type works.\n"
    )
    assert score("Write add.", code_only)["rd_code_explained"] == 0
    assert score("Write add.", explained)["rd_code_explained"] == 1
    # assignments and calls inside code are not equations or steps
    row = score("Write add.", code_only + "x_value = compute(3, 4);\n")
    assert row["rd_math"] == 0 and row["rd_steps"] == 0
    real = [r for r in examples() if r.get("slice") == "code"]
    assert real and all(score(r["prompt"], r["answer"])["reasoning_depth"] < 0.5 for r in real)


def test_answer_prompt_ratio():
    row = score("Add two and three.", "Two plus three is five.")
    enc = get_encoding(DEFAULT_ENCODING)
    expected = len(enc.encode_ordinary("Two plus three is five.")) / len(enc.encode_ordinary("Add two and three."))
    assert row["rd_answer_prompt_ratio"] == pytest.approx(expected)


def test_self_verification_feature():
    assert score("q", "x = 3. Let's check: 3 + 4 = 7, which matches.")["rd_verify"] == 1
    assert score("q", "We can verify this and double-check it.")["rd_verify"] == 2
    assert score("q", "代入原式验证：3+4=7，检验正确。")["rd_verify"] == 2
    assert score("q", "The check is in the mail.")["rd_verify"] == 0


def test_question_complexity_features():
    prompt = "A shop sells at least 3 apples each day.\n(a) How many in 7 days?\n(b) If each costs 2, what total?"
    row = score(prompt, "21 apples and 42 dollars.")
    assert row["rd_subquestions"] == 4  # two question marks, two (a)/(b) markers
    assert row["rd_constraints"] >= 4  # at least, each, if, each, total
    assert row["rd_quantities"] == 3
    simple = score("Name a colour.", "Red.")
    assert (simple["rd_subquestions"], simple["rd_constraints"], simple["rd_quantities"]) == (0, 0, 0)


# ------------------------------------------------------------------------------------------ record kinds


def test_pretrain_records_score_their_text_without_a_prompt():
    out = ReasoningDepth().process(
        docs("Since 12 / 4 = 3, each box holds 3 pens.\nSo 5 boxes hold 5 * 3 = 15 pens.", "A quiet lake.")
    )
    first, second = out.rows(named=True)
    assert first["rd_answer_prompt_ratio"] is None
    assert (first["rd_subquestions"], first["rd_constraints"], first["rd_quantities"]) == (0, 0, 0)
    assert first["rd_steps"] == 2
    assert first["reasoning_depth"] > 0.5 > second["reasoning_depth"]


def test_empty_and_missing_answers_score_zero():
    df = pl.concat(
        [
            chats(("How many legs do 3 cats have?", ""), ("q", "   \n ")),
            pl.DataFrame(
                {"kind": ["instruction"], "text": [None], "messages": [[{"role": "user", "content": "Hi?"}]]},
                schema={"kind": pl.String, "text": pl.String, "messages": MESSAGES},
            ),
        ]
    )
    out = ReasoningDepth().process(df)
    assert out.height == 3
    assert out["reasoning_depth"].to_list() == [0.0, 0.0, 0.0]
    assert out["rd_steps"].to_list() == [0, 0, 0]
    assert out["rd_answer_tokens"].to_list()[0] == 0


def test_chinese_worked_answer_beats_chinese_plain_answers():
    worked = (
        "小明有12个苹果，给了小红3个，所以还剩12-3=9个。\n"
        "他又买了5个，因此一共有9+5=14个。\n"
        "验证：14-5+3=12，正确。所以答案是14。"
    )
    prompt = "小明有12个苹果，给了小红3个，又买了5个。他现在一共有多少个苹果？"
    row = score(prompt, worked)
    assert row["rd_steps"] == 4 and row["rd_verify"] == 1 and row["rd_connectives"] > 0
    plain = [r for r in examples() if r["source"] == "llamafactory_zh"]
    assert plain
    assert all(score(r["prompt"], r["answer"])["reasoning_depth"] < row["reasoning_depth"] for r in plain)


# ------------------------------------------------------------------------------------------ the stage


def test_stage_adds_columns_keeps_rows_and_order():
    rows = examples()[:6]
    df = chats(*[(r["prompt"], r["answer"]) for r in rows]).with_columns(pl.Series("id", [f"r{i}" for i in range(6)]))
    out = ReasoningDepth().process(df)
    assert out["id"].to_list() == df["id"].to_list()
    assert set(FEATURES) | {"reasoning_depth"} <= set(out.columns)
    assert not [c for c in out.columns if c.startswith("_")]
    again = ReasoningDepth().process(out)  # scoring a scored frame replaces the columns
    assert again.columns == out.columns and again.equals(out)
    assert STAGES["reasoning_depth"] is ReasoningDepth and not ReasoningDepth.drops_rows


def unicode_only_features(texts: pl.DataFrame) -> pl.DataFrame:
    """The regex features with the patterns as written on every row (the reference for the fast path)."""
    answer, prompt = pl.col("a"), pl.col("p")
    return texts.select(regex_features(answer, prompt, prose_expr(answer, UNICODE_PATTERNS), UNICODE_PATTERNS))


# Word boundaries beside non-ASCII letters (因为because, éso, ſ and K, which (?i) folds to s and k), code
# keywords beside them, and non-ASCII punctuation (curly quotes, dashes), which keeps the fast path.
BOUNDARY_CASES = [
    ("Is it 3 + 4?", "因为because 3 + 4 = 7, so the answer is 7."),
    ("Why?", "Thé so it goes; éso and soé; therefore ñthus thusñ."),
    ("Check", "Let’s verify — “because” it works, ſo thuſ it is; sanity check done."),
    ("At least 3 eaché", "returné x\nfunctionñ f(x)\nif x:\n    return x; SELECTé * FROM t"),
    ("“Exactly” 2 — each", "Therefore, it follows that 2 × 3 = 6. So we get 6… because “so”."),
    ("\u212a at least", "\\boxedé{6} \\frac{1}{2} = 0.5 and so on; hence done."),
    ("plain", "Because x = 2, so y = 4. Therefore z = 8. Let's double-check: 2 * 4 = 8."),
]


def test_fast_word_boundaries_give_the_features_of_the_patterns_as_written():
    texts = pl.DataFrame({"a": [a for _, a in BOUNDARY_CASES], "p": [p for p, _ in BOUNDARY_CASES]})
    fast = _regex_feature_frame(texts)
    assert fast.equals(unicode_only_features(texts))
    plain = texts.select(
        ~pl.col("a").str.contains(NON_ASCII_WORD_CHAR) & ~pl.col("p").str.contains(NON_ASCII_WORD_CHAR)
    )
    assert plain.to_series().to_list() == [False, False, False, False, True, False, True]  # both paths are exercised
    assert ASCII_PATTERNS.connectives.count("(?-u:\\b)") == CONNECTIVES.count("\\b") > 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(
                alphabet=st.sampled_from(list("so because thus at least éñ因为ſ\u212a“—,.;:!?=+3\n\t(){}x_")),
                max_size=60,
            ),
            st.text(
                alphabet=st.sampled_from(list("so because thus at least éñ因为ſ\u212a“—,.;:!?=+3\n\t(){}x_")),
                max_size=60,
            ),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_fast_word_boundaries_agree_on_any_text(pairs):
    texts = pl.DataFrame(
        {"a": [a for a, _ in pairs], "p": [p for _, p in pairs]}, schema={"a": pl.String, "p": pl.String}
    )
    assert _regex_feature_frame(texts).equals(unicode_only_features(texts))


def test_n_tokens_path_matches_counting_within_one_token():
    rows = examples()
    df = chats(*[(r["prompt"], r["answer"]) for r in rows])
    enc = get_encoding(DEFAULT_ENCODING)
    texts = [f"{r['prompt']}\n{r['answer']}" for r in rows]
    counted = df.with_columns(pl.Series("n_tokens", [len(enc.encode_ordinary(t)) for t in texts], pl.Int64))
    a = ReasoningDepth().process(df, Context())
    b = ReasoningDepth().process(counted, Context())
    diff = (a["rd_answer_tokens"] - b["rd_answer_tokens"]).abs()
    assert diff.max() <= 1
    assert (a["reasoning_depth"] - b["reasoning_depth"]).abs().max() < 0.02


def test_shipped_model_is_documented_and_checked():
    assert VERSIONS == ("reasoning_depth_v1",)
    model = load_model("reasoning_depth_v1")
    assert model.weights["steps"] > 0 and all(w >= 0 for w in model.weights.values())
    from importlib import resources

    data = json.loads(resources.files("curate.reasoning").joinpath("reasoning_depth_v1.json").read_text("utf-8"))
    assert "Alpaca" in data["fitted_on"]["licenses"] and data["fitted_on"]["script"]
    with pytest.raises(FatalError, match="must be finite and >= 0"):
        model_from_json({"version": "x", "intercept": 0, "weights": {"steps": -1.0}})
    with pytest.raises(FatalError, match="unknown reasoning_depth version"):
        load_model("reasoning_depth_v0")


# ------------------------------------------------------------------------------------------ properties

WORDS = st.sampled_from(["Tom", "has", "apples", "each", "box", "the", "total", "is", "so", "because", "We", "get"])
NUMS = st.integers(min_value=0, max_value=999).map(str)
STEP = st.tuples(NUMS, st.sampled_from(["+", "-", "*", "/"]), NUMS, NUMS, st.lists(WORDS, max_size=5)).map(
    lambda t: f"{' '.join(t[4])} {t[0]} {t[1]} {t[2]} = {t[3]}."
)
TEXT = st.lists(st.one_of(STEP, st.lists(WORDS, min_size=1, max_size=8).map(" ".join)), max_size=6).map("\n".join)


@settings(max_examples=60, deadline=None)
@given(prompt=st.text(max_size=80), answer=TEXT, step=STEP)
def test_appending_a_reasoning_step_never_lowers_the_score(prompt, answer, step):
    df = chats((prompt, answer), (prompt, f"{answer}\n{step}" if answer else step))
    before, after = ReasoningDepth().process(df).rows(named=True)
    assert after["reasoning_depth"] >= before["reasoning_depth"]
    assert after["rd_steps"] == before["rd_steps"] + 1


@settings(max_examples=60, deadline=None)
@given(prompt=st.text(max_size=200), answer=st.text(max_size=400))
def test_score_is_always_in_unit_interval(prompt, answer):
    row = score(prompt, answer)
    assert 0.0 <= row["reasoning_depth"] <= 1.0
    assert all(row[c] is None or row[c] >= 0 for c in FEATURES)


# ------------------------------------------------------------------------------------------ config


def config(tmp_path: Path, stage: dict) -> dict:
    (tmp_path / "a.jsonl").write_text('{"instruction": "Add 2 and 3.", "output": "2 + 3 = 5."}\n')
    return {"pipeline": {"name": "t"}, "sources": [{"name": "a", "path": "a.jsonl"}], "stages": [stage]}


def test_config_accepts_the_stage_and_its_version(tmp_path):
    cfg = load_config(config(tmp_path, {"use": "reasoning_depth", "version": "reasoning_depth_v1"}), tmp_path)
    assert isinstance(cfg.stages[0], ReasoningDepth)
    assert "reasoning_depth_v1" in cfg.stages[0].fingerprint()


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ({"use": "reasoning_depth", "version": "reasoning_depth_v2"}, "stages[0].version: must be one of"),
        ({"use": "reasoning_depth", "version": 1}, "stages[0].version: must be one of"),
        ({"use": "reasoning_depth", "verison": "reasoning_depth_v1"}, "did you mean 'version'"),
    ],
)
def test_config_rejects_bad_parameters(tmp_path, stage, message):
    with pytest.raises(ConfigError) as info:
        load_config(config(tmp_path, stage), tmp_path)
    assert any(message in p for p in info.value.problems), info.value.problems


_SCORE_SCRIPT = """
import sys
import numpy as np
import polars as pl
from curate.reasoning.depth import load_model

rng = np.random.default_rng(7)
n = 50_000
counts = {c: rng.integers(0, 40, n) for c in ("_rd_connective_count", "rd_math", "rd_answer_tokens", "rd_verify",
          "rd_subquestions", "rd_constraints", "rd_quantities", "rd_steps", "rd_code_explained")}
frame = pl.DataFrame({**counts, "rd_answer_prompt_ratio": rng.random(n) * 30, "_rd_empty": rng.random(n) < 0.01})
sys.stdout.write(load_model("reasoning_depth_v1").score(frame).to_numpy().tobytes().hex())
"""


def test_score_is_bit_identical_whatever_the_thread_count():
    """Executors on machines with other core counts must give the same bytes: polars' float kernels
    differ in the last bit with its thread count (chunking), so the score must not depend on them."""
    import os
    import subprocess
    import sys

    outputs = set()
    for threads in ("1", "2", "3"):
        env = {**os.environ, "POLARS_MAX_THREADS": threads}
        run = subprocess.run([sys.executable, "-c", _SCORE_SCRIPT], env=env, capture_output=True, text=True, check=True)
        outputs.add(run.stdout)
    assert len(outputs) == 1 and len(next(iter(outputs))) == 50_000 * 16
