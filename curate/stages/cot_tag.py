"""`cot_tag`: tag chain-of-thought answers with transparent, versioned rules (no model)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import polars as pl

from curate.params import below_minimum, param
from curate.reasoning.cot import cot_expressions
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
    """Tag chain-of-thought. Reads `text`/`messages`, `kind`; writes `cot`, `cot_style`, `cot_steps`,
    `final_answer`; drops no rows.

    `field = "response"` looks at the assistant turns of instruction records (`text` for pretrain
    records); `"all"` at the whole training text (user turns included). Rules of `version = "cot_v1"`
    (`curate/reasoning/cot.py`; the README's "cot_tag rules" has the same table):

    - calculation: a GSM8K annotation `<<48/2=24>>`, or `a op b [op c ...] = number` with numbers,
      single-letter variables or `\\frac{}{}` as operands and + - * / x × ÷ ^ · \\times \\div \\cdot,
      times, plus, minus, divided by, multiplied by, 乘/除/加/减 as operators.
    - reasoning sentence: a sentence (split at .!?; + space, newline, 。！？；) holding a calculation,
      arithmetic (`3 + 4`, `2 = 2`) or an inference connective (therefore, thus, hence, so ..., because,
      since, which/this/that means, it follows, we get/have/know/can, in total, altogether,
      consequently, as a result, implies; 因为 所以 因此 由于 故 则 那么 可得 可知 得到 于是 从而 即).
      *Strong* ones leave out because/since/we have/we can/因为/由于/那么/得到/即.
    - explicit step: a line starting with Step N, N., N), N、, (N), -, *, •, 第N步, or a sentence starting
      with First(ly)/Second(ly)/Third(ly)/Next/Then/After that/Finally/Lastly, 首先/其次/然后/接着/再次/
      最后/第N步.

    Styles (`cot_style`): `think_block` (a closed <think>, <thinking>, <thought(s)>, <reasoning>,
    <reflection>, <scratchpad>, <inner_thought(s)> or <|begin_of_thought|> block with content);
    `step_list` (at least `min_steps` explicit steps and at least max(2, ceil(steps / 2)) strong
    reasoning sentences: lists of tips or instructions carry none); `lets_think` ("Let's think step by
    step" and variants, 让我们一步一步地思考 ...); `equation_chain` (at least `min_calculations`
    calculations); `explain_then_answer` (a final-answer marker: ####, "the (final|correct) answer (...)
    is|would be|:", \\boxed{}, 答案是/答案为/答案： incl. 所以答案是, after at least one sentence of at least
    four words or eight CJK characters).

    `cot` is true when at least one style is found; length is never used. `cot_steps` = max(explicit
    steps, reasoning sentences) (`curate.reasoning.cot.count_steps`). `final_answer` is the text after
    the last marker up to the end of its sentence (####, then \\boxed{}, then the others), null without
    a marker.
    """

    name: ClassVar[str] = "cot_tag"
    reads: ClassVar[tuple[str, ...]] = ("text", "messages", "kind")
    writes: ClassVar[tuple[str, ...]] = ("cot", "cot_style", "cot_steps", "final_answer")

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
        return df.with_columns(cot_expressions(text, self.min_steps, self.min_calculations))
