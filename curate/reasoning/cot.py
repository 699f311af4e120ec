"""Chain-of-thought detection rules, version `cot_v1`: pure polars string expressions, no model.

`tag_cot(df, text)` adds the columns `cot`, `cot_style`, `cot_steps` and `final_answer` for one text
expression; `count_steps(texts)` is the step count on its own (a stable name: `reasoning_depth` uses it).
The README's section "Chain-of-thought tags (`cot_tag`)" has the same rules as a table.

Building blocks:

- *calculation*: a GSM8K annotation `<<48/2=24>>`, or `operand op operand [op operand ...] = number` (is,
  equals, gives, makes, yields, 等于, 得 also stand for `=`), with numbers, single-letter variables or
  `\\frac{}{}` as operands and `+ - * / x × ÷ ^ · \\times \\div \\cdot`, times, plus, minus, divided by,
  multiplied by, 乘/除/加/减 as operators (`48/2 = 24 apples`, `0.2 x 50 = $10`, `91-33=58`,
  `48 divided by 2 is 24`).
- *reasoning sentence*: a sentence (split at `.!?;` and newlines and `。！？；`; decimal points do not split)
  that holds a calculation, arithmetic (`3+4`, `6 x 7`, `2 = 2`; not a bare fraction such as `1/2 cup`)
  or a connective. *Strong* connectives: therefore, thus, hence, consequently, implies, it follows, as a
  result, which/this/that means, we get/know/find/can conclude, so the answer, in total, altogether;
  所以 因此 可得 可知 从而 于是 故而. *Weak* ones (they count for `cot_steps` only): because, since, we
  have, we can, so (`, so` / `So,` / `so the|we|he|...`); 因为 由于 那么 得到 则.
- *explicit step*: a line starting with `Step N`, `N.`, `N)`, `N、`, `N:`, `(N)`, `（N）`, `-`, `*`, `•` or
  第N步, or a sentence starting with First(ly) / Second(ly) / Third(ly) / Next / Then / After that /
  Finally / Lastly, or 首先 / 其次 / 然后 / 接着 / 再次 / 最后 / 第N步 anywhere. The larger of the two
  counts is the number of explicit steps.
- *headed item*: a numbered or bulleted line that opens with a heading of at most 40 characters and a
  colon (`1. Overhead costs: ...`, `- 高需求：...`): a parallel point (tip, reason, feature), not a step.
- *final-answer marker*: `#### X` closing the text (GSM8K; a `#### Heading` elsewhere is Markdown),
  `\\boxed{X}`, "the (final|correct|right) answer (...) is|would be|should be|will be X", a line starting
  "(Final|Correct) Answer: X" / "Answer is X", "final answer: X", 答案是/答案为/答案： at a sentence start
  or after 所以/因此/故/综上 (所以答案是, 最终答案是); something other than punctuation must follow.

Styles (`cot_style`, in this order):

- `think_block`: a closed `<think>…</think>` block (also `<thinking>`, `<thought(s)>`, `<reasoning>`,
  `<reflection>`, `<scratchpad>`, `<inner_thought(s)>`, `<|begin_of_thought|>…<|end_of_thought|>`) with
  non-space content.
- `step_list`: at least `min_steps` explicit steps, at least max(2, ⌈steps / 2⌉) strong reasoning
  sentences, and fewer than half of the steps headed items. "1. Eat well 2. Sleep 3. Exercise" has no
  strong reasoning; "1. High demand: ..., therefore ..." lists are headed.
- `lets_think`: "Let's think step by step" and variants: let's / let us think, reason, work, go, solve,
  break, walk, tackle … step by step (within 40 characters); step-by-step solution / reasoning /
  explanation / analysis; let's think this / it through; 让我们一步一步地思考, 一步一步地思考/推理/分析/
  计算, 让我们逐步, 我们一步步.
- `equation_chain`: at least `min_calculations` calculations (one calculation is not a chain).
- `explain_then_answer`: a final-answer marker with an explanation before the last one: at least four
  words (a CJK character counts half) between the last question mark before it (or the start) and the
  marker, answer-option lines (`A. ...`) not counted. A quiz line "Q? Answer: X" has none.

Decision: `cot` = at least one style; the length of the text is never used. `cot_steps` = `count_steps`
= max(explicit steps, reasoning sentences, strong or weak). `final_answer` = the text after the last
marker up to the end of its sentence (`####` first, then `\\boxed{}`, then the other markers), at most
200 characters, whether or not `cot`; null without a marker.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from curate.reasoning.word_boundaries import ascii_word_boundaries

VERSIONS = ("cot_v1",)
COLUMNS = ("cot", "cot_style", "cot_steps", "final_answer")
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
_RESULT = r"(?:=|\bis\b|\bequals\b|\bgives\b|\bmakes\b|\byields\b|等于|得)"
CALCULATION = (
    rf"<<[^<>\n]*=[^<>\n]*>>|{_OPERAND}\s*{_OP}\s*{_OPERAND}(?:\s*{_OP}\s*{_OPERAND})*\s*{_RESULT}\s*\(?{_NUM}"
)
ARITHMETIC = r"\d\s*(?:[+*×÷^]|\\times|\\div)\s*\(?\d|\d\s+[-/x]\s+\(?\d|\d\s*=\s*\$?\d"

_STRONG_EN = (
    r"\b(?:therefore|thus|hence|consequently|implies|it follows|as a result|which means|this means|that means"
    r"|we (?:get|know|can conclude|find)|so the answer|in total|altogether)\b"
)
_STRONG_ZH = r"所以|因此|可得|可知|从而|于是|故而"
_WEAK = (
    r"\b(?:because|since|we have|we can|so (?:the|we|he|she|it|they|there|this|that|each))\b|(?:^|[.;!?]\s+|,\s*)so\b"
    r"|因为|由于|那么|得到|则"
)
STRONG = rf"(?i){CALCULATION}|{ARITHMETIC}|{_STRONG_EN}|{_STRONG_ZH}"
SIGNAL = rf"(?i){CALCULATION}|{ARITHMETIC}|{_STRONG_EN}|{_STRONG_ZH}|{_WEAK}"

_STEP_LINE = (
    r"(?im)^\s*(?:step\s*\d+\b|\d{1,2}(?:[.)]\s|、|:\s)|\(\d{1,2}\)|（\d{1,2}）|[-*•]\s|第[一二三四五六七八九十\d]+步)"
)
# A list item that opens with a short heading and a colon ("1. Overhead costs: ...", "- 高需求：...") is a
# parallel point (a tip, reason or feature), not a step that builds on the previous one.
_HEADED_ITEM = r"(?m)^\s*(?:\d{1,2}[.)、]|[-*•])\s*[^\n:：]{1,40}[:：]"
_STEP_WORD = (
    r"(?im)(?:^|[.!?]\s+)\s*(?:first(?:ly)?|second(?:ly)?|third(?:ly)?|next|then|after that|finally|lastly)\b"
    r"|首先|其次|然后|接着|再次|最后|第[一二三四五六七八九十]步"
)

_ANSWER_PHRASE = (
    r"\bthe\s+(?:final\s+|correct\s+|right\s+)?answer(?:\s*\([^)\n]{0,40}\))?\s+(?:is|would be|should be|will be)"
    r"|(?m:^)\s*(?:(?:the\s+)?(?:final|correct)\s+)?answer(?:\s*\([^)\n]{0,40}\))?\s*(?::|is\b|will be|would be)"
    r"|\bfinal\s+answer\s*:"
    r"|(?:(?m:^)|[。！？；，,]\s*|所以|因此|故|综上所述?，?)(?:最终的?|最后的?)?答案(?:是|为|：|:)"
)
# GSM8K's `#### 72` closes the text; a `#### Heading` elsewhere is Markdown.
_HASH_TAIL = r"####[ \t]*[^\s#][^\n]*\s*$"
FINAL_MARKER = rf"(?i){_HASH_TAIL}|(?:\\boxed\{{|{_ANSWER_PHRASE})\s*[^\s.!?,;。]"
_BOXED = r"\\boxed\{(?:[^{}]|\{[^{}]*\})*\}"
# The rest of the line after the last answer phrase (greedy prefix: the last one wins).
_AFTER_LAST_ANSWER = rf"(?si)^.*(?:{_ANSWER_PHRASE})([^\n]*)"
# Everything up to the last final-answer marker (greedy), for the explanation that precedes it.
_BEFORE_LAST_MARKER = rf"(?s)^(.*)(?:{FINAL_MARKER.removeprefix('(?i)')})"
_OPTION_LINE = r"(?m)^\s*\(?[A-Fa-f][.)]\s[^\n]*"


def _compiled(pattern: str) -> str:
    """`pattern` with ASCII word boundaries on every text (`cot_v1` was defined so): its boundaries sit
    next to ASCII words, and polars runs Unicode ones about ten times slower on non-ASCII text."""
    return ascii_word_boundaries(pattern)


def _sentence_with(signal: str) -> str:
    body = r"[^.!?;\n。！？；]"
    return _compiled(rf"(?i){body}*(?:{signal.removeprefix('(?i)')}){body}*")


_RX = {
    "think": _compiled(THINK_BLOCK),
    "lets": _compiled(LETS_THINK),
    "calc": _compiled(CALCULATION),
    "step_line": _compiled(_STEP_LINE),
    "step_word": _compiled(_STEP_WORD),
    "headed": _HEADED_ITEM,
    "strong": _sentence_with(STRONG),
    "signal": _sentence_with(SIGNAL),
    "before_marker": _compiled(_BEFORE_LAST_MARKER.replace("(?s)", "(?si)")),
    "hash_tail": _HASH_TAIL,
    "boxed": _BOXED,
    "after_answer": _compiled(_AFTER_LAST_ANSWER),
    "marker_hint": r"(?i)answer|####|boxed|答案",
    # Every calculation has an operator next to an operand: rows without one skip the costly pattern.
    "calc_hint": _compiled(
        r"(?i)<<|[\d\w)}]\s*(?:[-+*/×÷^·]|\\times|\\div|\\cdot|\bx\b|times|plus|minus|divided|multiplied|乘|除|加|减)"
    ),
}


def _protect_decimals(text: pl.Expr) -> pl.Expr:
    """Decimal points become `_` so that sentence splitting does not stop inside a number."""
    return text.str.replace_all(r"(\d)\.(\d)", "${1}_${2}")


def _explicit_steps(text: pl.Expr) -> pl.Expr:
    return pl.max_horizontal(text.str.count_matches(_RX["step_line"]), text.str.count_matches(_RX["step_word"]))


def count_steps(texts: pl.Expr | pl.Series | Sequence[str | None]) -> pl.Expr | pl.Series:
    """Reasoning steps per text: max(explicit steps, reasoning sentences) (module docstring). Stable API.

    Takes an expression (returns an `Int32` expression) or a Series / list of strings (returns a Series
    named `cot_steps`); null texts count 0.
    """
    if isinstance(texts, pl.Expr):
        text = texts.fill_null("")
        reasoning = _protect_decimals(text).str.count_matches(_RX["signal"])
        return pl.max_horizontal(_explicit_steps(text), reasoning).cast(pl.Int32)
    series = texts if isinstance(texts, pl.Series) else pl.Series("text", list(texts), pl.String)
    return pl.select(count_steps(pl.lit(series.cast(pl.String)))).to_series().alias("cot_steps")


def _final_answer(text: pl.Expr) -> pl.Expr:
    hash_tail = text.str.extract(_RX["hash_tail"], 0).str.replace(r"^####\s*", "")
    boxed = text.str.extract_all(_RX["boxed"]).list.last().str.replace(r"^\\boxed\{", "").str.replace(r"\}$", "")
    tail = text.str.extract(_RX["after_answer"], 1)
    tail = tail.str.strip_chars_start(" \t:：")
    tail = tail.str.extract(r"^\s*(.*?)(?:[.。!！](?:\s|$)|$)", 1)
    answer = pl.coalesce(hash_tail, boxed, tail).str.strip_chars().str.strip_chars_end(".。")
    return pl.when(answer.str.len_chars() > 0).then(answer.str.slice(0, 200)).otherwise(None)


def _explanation_words(text: pl.Expr) -> pl.Expr:
    """Words (CJK characters count half) between the last question mark (or the start) and the last
    final-answer marker, answer-option lines left out; null without a marker."""
    before = text.str.extract(_RX["before_marker"], 1)
    explanation = before.str.extract(r"([^?？]*)$", 1).str.replace_all(_OPTION_LINE, "")
    words = explanation.str.count_matches(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")
    return words + explanation.str.count_matches(r"[\u4e00-\u9fff]") // 2


# Every combination of styles as a list, keyed by its bit mask (bit i = STYLES[i]): joining this small
# table builds `cot_style` far faster than assembling lists row by row.
_STYLE_LISTS = pl.DataFrame(
    {
        "_mask": list(range(1 << len(STYLES))),
        "cot_style": [[s for i, s in enumerate(STYLES) if mask >> i & 1] for mask in range(1 << len(STYLES))],
    },
    schema={"_mask": pl.Int32, "cot_style": pl.List(pl.String)},
)


def _on_rows(work: pl.DataFrame, mask: pl.Series, exprs: dict[str, tuple[pl.Expr, object, pl.DataType]]) -> list:
    """Evaluate `exprs` only on the rows where `mask` is true; the other rows get each one's default."""
    rows = mask.arg_true()
    part = work.filter(mask).select(expr.alias(name) for name, (expr, _, _) in exprs.items())
    return [
        pl.Series(name, [default] * work.height, dtype).scatter(rows, part[name].cast(dtype))
        for name, (_, default, dtype) in exprs.items()
    ]


def tag_cot(df: pl.DataFrame, text: pl.Expr, min_steps: int = 2, min_calculations: int = 2) -> pl.DataFrame:
    """`df` with `cot`, `cot_style`, `cot_steps`, `final_answer` of `text` added (module docstring).

    Each count is computed once, and the costly ones only on the rows that can use them: calculations
    where the text has `=`, the step_list checks where there are `min_steps` explicit steps, the
    final-answer checks where a marker's literal word occurs (answer, ####, boxed, 答案).
    """
    t, tmp = "__cot_text", "__cot_"
    df = df.drop([c for c in COLUMNS if c in df.columns])  # tagging twice replaces the earlier tags
    work = df.select(text.fill_null("").cast(pl.String).alias(t))
    col = pl.col(t)
    protected = _protect_decimals(col)
    work = work.with_columns(
        _explicit_steps(col).alias(tmp + "explicit"),
        col.str.contains(_RX["think"]).alias(tmp + "think"),
        col.str.contains(_RX["lets"]).alias(tmp + "lets"),
        protected.str.count_matches(_RX["signal"]).alias(tmp + "signal"),
        col.str.contains(_RX["marker_hint"]).alias(tmp + "hint"),
        col.str.contains(_RX["calc_hint"]).alias(tmp + "calc_hint"),
    )
    explicit = pl.col(tmp + "explicit")
    calcs = _on_rows(work, work[tmp + "calc_hint"], {"calcs": (col.str.count_matches(_RX["calc"]), 0, pl.Int64)})
    steps = _on_rows(
        work,
        work[tmp + "explicit"] >= min_steps,
        {
            "strong": (protected.str.count_matches(_RX["strong"]), 0, pl.Int64),
            "headed": (col.str.count_matches(_RX["headed"]), 0, pl.Int64),
        },
    )
    final, words = _on_rows(
        work,
        work[tmp + "hint"],
        {
            "final_answer": (_final_answer(col), None, pl.String),
            "words": (_explanation_words(col).fill_null(0), 0, pl.Int64),
        },
    )
    work = work.with_columns(*calcs, *steps, words)
    styles = {
        "think_block": pl.col(tmp + "think"),
        "step_list": (explicit >= min_steps)
        & (pl.col("strong") >= pl.max_horizontal(2, (explicit + 1) // 2))
        & (pl.col("headed") * 2 < explicit),
        "lets_think": pl.col(tmp + "lets"),
        "equation_chain": pl.col("calcs") >= min_calculations,
        "explain_then_answer": pl.col("words") >= 4,
    }
    mask = pl.sum_horizontal(styles[name].cast(pl.Int32) * (1 << i) for i, name in enumerate(STYLES))
    tags = work.select(
        mask.alias("_mask"),
        pl.max_horizontal(explicit, pl.col(tmp + "signal")).cast(pl.Int32).alias("cot_steps"),
    ).join(_STYLE_LISTS, on="_mask", how="left", maintain_order="left")
    return df.with_columns((tags["cot_style"].list.len() > 0).alias("cot"), tags["cot_style"], tags["cot_steps"], final)
