"""Golden runs: every pipelines/*.toml builds, and its result matches tests/golden/<name>.json.

The golden file holds what a reviewer should look at when it changes: per-source counts and shares,
totals, drop reasons, a digest of the decompressed JSONL records (independent of compressor
versions), and the checksums of tokenized shards (megatron, tokens, mds). Regenerate with
`pytest tests/test_golden.py --update-golden` and review the diff.
"""

import hashlib
import json

import pytest
import zstandard

import curate
from tests.conftest import REPO

PIPELINES = sorted((REPO / "pipelines").glob("*.toml"))


def summary(result) -> dict:
    m = result.manifest
    digest = hashlib.sha256()
    for shard in m["shards"]:
        if shard["format"] == "jsonl.zst":
            raw = (result.output / shard["path"]).read_bytes()
            digest.update(zstandard.ZstdDecompressor().stream_reader(raw).read())
    token_files = {  # tokenized formats are plain bytes we write ourselves: compared exactly
        row["path"]: {"sha256": row["sha256"], "tokens": row["tokens"], "files": row.get("files")}
        for row in m["shards"]
        if row["format"] in ("megatron", "tokens", "mds")
    }
    return {
        "token_files": token_files,
        "sources": m["sources"],
        "totals": m["totals"],
        "mixture": m["mixture"],
        "records_sha256": digest.hexdigest(),
        "ledger_status": {
            f"{r['source']}:{r['status']}": r["len"]
            for r in result.ledger.group_by("source", "status").len().sort("source", "status").iter_rows(named=True)
        },
    }


@pytest.mark.parametrize("path", PIPELINES, ids=[p.stem for p in PIPELINES])
def test_pipeline_matches_golden(path, tmp_path, update_golden):
    result = curate.build(path, output=tmp_path / "out", work_dir=tmp_path / "work")
    got = summary(result)
    golden = REPO / "tests" / "golden" / f"{path.stem}.json"
    if update_golden or not golden.exists():
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
        if not update_golden:
            pytest.fail(f"wrote missing golden file {golden}; review and commit it")
    assert got == json.loads(golden.read_text())
