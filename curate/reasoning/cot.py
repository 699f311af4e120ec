"""Chain-of-thought detection rules, version `cot_v1`: pure polars string expressions, no model.

`cot_expressions(text)` returns the expressions for the columns `cot`, `cot_style`, `cot_steps` and
`final_answer` of one text column; `count_steps(texts)` is the step count on its own (also used by
`reasoning_depth`). The rules (README "cot_tag rules" has the same table):

- A *calculation* is a GSM8K annotation `<<48/2=24>>`, or `operand op operand [op operand ...] = number`
  with numbers, single-letter variables or `\\frac{}{}` as operands and `+ - * / x × ÷ ^ · \\times \\div
  \\cdot`, `times`, `plus`, `minus`, `divided by`, `multiplied by`, 乘/除/加/减 as operators
  (`48/2 = 24 apples`, `0.2 x 50 = $10`, `91-33=58`).
- A *reasoning sentence* is a sentence (split at `.!?;` + space, newlines and `。！？；`, decimal points
  kept) that holds a calculation, an arithmetic expression `3 + 4`, or an inference connective:
  therefore, thus, hence, so (`, so` / `So,` / `so the|we|he|she|it|they|there|this`), because, since,
  which means, this/that means, it follows, we get/have/know/can, in total, altogether, consequently,
  as a result, implies; 因为 所以 因此 由于 故 则 那么 可得 可知 得到 于是 从而 即.
- An *explicit step* is a line starting with `Step N`, `N.`, `N)`, `N、`, `(N)`, `-`, `*`, `•` or 第N步,
  or a sentence starting with First(ly) / Second(ly) / Third(ly) / Next / Then / After that / Finally /
  Lastly, or 首先 / 其次 / 然后 / 接着 / 再次 / 最后 / 第N步.
- `count_steps` = max(explicit steps, reasoning sentences).

Styles (`cot_style`, in this order):
- `think_block`: a closed `<think>…</think>` block (also thinking, thought(s), reasoning, reflection,
  scratchpad, inner_thought(s), `<|begin_of_thought|>…<|end_of_thought|>`) with non-space content.
- `step_list`: at least `min_steps` explicit steps and at least max(2, ⌈steps / 2⌉) *strong* reasoning
  sentences (a calculation, arithmetic, or a deductive connective: therefore, thus, hence, so …, which /
  this means, it follows, we get / know, consequently, as a result, implies, 所以 因此 故 则 可得 可知
  从而 于是). A list of tips, features or instructions ("1. Eat well 2. Sleep 3. Exercise") has none.
- `lets_think`: "Let's think step by step" and variants (let us / let's reason, work, solve, go, break it
  down … step by step; step-by-step solution/reasoning/explanation/analysis; let's think this through;
  让我们一步一步地思考, 一步一步地思考/推理/分析/计算, 让我们逐步, 我们一步步).
- `equation_chain`: at least `min_calculations` calculations.
- `explain_then_answer`: a final-answer marker (`####`, "the (final|correct) answer (…) is|would be|:",
  `\\boxed{…}`, 答案是 / 答案为 / 答案： incl. 所以答案是) preceded by at least one sentence of at least
  four words (or eight CJK characters): an answer with an explanation before it.

Decision: `cot` = at least one style. `cot_steps` = `count_steps`. `final_answer` = the text after the
last marker up to the end of its sentence (`####` first, then `\\boxed{}`, then the other markers),
whether or not `cot`; null without a marker.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

VERSIONS = ("cot_v1",)
STYLES = ("think_block", "step_list", "lets_think", "equation_chain", "explain_then_answer")

_TAGS = r"think|thinking|thoughts?|reasoning|reflection|scratchpad|inner_thoughts?"
THINK_BLOCK = (
    rf"(?i)<\s*(?:{_TAGS})\s*>\s*\S[\s\S]*?<\s*/\s*(?:{_TAGS})\s*>"
    r"|<\|begin_of_thought\|>\s*\S[\s\S]*?<\|end_of_thought\|>"
)

LETS_THINK = (
    r"(?i)\blet(?:'|’)?s\s+(?:think|reason|work|go|solve|break|walk|tackle)\b[^.\n]{0,40}?\bstep[-\s]by[-\s]step"
    r"|\blet\s+us\s+(?:think|reason|work|solve)\b[^.\n]{0,40}?\bstep[-\s]by[-\s]step"
    r"|\bstep[-\s]by[-\s]step\s+(?:solution|reasoning|explanation|analysis)"
    r"|\blet(?:'|’)?s\s+think\s+(?:this|it)\s+through"
    r"|让我们一步一?步地?思考|一步一步地?(?:思考|推理|分析|计算)|让我们逐步|我们一步一?步"
)

_NUM = r"[$€£¥]?\s?-?\d[\d,]*(?:\.\d+)?%?"
_OPERAND = rf"\(?\s*(?:{_NUM}|\d*[a-zA-Z]\b|\\frac\{{[^{{}}]*\}}\{{[^{{}}]*\}})\s*\)?"
_OP = (
    r"(?:[-+*/×÷^·]|\bx\b|\\times|\\div|\\cdot|\btimes\b|\bplus\b|\bminus\b|\bdivided by\b|\bmultiplied by\b"
    r"|乘以?|除以|加上?|减去?)"
)
CALCULATION = rf"<<[^<>\n]*=[^<>\n]*>>|{_OPERAND}\s*{_OP}\s*{_OPERAND}(?:\s*{_OP}\s*{_OPERAND})*\s*=\s*\(?{_NUM}"
ARITHMETIC = r"\d\s*(?:[+*×÷^]|\\times|\\div)\s*\(?\d|\d\s+[-/x]\s+\(?\d|\d\s*=\s*\$?\d"

_STRONG_EN = (
    r"\b(?:therefore|thus|hence|consequently|implies|it follows|as a result|which means|this means|that means"
    r"|we (?:get|know|can conclude|find)|so the answer|in total|altogether)\b"
)
_STRONG_ZH = r"所以|因此|故|则|可得|可知|从而|于是"
_WEAK = (
    r"\b(?:because|since|we have|we can|so (?:the|we|he|she|it|they|there|this|that|each))\b|(?:^|[.;!?]\s+|,\s*)so\b"
    r"|因为|由于|那么|得到|即"
)
STRONG = rf"(?i){CALCULATION}|{ARITHMETIC}|{_STRONG_EN}|{_STRONG_ZH}"
SIGNAL = rf"(?i){CALCULATION}|{ARITHMETIC}|{_STRONG_EN}|{_STRONG_ZH}|{_WEAK}"

_STEP_LINE = (
    r"(?im)^\s*(?:step\s*\d+\b|\d{1,2}(?:[.)]\s|、|:\s)|\(\d{1,2}\)|（\d{1,2}）|[-*•]\s|第[一二三四五六七八九十\d]+步)"
)
_STEP_WORD = (
    r"(?im)(?:^|[.!?]\s+)\s*(?:first(?:ly)?|second(?:ly)?|third(?:ly)?|next|then|after that|finally|lastly)\b"
    r"|首先|其次|然后|接着|再次|最后|第[一二三四五六七八九十]步"
)

_ANSWER_PHRASE = (
    r"\bthe\s+(?:final\s+|correct\s+|right\s+)?answer(?:\s*\([^)\n]{0,40}\))?\s+(?:is|would be|should be|will be)"
    r"|(?m:^)\s*(?:(?:the\s+)?(?:final|correct)\s+)?answer(?:\s*\([^)\n]{0,40}\))?\s*(?::|is\b|will be|would be)"
    r"|\bfinal\s+answer\s*:"
    r"|答案(?:是|为|：|:)"
)
FINAL_MARKER = rf"(?i)(?:####|\\boxed\{{|{_ANSWER_PHRASE})\s*[^\s.!?,;。]"
_HASH_TAIL = r"####[^\n]*"
_BOXED = r"\\boxed\{(?:[^{}]|\{[^{}]*\})*\}"
_ANSWER_TAIL = rf"(?i)(?:{_ANSWER_PHRASE})[^\n]*"
_ANSWER_HEAD = rf"(?i)^(?:{_ANSWER_PHRASE})"
# Everything up to the last final-answer marker (greedy), for the explanation that precedes it.
_BEFORE_LAST_MARKER = rf"(?s)^(.*)(?:{FINAL_MARKER.removeprefix('(?i)')})"
_OPTION_LINE = r"(?m)^\s*\(?[A-Fa-f][.)]\s[^\n]*"


def _sentences(text: pl.Expr) -> pl.Expr:
    """Text with decimal points protected, so that sentence splitting ignores them."""
    return text.fill_null("").str.replace_all(r"(\d)\.(\d)", "${1}_${2}")


def _sentence_with(signal: str) -> str:
    body = r"[^.!?;\n。！？；]"
    return rf"(?i){body}*(?:{signal.removeprefix('(?i)')}){body}*"


def _explicit_steps(text: pl.Expr) -> pl.Expr:
    lines = text.str.count_matches(_STEP_LINE)
    words = text.str.count_matches(_STEP_WORD)
    return pl.max_horizontal(lines, words).cast(pl.Int32)


def _reasoning_sentences(protected: pl.Expr, signal: str) -> pl.Expr:
    # The protected text has no decimal points, so the sentence pattern cannot stop inside a number;
    # a calculation with decimals (`0_2 x 50 = 10`) still matches from its last digits.
    return protected.str.count_matches(_sentence_with(signal)).cast(pl.Int32)


def count_steps(texts: pl.Expr | pl.Series | Sequence[str | None]) -> pl.Expr | pl.Series:
    """Reasoning steps per text: max(explicit steps, reasoning sentences) (module docstring). Stable API.

    Takes an expression (returns an `Int32` expression) or a Series / list of strings (returns a Series);
    null texts count 0.
    """
    if isinstance(texts, pl.Expr):
        text = texts.fill_null("")
        return pl.max_horizontal(_explicit_steps(text), _reasoning_sentences(_sentences(text), SIGNAL))
    series = texts if isinstance(texts, pl.Series) else pl.Series("text", list(texts), pl.String)
    return pl.select(count_steps(pl.lit(series.cast(pl.String)))).to_series().alias("cot_steps")


def _final_answer(text: pl.Expr) -> pl.Expr:
    hash_tail = text.str.extract_all(_HASH_TAIL).list.last().str.replace(r"^####\s*", "")
    boxed = text.str.extract_all(_BOXED).list.last().str.replace(r"^\\boxed\{", "").str.replace(r"\}$", "")
    tail = text.str.extract_all(_ANSWER_TAIL).list.last().str.replace(_ANSWER_HEAD, "")
    tail = tail.str.extract(r"^\s*(.*?)(?:[.。!！](?:\s|$)|$)", 1)
    answer = pl.coalesce(hash_tail, boxed, tail).str.strip_chars().str.strip_chars_end(".。")
    return pl.when(answer.str.len_chars() > 0).then(answer.str.slice(0, 200)).otherwise(None)


def _explained_before_marker(text: pl.Expr) -> pl.Expr:
    """A final-answer marker with an explanation before it: at least four words (or eight CJK characters)
    between the last question mark (or the start) and the last marker, answer-option lines not counted."""
    before = text.str.extract(_BEFORE_LAST_MARKER.replace("(?s)", "(?si)"), 1)
    explanation = before.str.extract(r"([^?？]*)$", 1).str.replace_all(_OPTION_LINE, "")
    words = explanation.str.count_matches(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")
    words = words + explanation.str.count_matches(r"[\u4e00-\u9fff]") // 2
    return before.is_not_null() & (words.fill_null(0) >= 4)


def cot_expressions(text: pl.Expr, min_steps: int = 2, min_calculations: int = 2) -> list[pl.Expr]:
    """Expressions for `cot`, `cot_style`, `cot_steps`, `final_answer` of `text` (rules in the module docstring)."""
    text = text.fill_null("")
    protected = _sentences(text)
    explicit = _explicit_steps(text)
    strong = _reasoning_sentences(protected, STRONG)
    reasoning = _reasoning_sentences(protected, SIGNAL)
    calculations = text.str.count_matches(CALCULATION)
    styles = {
        "think_block": text.str.contains(THINK_BLOCK),
        "step_list": (explicit >= min_steps) & (strong >= pl.max_horizontal(pl.lit(2), (explicit + 1) // 2)),
        "lets_think": text.str.contains(LETS_THINK),
        "equation_chain": calculations >= min_calculations,
        "explain_then_answer": _explained_before_marker(text),
    }
    style_list = pl.concat_list([pl.when(hit).then(pl.lit(name)) for name, hit in styles.items()]).list.drop_nulls()
    return [
        (style_list.list.len() > 0).alias("cot"),
        style_list.alias("cot_style"),
        pl.max_horizontal(explicit, reasoning).cast(pl.Int32).alias("cot_steps"),
        _final_answer(text).alias("final_answer"),
    ]
