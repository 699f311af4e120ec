"""Shared pieces of the mixture tests: a small real-data pipeline (GSM8K, SVAMP, hand-written documents)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.conftest import REPO, write_jsonl

FIXTURES = REPO / "tests" / "fixtures" / "mixture"


def real_pipeline(folder: Path, **mixture: Any) -> dict[str, Any]:
    """GSM8K (worked solutions), SVAMP (equations only) and 30 short documents, with `cot_tag`."""
    for name in ("gsm8k.jsonl", "svamp.jsonl"):
        shutil.copyfile(FIXTURES / name, folder / name)
    write_jsonl(
        folder / "docs.jsonl",
        [
            {"text": f"Document {i} describes place number {i} and its {i % 7} rivers in some detail."}
            for i in range(30)
        ],
    )
    return {
        "pipeline": {"name": "mix", "seed": 5, "output": "out"},
        "sources": [
            {
                "name": "gsm8k",
                "path": "gsm8k.jsonl",
                "format": "prompt_response",
                "fields": {"prompt": "question", "response": "answer"},
            },
            {
                "name": "svamp",
                "path": "svamp.jsonl",
                "format": "prompt_response",
                "fields": {"prompt": "Question", "response": "Equation"},
            },
            {"name": "docs", "path": "docs.jsonl"},
        ],
        "stages": [{"use": "cot_tag"}],
        "mixture": mixture,
    }
