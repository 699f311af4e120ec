"""`cot_tag`: tag chain-of-thought answers with transparent, versioned rules (no model)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import polars as pl

from curate.params import below_minimum, param
from curate.reasoning.cot import COLUMNS, tag_cot
from curate.record import training_text
from curate.stages.base import Context, MapStep, Stage


def response_text() -> pl.Expr:
    """The assistant turns of an instruction record joined by newlines; `text` for pretrain records."""
    answers = (
        pl.col("messages")
        .list.eval(pl.element().filter(pl.element().struct.field("role") == "assistant").struct.field("content"))
        .list.join("\n")
    )
    return pl.when(pl.col("kind") == "pretrain").then(pl.col("text")).otherwise(answers)


@dataclass
class CotTag(Stage, MapStep):
    """Tag chain-of-thought answers. Reads `text`/`messages`, `kind`; writes `cot`, `cot_style`, `cot_steps`,
    `final_answer`; drops no rows.

    `field = "response"` looks at the assistant turns of instruction records (joined by newlines) and at
    `text` of pretrain records; `"all"` at the whole training text (user turns included). `version`
    selects the rule set; `cot_v1` is the only one so far, and it is part of the step fingerprint, so a
    config keeps its results when later versions are added. Rules of `cot_v1`
    (`curate/reasoning/cot.py`):

    - calculation: a GSM8K annotation `<<48/2=24>>`, or `a op b [op c ...] = number` (or is, equals, gives,
      makes, yields, 等于, 得 for `=`) with numbers,
      single-letter variables or `\\frac{}{}` as operands and + - * / x × ÷ ^ · \\times \\div \\cdot,
      times, plus, minus, divided by, multiplied by, 乘/除/加/减 as operators.
    - reasoning sentence: a sentence (split at .!?; newline 。！？；, not at decimal points) holding a
      calculation, arithmetic (`3+4`, `6 x 7`; not a bare fraction like `1/2 cup`) or a connective. Strong
      connectives: therefore, thus, hence, consequently, implies, it follows, as a result, which/this/that
      means, we get/know/find/can conclude, so the answer, in total, altogether, 所以 因此 可得 可知 从而
      于是 故而. Weak ones (counted in `cot_steps` only): because, since, we have, we can, so …,
      因为 由于 那么 得到 则.
    - explicit step: a line starting with Step N, N., N), N、, N:, (N), -, *, •, 第N步, or a sentence
      starting with First(ly)/Second(ly)/Third(ly)/Next/Then/After that/Finally/Lastly, or 首先/其次/然后/
      接着/再次/最后/第N步; the larger of the two counts.
    - headed item: a numbered/bulleted line opening with a heading of at most 40 characters and a colon
      ("1. Overhead costs: ..."): a parallel point, not a step.
    - final-answer marker: `#### X` closing the text, `\\boxed{X}`, "the (final|correct|right) answer (...)
      is|would be|should be|will be X", a line starting "(Final|Correct) Answer: X", "final answer: X",
      答案是/答案为/答案： at a sentence start or after 所以/因此/故/综上; something must follow it.

    Styles (`cot_style`): `think_block` (a closed <think>, <thinking>, <thought(s)>, <reasoning>,
    <reflection>, <scratchpad>, <inner_thought(s)> or <|begin_of_thought|> block with content);
    `step_list` (at least `min_steps` explicit steps, at least max(2, ceil(steps / 2)) strong reasoning
    sentences, fewer than half of the steps headed items); `lets_think` ("Let's think step by step" and
    variants: let's/let us think|reason|work|go|solve|break|walk|tackle ... step by step, step-by-step
    solution|reasoning|explanation|analysis, let's think this through, 让我们一步一步地思考, 一步一步地
    思考|推理|分析|计算, 让我们逐步, 我们一步步); `equation_chain` (at least `min_calculations`
    calculations); `explain_then_answer` (a final-answer marker after an explanation: at least four words,
    a CJK character counting half, between the last question mark before the last marker, or the start,
    and that marker; answer-option lines "A. ..." not counted).

    `cot` is true when at least one style is found; length is never used. `cot_steps` = max(explicit
    steps, reasoning sentences) (`curate.reasoning.cot.count_steps`). `final_answer` is the text after
    the last marker up to the end of its sentence (####, then \\boxed{}, then the others; at most 200
    characters), also when `cot` is false; null without a marker.
    """

    name: ClassVar[str] = "cot_tag"
    reads: ClassVar[tuple[str, ...]] = ("text", "messages", "kind")
    writes: ClassVar[tuple[str, ...]] = COLUMNS

    version: Literal["cot_v1"] = param("cot_v1", "rule set; old configs keep their version and results")
    field: Literal["response", "all"] = param(
        "response", "response: assistant turns (text for pretrain); all: the whole training text"
    )
    min_steps: int = param(2, "explicit steps a step_list needs (it also needs strong reasoning sentences)")
    min_calculations: int = param(2, "calculations an equation_chain needs (one calculation is not a chain)")

    def problems(self, where: str) -> list[str]:
        return below_minimum(where, self, min_steps=2, min_calculations=2)

    def apply(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        text = response_text() if self.field == "response" else training_text()
        return tag_cot(df, text, self.min_steps, self.min_calculations)
