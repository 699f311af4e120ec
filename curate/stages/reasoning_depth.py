"""`reasoning_depth`: a graded score of how much multi-step reasoning an answer carries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import polars as pl

from curate.params import param
from curate.reasoning.depth import FEATURES, add_features, load_model
from curate.stages.base import Context, MapStep, Stage


@dataclass
class ReasoningDepth(Stage, MapStep):
    """Score reasoning depth. Reads `kind`, `text`, `messages`, `n_tokens`; writes `reasoning_depth` and the
    `rd_*` features; drops no rows.

    The *answer* is the assistant messages of an instruction record (joined by newlines); for a pretrain
    record it is the whole `text`, and there is no prompt (prompt features 0, `rd_answer_prompt_ratio`
    null). Features, each a column (computed by `curate.reasoning.depth`, regexes over the answer with
    code lines removed, and tiktoken counts with the pipeline's tokenizer):

    - `rd_steps`: lines/sentences of the answer that carry an inference (a calculation, a logical
      connective, or two quantities);
    - `rd_connectives`: because/therefore/thus/hence/since/so and 因为/所以/因此/由于/因而/于是 per 100 answer
      tokens;
    - `rd_math`: equations, operations between numbers, GSM8K `<<calc>>` annotations, LaTeX maths;
    - `rd_code_explained`: 1 when the answer has code and at least two prose sentences;
    - `rd_answer_tokens`, `rd_answer_prompt_ratio` (with `n_tokens` present, as in a pipeline, answer
      tokens = `n_tokens` - prompt tokens: within one token of a separate count);
    - `rd_verify`: self-verification (let's check, verify, double-check, 检验, 验证, 验算);
    - `rd_subquestions`, `rd_constraints`, `rd_quantities`: question complexity from the prompt.

    `reasoning_depth_v1 = sigmoid(b + w_steps * sqrt(min(rd_steps, 20)) + sum(w_i * log1p(count_i)))`, 0 for
    an empty answer. Coefficients ship in `curate/reasoning/reasoning_depth_v1.json`: a logistic regression
    with weights >= 0, fitted by `benchmarks/fit_reasoning_depth.py` on the dev half of permissively
    licensed data only (GSM8K, FLAN CoT, SVAMP, HumanEval, LLaMA-Factory demo, Self-Instruct, T0/P3; never
    Alpaca, Code Alpaca or zero-shot CoT). v1 weighs steps (2.04), connectives as a count (1.43),
    sub-questions (0.78) and maths (0.27); the other features are reported but the fit gave them weight 0.
    Since weights are >= 0 and the counts only grow when text is appended, appending a step never lowers
    the score, and each step raises it by less than the one before (sqrt): graded, not a 0/1 probability.
    """

    name: ClassVar[str] = "reasoning_depth"
    reads: ClassVar[tuple[str, ...]] = ("kind", "text", "messages", "n_tokens")
    writes: ClassVar[tuple[str, ...]] = ("reasoning_depth", *FEATURES)
    drops_rows: ClassVar[bool] = False

    version: Literal["reasoning_depth_v1"] = param(
        "reasoning_depth_v1", "feature and coefficient set (old versions stay selectable, so old configs reproduce)"
    )

    def apply(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        model = load_model(self.version)
        out = add_features(df.drop([c for c in self.writes if c in df.columns]), ctx.tokenizer, ctx.token_threads)
        out = out.with_columns(model.score(out))
        return out.drop("_rd_connective_count", "_rd_empty")
