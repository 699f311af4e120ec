"""Reasoning-depth features and score (`reasoning_depth_v1`), as vectorised polars expressions.

The *answer* is what the score describes: the assistant messages of an instruction record (joined by
newlines), or the whole `text` of a pretrain record. The *prompt* is the system and user messages; a
pretrain record has none, so its prompt features are 0 and its answer/prompt ratio is null.

Features (one `rd_*` column each; see `FEATURE_DOCS`) are counted with regular expressions over the
answer and the prompt, and tokens with tiktoken. The score is a logistic function of a weighted sum of
transformed features whose coefficients ship in `reasoning_depth_v1.json` (fitted by
`benchmarks/fit_reasoning_depth.py`). Every weight is >= 0 and every feature used by the score can only
grow when text is appended to the answer, so appending a reasoning step never lowers the score.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, fields
from importlib import resources

import numpy as np
import polars as pl

from curate.errors import FatalError
from curate.reasoning.word_boundaries import NON_ASCII_WORD_CHAR, ascii_word_boundaries
from curate.tokens import count_tokens

VERSIONS = ("reasoning_depth_v1",)
MAX_STEPS = 20  # steps beyond this add nothing more to the score

# A segment is a line, or a sentence inside a line: cut at newlines and at . ! ? ; 。！？；
# (a period followed by a digit, as in 0.25, does not cut).
SEGMENT = r"(?:[^\n.!?;。！？；]|\.[0-9])+"
# "so" only where it opens a clause ("..., so we", ". So the answer"), not as an intensifier ("so far").
EN_CONNECTIVES = (
    r"(?i)\b(?:because|therefore|thus|hence|since|consequently|it follows)\b|(?:^|[,.;:!?\n])\s*so\b|\band\s+so\b"
)
ZH_CONNECTIVES = r"因为|所以|因此|由于|因而|于是"
CONNECTIVES = f"{EN_CONNECTIVES}|{ZH_CONNECTIVES}"
MATH = (
    r"<<[^<>\n]*>>"  # GSM8K calculator annotations
    r"|[=≈≤≥]"  # equations and inequalities
    r"|\d\s+[-+*/×÷^x]\s+\(?\d|\d[-+*/×÷^]\(?\d[\d.,]*\)?\s*="  # an operation (not 1/2 cup, 1-2 min)
    r"|\\(?:frac|sqrt|times|cdot|div|sum|int|boxed)\b"  # LaTeX maths
)
# A step: a segment that carries an inference: a calculation or a logical connective.
STEP = rf"{MATH}|(?i:{EN_CONNECTIVES.removeprefix('(?i)')})|{ZH_CONNECTIVES}"
VERIFY = (
    r"(?i)\blet'?s (?:check|verify|double[- ]check)|\bverif(?:y|ies|ied|ying|ication)\b|\bdouble[- ]check"
    r"|\bcheck(?:ing)? (?:our|the|my|this|that) (?:answer|work|result|solution)|\bsanity check"
    r"|\bplug(?:ging)? (?:it|this|these|them|that) back|\bsubstitut\w* back|检验|验证|验算|检查一下"
)
# A whole line of code: a keyword start, an indentation of 4 spaces or a tab, self./this., an HTML/XML tag start,
# a line ending in ; { }, or an assignment with a call, index or string.
CODE_LINE = (
    r"(?m)^[ \t]*(?:(?:def |class |import |from \S+ import |return\b|#include|public |private |function\b|const |"
    r"let |var |SELECT\b|print\(|console\.|for\b[^\n]*:[ \t]*$|if\b[^\n]*:[ \t]*$|elif\b|else:|while\b)[^\n]*"
    r"|(?: {4}|\t)[^\n]*|(?:self|this)\.[^\n]*|<[A-Za-z/!][^\n]*|[^\n]*[;{}][ \t]*"
    r"|[A-Za-z_][\w.]*(?:\[[^\]\n]*\])?[ \t]*[-+*/]?=[ \t]*[^\n]*[(\[\"'{][^\n]*"
    r"|[A-Za-z_]\w*_\w*[ \t]*[-+*/]?=[^\n]*)$"
)
FENCED = r"(?s)```.*?(?:```|$)"
FENCE = r"```"
PROSE_LINE = r"(?m)^[A-Z][^;{}=\n]*(?:\s+[^\s;{}=]+){5,}[.:!?]\s*$"
SUBQUESTION = r"(?m)[?？]|^\s*(?:\([a-h]\)|[a-h]\)|\d+\))\s"
CONSTRAINT = (
    r"(?i)\b(?:at least|at most|no more than|no less than|more than|less than|exactly|must|only|without|"
    r"each|every|per|if|given|such that|assume|assuming|total|remaining|in all|altogether|times as)\b"
    r"|至少|至多|不超过|不少于|必须|每|如果|假设|一共|总共|剩下"
)
QUANTITY = r"\d+(?:[.,]\d+)*"

FEATURE_DOCS: dict[str, str] = {
    "rd_steps": "reasoning steps: answer lines/sentences with a calculation or a logical connective",
    "rd_connectives": "logical connectives (because/therefore/thus/hence/since/so; 因为/所以/因此/由于) per 100 "
    "answer tokens",
    "rd_math": "maths: equations, operations between numbers, <<calc>> annotations, LaTeX maths in the answer",
    "rd_code_explained": "1 when the answer has code (a ``` fence or code-like lines) and >= 2 prose sentences",
    "rd_answer_tokens": "tiktoken tokens of the answer",
    "rd_answer_prompt_ratio": "answer tokens / prompt tokens (null for pretrain records or an empty prompt)",
    "rd_verify": "self-verification phrases (let's check, verify, double-check, 检验, 验证)",
    "rd_subquestions": "question marks and (a)/(b)/1) sub-question markers in the prompt",
    "rd_constraints": "constraint words in the prompt (at least, exactly, each, if, total, 至少, 每, 如果)",
    "rd_quantities": "numbers given in the prompt",
}
FEATURES = tuple(FEATURE_DOCS)


def answer_expr() -> pl.Expr:
    """The answer: `text` of a pretrain record, else the assistant message contents joined by newlines."""
    assistant = (
        pl.col("messages")
        .list.eval(pl.element().filter(pl.element().struct.field("role") == "assistant").struct.field("content"))
        .list.join("\n")
    )
    return pl.when(pl.col("kind") == "pretrain").then(pl.col("text")).otherwise(assistant).fill_null("")


def prompt_expr() -> pl.Expr:
    """The prompt: system and user message contents joined by newlines ("" for pretrain records)."""
    asked = (
        pl.col("messages")
        .list.eval(pl.element().filter(pl.element().struct.field("role") != "assistant").struct.field("content"))
        .list.join("\n")
    )
    return pl.when(pl.col("kind") == "pretrain").then(pl.lit("")).otherwise(asked).fill_null("")


@dataclass(frozen=True)
class Patterns:
    """The feature patterns, as written (for any text) or with ASCII word boundaries (for text without
    non-ASCII word characters; see `curate.reasoning.word_boundaries`)."""

    connectives: str = CONNECTIVES
    math: str = MATH
    step: str = STEP
    verify: str = VERIFY
    code_line: str = CODE_LINE
    constraint: str = CONSTRAINT

    def for_ascii(self) -> Patterns:
        return Patterns(*(ascii_word_boundaries(getattr(self, f.name)) for f in fields(self)))


UNICODE_PATTERNS = Patterns()
ASCII_PATTERNS = UNICODE_PATTERNS.for_ascii()


def count_steps_expr(text: pl.Expr, patterns: Patterns = UNICODE_PATTERNS) -> pl.Expr:
    """Number of reasoning steps in `text` (see `STEP`): segments that carry an inference."""
    segments = text.str.extract_all(SEGMENT)
    return (
        segments.list.eval(pl.element().str.contains(patterns.step).cast(pl.UInt32))
        .list.sum()
        .fill_null(0)
        .cast(pl.Int64)
    )


def prose_expr(answer: pl.Expr, patterns: Patterns = UNICODE_PATTERNS) -> pl.Expr:
    """The answer without code: fenced blocks and code lines (`CODE_LINE`) removed. Steps, connectives
    and maths are counted on this, so that `x = f(y);` is not taken for an equation."""
    return answer.str.replace_all(FENCED, "\n").str.replace_all(patterns.code_line, "")


def regex_features(
    answer: pl.Expr, prompt: pl.Expr, prose: pl.Expr | None = None, patterns: Patterns = UNICODE_PATTERNS
) -> list[pl.Expr]:
    """The regex-counted features (everything except token counts), with internal helper columns.
    `prose` may be `prose_expr(answer, patterns)` already computed as a column (it is read three times;
    code detection below relies on it being exactly that).

    The answer has code when it has a ``` fence or a code line; without a fence, `prose` is the answer
    with its code lines (never empty) cut out, so it has one exactly when `prose` differs from it."""
    prose = prose_expr(answer, patterns) if prose is None else prose
    code = answer.str.contains(FENCE, literal=True) | (prose != answer)
    return [
        count_steps_expr(prose, patterns).alias("rd_steps"),
        prose.str.count_matches(patterns.connectives).cast(pl.Int64).alias("_rd_connective_count"),
        prose.str.count_matches(patterns.math).cast(pl.Int64).alias("rd_math"),
        (code & (answer.str.count_matches(PROSE_LINE) >= 2)).cast(pl.Int64).alias("rd_code_explained"),
        answer.str.count_matches(patterns.verify).cast(pl.Int64).alias("rd_verify"),
        prompt.str.count_matches(SUBQUESTION).cast(pl.Int64).alias("rd_subquestions"),
        prompt.str.count_matches(patterns.constraint).cast(pl.Int64).alias("rd_constraints"),
        prompt.str.count_matches(QUANTITY).cast(pl.Int64).alias("rd_quantities"),
        (answer.str.strip_chars().str.len_chars() == 0).alias("_rd_empty"),
    ]


def _regex_feature_frame(texts: pl.DataFrame) -> pl.DataFrame:
    """`regex_features` of `texts` (columns `a`, `p`), in its row order. Rows without a non-ASCII word
    character use `ASCII_PATTERNS` (the same counts, much faster; see `curate.reasoning.word_boundaries`), the
    others the patterns as written."""
    plain = ~pl.col("a").str.contains(NON_ASCII_WORD_CHAR) & ~pl.col("p").str.contains(NON_ASCII_WORD_CHAR)
    texts = texts.with_row_index("_i").with_columns(plain.alias("_plain"))
    parts = []
    for plain_words, patterns in ((True, ASCII_PATTERNS), (False, UNICODE_PATTERNS)):
        part = texts.filter(pl.col("_plain") == plain_words)
        part = part.with_columns(prose_expr(pl.col("a"), patterns).alias("_prose"))
        parts.append(part.select("_i", *regex_features(pl.col("a"), pl.col("p"), pl.col("_prose"), patterns)))
    return pl.concat(parts).sort("_i").drop("_i")


def add_features(df: pl.DataFrame, encoding: str, threads: int) -> pl.DataFrame:
    """Add every `rd_*` feature column (and internal `_rd_connective_count`, `_rd_empty`) to `df`.

    Tokens are counted with `encoding`. When `df` has a complete `n_tokens` column (a pipeline always
    counts it), only the prompt is counted, usually the shorter part, and the answer's tokens are
    `n_tokens` minus the prompt's (exact for pretrain records; for chats the newline that joins the turns
    makes it one token more than a separate count in ~30% of Alpaca records); without it both are counted.
    """
    texts = df.select(answer_expr().alias("a"), prompt_expr().alias("p"))
    prompt_tokens = pl.Series("_rd_prompt_tokens", count_tokens(texts["p"].to_list(), encoding, threads), pl.Int64)
    if "n_tokens" in df.columns and df["n_tokens"].null_count() == 0:
        answer_tokens = (df["n_tokens"].cast(pl.Int64) - prompt_tokens).clip(0, None)
    else:
        answer_tokens = pl.Series(count_tokens(texts["a"].to_list(), encoding, threads), dtype=pl.Int64)
    feats = _regex_feature_frame(texts).with_columns(answer_tokens.alias("rd_answer_tokens"), prompt_tokens)
    feats = feats.with_columns(
        (100.0 * pl.col("_rd_connective_count") / pl.max_horizontal(pl.col("rd_answer_tokens"), 1)).alias(
            "rd_connectives"
        ),
        pl.when(pl.col("_rd_prompt_tokens") > 0)
        .then(pl.col("rd_answer_tokens") / pl.col("_rd_prompt_tokens"))
        .otherwise(None)
        .alias("rd_answer_prompt_ratio"),
    ).drop("_rd_prompt_tokens")
    return pl.concat([df, feats], how="horizontal")


@dataclass(frozen=True)
class DepthModel:
    """A versioned score: `sigmoid(intercept + sum(weight * transform(input)))`, 0 for an empty answer."""

    version: str
    intercept: float
    weights: dict[str, float]  # model input name -> weight (>= 0)

    def logit(self, df: pl.DataFrame) -> np.ndarray:
        """The weighted sum over `model_inputs(df)`, in a fixed order (reads the `rd_*` and internal
        feature columns)."""
        inputs = model_inputs(df)
        unknown = set(self.weights) - set(inputs)
        if unknown:
            raise FatalError(f"{self.version}: unknown model inputs {sorted(unknown)}")
        total = np.full(df.height, self.intercept, dtype=np.float64)
        for name, weight in self.weights.items():
            total += inputs[name] * weight
        return total

    def score(self, df: pl.DataFrame) -> pl.Series:
        """The score in [0, 1]. Computed with numpy, not polars expressions: polars' vectorised float
        kernels can differ in the last bit with the number of threads (chunking), and the score must be
        the same on every machine and executor."""
        sig = np.clip(1.0 / (1.0 + np.exp(-self.logit(df))), 0.0, 1.0)
        return pl.Series("reasoning_depth", np.where(df["_rd_empty"].to_numpy(), 0.0, sig), dtype=pl.Float64)


def model_inputs(df: pl.DataFrame) -> dict[str, np.ndarray]:
    """The transformed features the score combines (all non-decreasing when text is appended to the answer).

    Steps enter as sqrt(min(steps, `MAX_STEPS`)), so the score keeps rising with every step (graded, not
    saturated after two or three); other counts enter as log(1 + count): each further match adds less. The
    connective *count* is used rather than its density, so that a step without a connective never lowers it.
    """
    log1p = {
        "connectives": "_rd_connective_count",
        "math": "rd_math",
        "answer_tokens": "rd_answer_tokens",
        "verify": "rd_verify",
        "subquestions": "rd_subquestions",
        "constraints": "rd_constraints",
        "quantities": "rd_quantities",
    }

    def column(name: str) -> np.ndarray:
        return df[name].cast(pl.Float64).fill_null(0.0).to_numpy()

    out = {name: np.log1p(column(col)) for name, col in log1p.items()}
    out["steps"] = np.sqrt(np.clip(column("rd_steps"), 0, MAX_STEPS))
    out["code_explained"] = column("rd_code_explained")
    out["answer_prompt_ratio"] = np.log1p(column("rd_answer_prompt_ratio"))
    return out


def model_from_json(data: dict) -> DepthModel:
    """Build a model from its JSON description (see `reasoning_depth_v1.json`)."""
    weights = {k: float(v) for k, v in data["weights"].items()}
    bad = [k for k, v in weights.items() if not (math.isfinite(v) and v >= 0)]
    if bad:
        raise FatalError(f"{data['version']}: weights must be finite and >= 0: {bad}")
    return DepthModel(version=data["version"], intercept=float(data["intercept"]), weights=weights)


@functools.cache
def load_model(version: str) -> DepthModel:
    """The shipped model of a version (read once per process from the package)."""
    if version not in VERSIONS:
        raise FatalError(f"unknown reasoning_depth version {version!r}; known: {', '.join(VERSIONS)}")
    text = resources.files("curate.reasoning").joinpath(f"{version}.json").read_text(encoding="utf-8")
    return model_from_json(json.loads(text))
