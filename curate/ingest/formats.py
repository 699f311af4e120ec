"""Record formats: turning one input object into the canonical (kind, text, messages, meta).

Formats (auto-detected from the first record's keys, or set with `format = ...`):

| format | keys | becomes |
|---|---|---|
| `text` | `text` (or `text_field`) | pretrain document |
| `alpaca` | `instruction`, `input` (optional), `output`, `system` (optional), `history` (optional) | user = instruction + blank line + input; assistant = output |
| `sharegpt` | `conversations`: list of `{from, value}`; optional `system` | roles system/human/user/gpt/assistant/model/chatgpt/bard |
| `messages` | `messages`: list of `{role, content}` (OpenAI) | as is |
| `dolly` | `instruction`, `context` (optional), `response` | user = instruction + blank line + context |
| `prompt_response` | the keys named by `fields = {prompt = ..., response = ..., system = ...}` | one user turn, one assistant turn |

Every key a format does not consume is kept in `meta`; so are Alpaca's `input` and Dolly's `context`,
which are also part of the user turn, so that stages can tell the instruction from its input
(`minhash_dedup` with `include_input = false`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from curate.errors import RecordError

Format = Literal["auto", "text", "alpaca", "sharegpt", "messages", "dolly", "prompt_response"]

SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
}
Canonical = tuple[str, str | None, list[dict[str, str]] | None, dict[str, Any]]


def detect_format(obj: Mapping[str, Any], text_field: str = "text") -> str | None:
    """The record format an object looks like, or None when no format fits its keys."""
    keys = set(obj)
    if "messages" in keys and isinstance(obj["messages"], list):
        return "messages"
    if "conversations" in keys and isinstance(obj["conversations"], list):
        return "sharegpt"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    if {"instruction", "response"} <= keys:
        return "dolly"
    if text_field in keys:
        return "text"
    return None


def _string(obj: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    if key not in obj or obj[key] is None:
        if required:
            raise RecordError(f"missing_field: required field {key!r} is missing")
        return ""
    value = obj[key]
    if not isinstance(value, str):
        raise RecordError(f"wrong_type: field {key!r} must be a string, got {type(value).__name__}")
    return value


def _join(first: str, second: str) -> str:
    return f"{first}\n\n{second}" if second.strip() else first


def _meta(obj: Mapping[str, Any], used: set[str]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in used}


def _history(obj: Mapping[str, Any]) -> list[dict[str, str]]:
    history = obj.get("history") or []
    if not isinstance(history, list):
        raise RecordError("wrong_type: field 'history' must be a list of [prompt, response] pairs")
    turns = []
    for i, pair in enumerate(history):
        ok = isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
        if not ok:
            raise RecordError(f"wrong_type: history[{i}] must be a [prompt, response] pair of strings")
        turns += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return turns


def _system(obj: Mapping[str, Any], key: str = "system") -> list[dict[str, str]]:
    system = _string(obj, key, required=False)
    return [{"role": "system", "content": system}] if system.strip() else []


def convert(obj: Mapping[str, Any], fmt: str, options: Mapping[str, Any]) -> Canonical:
    """Convert one object to (kind, text, messages, meta); raise RecordError for an unusable record."""
    if fmt == "text":
        field = options.get("text_field", "text")
        return "pretrain", _string(obj, field), None, _meta(obj, {field})
    if fmt == "alpaca":
        user = _join(_string(obj, "instruction"), _string(obj, "input", required=False))
        messages = [
            *_system(obj),
            *_history(obj),
            {"role": "user", "content": user},
            {"role": "assistant", "content": _string(obj, "output")},
        ]
        return (
            "instruction",
            None,
            messages,
            _meta(obj, {"instruction", "output", "system", "history"}),
        )
    if fmt == "dolly":
        user = _join(_string(obj, "instruction"), _string(obj, "context", required=False))
        messages = [
            {"role": "user", "content": user},
            {"role": "assistant", "content": _string(obj, "response")},
        ]
        return "instruction", None, messages, _meta(obj, {"instruction", "response"})
    if fmt == "prompt_response":
        fields = options.get("fields") or {}
        prompt_key, response_key = fields.get("prompt", "prompt"), fields.get("response", "response")
        system_key = fields.get("system", "system")
        messages = [
            *_system(obj, system_key),
            {"role": "user", "content": _string(obj, prompt_key)},
            {"role": "assistant", "content": _string(obj, response_key)},
        ]
        return "instruction", None, messages, _meta(obj, {prompt_key, response_key, system_key})
    if fmt == "sharegpt":
        return "instruction", None, _sharegpt(obj), _meta(obj, {"conversations", "system"})
    if fmt == "messages":
        return (
            "instruction",
            None,
            _messages(obj.get("messages", None)),
            _meta(obj, {"messages"}),
        )
    raise ValueError(f"unknown format {fmt!r}")


def _sharegpt(obj: Mapping[str, Any]) -> list[dict[str, str]]:
    turns = obj.get("conversations")
    if not isinstance(turns, list):
        raise RecordError("missing_field: required field 'conversations' (a list of {from, value}) is missing")
    messages = _system(obj)
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise RecordError(f"wrong_type: conversations[{i}] must be an object with a string 'value'")
        speaker = str(turn.get("from", "")).lower()
        if speaker not in SHAREGPT_ROLES:
            raise RecordError(
                f"unsupported_role: conversations[{i}].from is {turn.get('from')!r}; "
                f"curate reads {sorted(SHAREGPT_ROLES)}"
            )
        messages.append({"role": SHAREGPT_ROLES[speaker], "content": turn["value"]})
    return messages


def _messages(turns: Any) -> list[dict[str, str]]:
    if not isinstance(turns, list):
        raise RecordError("missing_field: required field 'messages' (a list of {role, content}) is missing")
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("content"), str):
            raise RecordError(f"wrong_type: messages[{i}] must be an object with a string 'content'")
        role = turn.get("role")
        if role not in ("system", "user", "assistant"):
            raise RecordError(f"unsupported_role: messages[{i}].role is {role!r}; curate reads system/user/assistant")
        messages.append({"role": role, "content": turn["content"]})
    return messages


def check_conversation(messages: list[dict[str, str]]) -> None:
    """A usable conversation has at least one user turn and ends with a non-empty assistant turn."""
    if not any(m["role"] == "user" for m in messages):
        raise RecordError("no_user_turn: the conversation has no user message")
    if messages[-1]["role"] != "assistant" or not messages[-1]["content"].strip():
        raise RecordError("no_assistant_turn: the conversation does not end with a non-empty assistant message")
