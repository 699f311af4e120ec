"""Rendering instruction records for a trainer: chat templates and loss-mask spans.

`[output] render` names a template: `messages` keeps the conversation as a `messages` column (the
conversational format TRL, axolotl and LLaMA-Factory read); `chatml`, `llama3` and `alpaca` flatten it
into `text`; any other string is a custom template applied per message, with `{role}` and `{content}`
slots (`{{` and `}}` are literal braces). Pretraining records are never changed.

`render_frame` returns, for every record, the rendered text and the character spans that are training
targets: assistant content (and the template's end-of-turn marker after it) with `mask = "assistant"`,
the whole text with `mask = "all"`, and always the whole text of pretraining records. The tokenized
formats split the text at these spans, so a span boundary is always a token boundary.

For tokenized outputs, `messages` renders as the contents joined by newlines: exactly the text that
`n_tokens` counts (`record.training_text()`).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl

from curate.params import did_you_mean
from curate.record import ROLES

BUILTIN_RENDERS = ("messages", "chatml", "llama3", "alpaca")
SLOTS = ("role", "content")
SPAN = pl.Struct({"start": pl.Int64, "end": pl.Int64})

# Stanford Alpaca's prompt without input, verbatim from PROMPT_DICT["prompt_no_input"] in
# github.com/tatsu-lab/stanford_alpaca/blob/main/train.py (training example = prompt + output + EOS).
ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
)


@dataclass(frozen=True)
class Template:
    """How one conversation becomes text: `start`, then per message `separator[previous role]` +
    `before[role]` + content + `after[role]`. `target_after`: the assistant's `after` (its end-of-turn
    marker) is trained on, like its content. `default_system`: written as the system message when a
    record has none."""

    before: Mapping[str, str] = field(default_factory=dict)
    after: Mapping[str, str] = field(default_factory=dict)
    separator: Mapping[str, str] = field(default_factory=dict)
    start: str = ""
    strip: bool = False
    target_after: bool = False
    default_system: str | None = None


TEMPLATES: dict[str, Template] = {
    # Contents joined by "\n": what n_tokens counts (record.training_text); used by tokenized formats.
    "messages": Template(separator=dict.fromkeys(ROLES, "\n")),
    # ChatML: github.com/openai/openai-python/blob/release-v0.28.0/chatml.md ("<|im_start|>role\n
    # content<|im_end|>" and "\n" after each message), as in Qwen's chat_template
    # ('<|im_start|>' + role + '\n' + content + '<|im_end|>' + '\n'); no default system message.
    "chatml": Template(
        before={r: f"<|im_start|>{r}\n" for r in ROLES},
        after=dict.fromkeys(ROLES, "<|im_end|>\n"),
        target_after=True,
    ),
    # Llama 3: meta-llama/Meta-Llama-3-8B-Instruct tokenizer_config.json chat_template and
    # llama.meta.com/docs/model-cards-and-prompt-formats/meta-llama-3: bos_token once, then per message
    # '<|start_header_id|>' + role + '<|end_header_id|>\n\n' + content | trim + '<|eot_id|>'.
    "llama3": Template(
        before={r: f"<|start_header_id|>{r}<|end_header_id|>\n\n" for r in ROLES},
        after=dict.fromkeys(ROLES, "<|eot_id|>"),
        start="<|begin_of_text|>",
        strip=True,
        target_after=True,
    ),
    # Alpaca (stanford_alpaca train.py PROMPT_DICT): preamble + "\n\n### Instruction:\n{instruction}\n\n
    # ### Response:" and the output appended directly. The canonical record already joined an `input`
    # to the instruction ("\n\n"), so the "### Input:" variant is not reconstructed. A system message
    # replaces the preamble; further turns repeat the Instruction/Response blocks, "\n\n" apart.
    "alpaca": Template(
        before={"system": "", "user": "### Instruction:\n", "assistant": "### Response:"},
        after={"system": "\n\n", "user": "\n\n", "assistant": ""},
        separator={"assistant": "\n\n"},
        default_system=ALPACA_PREAMBLE,
    ),
}


def custom_template_problems(template: str, where: str) -> list[str]:
    """Problems of a custom template string: bad braces, unknown slots, a missing slot, `{content}` twice."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        return [f"{where}: {template!r} is not a valid template ({exc}); write a literal brace as {{{{ or }}}}"]
    out, seen = [], []
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in SLOTS:
            out.append(
                f"{where}: unknown slot {{{name}}} in {template!r}; the slots are {{role}} and {{content}} "
                "(write a literal brace as {{ or }})"
            )
        elif spec or conversion:
            out.append(f"{where}: slot {{{name}}} takes no format spec or conversion in {template!r}")
        seen.append(name)
    for slot in SLOTS:
        if slot not in seen:
            out.append(f"{where}: a custom template needs a {{{slot}}} slot, got {template!r}")
    if seen.count("content") > 1:
        out.append(f"{where}: {{content}} must appear once (the loss mask marks it), got {template!r}")
    return out


def render_problems(render: str, where: str = "output.render") -> list[str]:
    """Problems of an `[output] render` value: a built-in name or a valid custom template."""
    if render in BUILTIN_RENDERS:
        return []
    if "{" not in render:
        return [
            f"{where}: unknown template {render!r}{did_you_mean(render, BUILTIN_RENDERS)}; use one of "
            f"{', '.join(BUILTIN_RENDERS)} or a custom template with {{role}} and {{content}} slots"
        ]
    return custom_template_problems(render, where)


def get_template(render: str) -> Template:
    """The template for a validated `render` value (a built-in name or a custom template string)."""
    if render in TEMPLATES:
        return TEMPLATES[render]
    before: list[str | None] = []  # None stands for the {role} slot
    after: list[str | None] = []
    target = before
    for literal, name, _, _ in string.Formatter().parse(render):
        target.append(literal)
        if name == "content":
            target = after
        elif name == "role":
            target.append(None)

    def fill(parts: list[str | None], role: str) -> str:
        return "".join(role if p is None else p for p in parts)

    return Template(before={r: fill(before, r) for r in ROLES}, after={r: fill(after, r) for r in ROLES})


def _lookup(column: str, table: Mapping[str, str]) -> pl.Expr:
    return pl.col(column).replace_strict(dict(table), default="", return_dtype=pl.String)


def render_frame(records: pl.DataFrame, render: str, mask: str = "assistant") -> pl.DataFrame:
    """`text` (rendered) and `spans` (List of {start, end}: training-target character ranges) for each
    record, in order. Reads `kind`, `text`, `messages`; pretraining text is returned unchanged."""
    template = get_template(render)
    df = records.select("kind", "text", "messages").with_row_index("_i")
    chats = df.filter(pl.col("kind") == "instruction").select("_i", "messages")
    msgs = (
        chats.explode("messages")
        .drop_nulls("messages")
        .unnest("messages")
        .with_columns(pl.col("content").fill_null(""))
    )
    if template.strip:
        msgs = msgs.with_columns(pl.col("content").str.strip_chars())
    first_role = msgs.group_by("_i", maintain_order=True).agg(pl.col("role").first().alias("_first"))
    start = pl.lit(template.start)
    if template.default_system is not None:
        default = pl.lit(template.default_system + template.after.get("system", ""))
        start = start + pl.when(pl.col("_first") != "system").then(default).otherwise(pl.lit(""))
    starts = first_role.select("_i", start.alias("_start"))
    is_target = pl.col("role") == "assistant"
    pieces = (
        msgs.join(starts, on="_i", how="left", maintain_order="left")
        .with_columns(
            _lookup("role", template.separator).shift(1).over("_i").fill_null("").alias("_sep"),
            _lookup("role", template.before).alias("_before"),
            _lookup("role", template.after).alias("_after"),
        )
        .with_columns(pl.concat_str("_sep", "_before", "content", "_after").alias("_piece"))
        .with_columns(
            _len=pl.col("_piece").str.len_chars().cast(pl.Int64),
            _head=(pl.col("_sep").str.len_chars() + pl.col("_before").str.len_chars()).cast(pl.Int64),
            _body=pl.col("content").str.len_chars().cast(pl.Int64)
            + (pl.col("_after").str.len_chars().cast(pl.Int64) if template.target_after else pl.lit(0, pl.Int64)),
        )
        .with_columns(
            _offset=pl.col("_start").str.len_chars().cast(pl.Int64)
            + pl.col("_len").cum_sum().over("_i")
            - pl.col("_len")
        )
        .with_columns(_s=pl.col("_offset") + pl.col("_head"))
        .with_columns(_e=pl.col("_s") + pl.col("_body"))
    )
    rendered = pieces.group_by("_i", maintain_order=True).agg(
        (pl.col("_start").first() + pl.col("_piece").str.join("")).alias("_text"),
        pl.struct(start="_s", end="_e").filter(is_target).alias("_spans"),
    )
    out = df.join(rendered, on="_i", how="left", maintain_order="left")
    whole = pl.concat_list(pl.struct(start=pl.lit(0, pl.Int64), end=pl.col("text").str.len_chars().cast(pl.Int64)))
    out = out.with_columns(
        text=pl.when(pl.col("kind") == "instruction").then(pl.col("_text").fill_null("")).otherwise(pl.col("text"))
    )
    chat_spans = pl.col("_spans").fill_null(pl.lit([], pl.List(SPAN)))
    spans = whole if mask == "all" else pl.when(pl.col("kind") == "instruction").then(chat_spans).otherwise(whole)
    out = out.with_columns(spans=spans.cast(pl.List(SPAN)))
    return out.select("text", "spans")


def apply_render(records: pl.DataFrame, render: str, frame: pl.DataFrame | None = None) -> pl.DataFrame:
    """Records as written to record shards: with a template, instruction records get the rendered
    conversation in `text` and `messages` becomes null; `render = "messages"` changes nothing.
    `n_tokens` still counts the content (the mixture's unit); tokenized formats count rendered tokens.
    `frame`: `render_frame(records, render, mask)` when it is at hand (its text does not depend on the mask)."""
    if render == "messages" or records.is_empty():
        return records
    rendered = (frame if frame is not None else render_frame(records, render, "all"))["text"]
    instruction = pl.col("kind") == "instruction"
    return records.with_columns(
        text=rendered,
        messages=pl.when(instruction).then(None).otherwise(pl.col("messages")),
    )
