"""Shared helpers: tiny pipelines written into tmp_path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def small_pipeline(tmp_path: Path) -> dict[str, Any]:
    """A config dict over two small sources (instructions with a duplicate, documents)."""
    write_jsonl(
        tmp_path / "inst.jsonl",
        [
            {"instruction": "Add 2 and 3.", "input": "", "output": "2 + 3 = 5. The answer is 5."},
            {"instruction": "Name a primary colour.", "input": "", "output": "Red is a primary colour."},
            {"instruction": "Add 2 and 3.", "input": "", "output": "2 + 3 = 5. The answer is 5."},
            {"instruction": "Translate 'cat' to French.", "input": "", "output": "Le chat."},
        ],
    )
    write_jsonl(
        tmp_path / "docs.jsonl",
        [{"text": f"Document number {i} talks about topic {i % 3} in plain English words."} for i in range(6)],
    )
    return {
        "pipeline": {"name": "small", "seed": 1, "output": "out"},
        "sources": [
            {"name": "inst", "path": "inst.jsonl"},
            {"name": "docs", "path": "docs.jsonl"},
        ],
        "stages": [{"use": "normalize"}, {"use": "exact_dedup"}],
    }


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/*.json from this run")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))
