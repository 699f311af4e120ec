"""A small real pipeline that runs every stage whose columns the report and `inspect` show, built once
per test module (fixtures in tests/fixtures/report/, licenses beside them)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import curate
from tests.conftest import REPO

FIXTURES = REPO / "tests" / "fixtures" / "report"


def rich_config(folder: Path, mixture: dict[str, Any] | None = None) -> dict[str, Any]:
    """Config dict over copies of the fixtures in `folder` (GSM8K, two T0 templates, DCLM web text)."""
    for name in ("gsm8k.jsonl", "t0.jsonl", "web.jsonl"):
        shutil.copyfile(FIXTURES / name, folder / name)
    return {
        "pipeline": {"name": "rich", "seed": 3, "output": "out"},
        "sources": [
            {
                "name": "gsm8k",
                "path": "gsm8k.jsonl",
                "format": "prompt_response",
                "fields": {"prompt": "question", "response": "answer"},
            },
            {
                "name": "t0",
                "path": "t0.jsonl",
                "format": "prompt_response",
                "fields": {"prompt": "prompt", "response": "completion"},
            },
            {"name": "web", "path": "web.jsonl"},
        ],
        "stages": [
            {"use": "normalize"},
            {"use": "language", "keep": ["en"], "min_score": 0.3},
            {"use": "minhash_dedup", "fields": "prompt", "template": True, "keep_per_cluster": 3},
            {"use": "cot_tag"},
            {"use": "reasoning_depth"},
            {"use": "fasttext_classifier"},
            {"use": "diversity"},
        ],
        "mixture": mixture
        or {
            "groups": {
                "reasoning": {"weight": 0.5, "where": "cot"},
                "other": {"weight": 0.5, "rest": True},
            },
            "max_epochs": {"gsm8k": 2},
            "validation": 0.1,
        },
        "output": {"formats": ["parquet", "jsonl"], "shard_max_records": 20},
    }


def build_rich(folder: Path, **mixture: Any) -> curate.build:
    """Build the rich pipeline into `folder/out`."""
    return curate.build(rich_config(folder, mixture or None), base_dir=folder, work_dir=folder / "work")
