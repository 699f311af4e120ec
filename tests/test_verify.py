"""`curate verify OUT`: a clean build verifies; every kind of tampering is reported, with its file."""

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import zstandard
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import curate
from curate.cli import main
from curate.verify import NotAnOutput, verify
from curate.verify_read import read_counts
from tests.conftest import write_jsonl


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weighted mixture over two sources, in three formats, several shards per format."""
    base = tmp_path_factory.mktemp("verify")
    write_jsonl(
        base / "inst.jsonl",
        [
            {"instruction": f"Add {i} and {i + 1}.", "input": "", "output": f"{i} + {i + 1} = {2 * i + 1}."}
            for i in range(40)
        ]
        + [{"instruction": "Add 1 and 2.", "input": "", "output": "1 + 2 = 3."}],  # an exact duplicate of line 2
    )
    write_jsonl(
        base / "docs.jsonl",
        [{"text": f"Document {i} is about topic {i % 5}. " * (1 + i % 4)} for i in range(30)] + [{"text": 17}],
    )
    config = {
        "pipeline": {"name": "verify", "seed": 3, "output": "out"},
        "sources": [{"name": "inst", "path": "inst.jsonl"}, {"name": "docs", "path": "docs.jsonl"}],
        "stages": [{"use": "normalize"}, {"use": "exact_dedup"}],
        "mixture": {"weights": {"inst": 0.6, "docs": 0.4}, "max_epochs": {"inst": 2, "docs": 2}},
        "output": {"formats": ["jsonl", "jsonl.zst", "parquet"], "shard_max_records": 20},
    }
    curate.build(config, base_dir=base, work_dir=base / "work")
    return base / "out"


@pytest.fixture(scope="module")
def grouped(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Groups (one by condition, one the rest), a validation split, and every output format."""
    base = built.parent
    config = {
        "pipeline": {"name": "grouped", "seed": 5, "output": "grouped"},
        "sources": [{"name": "inst", "path": "inst.jsonl"}, {"name": "docs", "path": "docs.jsonl"}],
        "stages": [{"use": "normalize"}, {"use": "exact_dedup"}],
        "mixture": {
            "total_tokens": 1000,
            "validation": 0.1,
            "max_epochs": {"inst": 2, "docs": 2},
            "groups": {
                "chat": {"where": "kind == 'instruction'", "weight": 0.7},
                "replay": {"rest": True, "weight": 0.3},
            },
        },
        "output": {
            "formats": ["jsonl.zst", "parquet", "hf", "megatron", "tokens", "mds"],
            "render": "chatml",
            "shard_max_records": 25,
        },
    }
    curate.build(config, base_dir=base, work_dir=tmp_path_factory.mktemp("grouped-work"))
    return base / "grouped"


@pytest.fixture
def out(built: Path, tmp_path: Path) -> Path:
    """A private copy of the built output to tamper with."""
    return Path(shutil.copytree(built, tmp_path / "out"))


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def shard(out: Path, fmt: str, index: int = 1) -> Path:
    rows = [r for r in manifest(out)["shards"] if r["format"] == fmt]
    return out / rows[index]["path"]


def test_a_clean_build_verifies(built):
    m = manifest(built)
    assert len(m["shards"]) >= 9 and m["totals"]["records_quarantined"] == 1  # the test covers what it should
    assert m["sources"]["inst"]["records_dropped"] == 1
    assert any(s["epochs"] > 1 for s in m["sources"].values())  # repeats
    result = verify(built)
    assert result.differences == []
    assert result.ok and result.summary().startswith("OK: ")
    assert result.files == len(m["shards"])
    assert set(result.counts) == {"jsonl", "jsonl.zst", "parquet"}
    for fmt in result.counts:
        whole = result.total(fmt)
        assert whole.records == m["totals"]["records_out"] and whole.tokens == m["totals"]["tokens_out"]
    assert result.ledger_records == m["totals"]["records_in"]


def test_groups_validation_and_every_format_verify(grouped):
    m = manifest(grouped)
    assert {r["format"] for r in m["shards"]} == {"jsonl.zst", "parquet", "hf", "megatron", "tokens", "mds"}
    assert {r["split"] for r in m["shards"]} == {"train", "validation"} and len(m["mixture"]["groups"]) == 2
    result = verify(grouped)
    assert result.differences == []
    for fmt in ("jsonl.zst", "parquet", "hf", "megatron", "tokens", "mds"):
        assert result.counts[fmt]["validation"].records == m["splits"]["validation"]["records"] > 0
    cells = result.counts["parquet"]["train"].by_cell
    assert cells is not None and {g for g, _ in cells} == {"chat", "replay"}
    assert set(cells) == {("chat", "inst"), ("replay", "docs")}


def test_group_tokens_are_recomputed_from_the_records(grouped, tmp_path):
    out = Path(shutil.copytree(grouped, tmp_path / "out"))
    m = manifest(out)
    for line in m["mixture"]["groups"]:
        line["realized_tokens"] += 3
    cell = m["mixture"]["cells"][0]
    cell["target_tokens"] += cell["max_record_tokens"] + 10
    (out / "manifest.json").write_text(json.dumps(m))
    diffs = verify(out).differences
    for line in m["mixture"]["groups"]:
        tokens = line["realized_tokens"]
        assert (
            f"parquet shards: mixture group {line['group']}: {tokens - 3:,} tokens, manifest says {tokens:,}" in diffs
        )
    where = f"parquet shards: mixture group {cell['group']}, source {cell['source']}: "
    assert any(d.startswith(where) and "exactness rule" in d for d in diffs)


def test_a_group_condition_the_shards_cannot_evaluate_is_reported(grouped, tmp_path):
    out = Path(shutil.copytree(grouped, tmp_path / "out"))
    m = manifest(out)
    chat = next(g for g in m["mixture"]["groups"] if g["group"] == "chat")
    chat["definition"]["where"] = "quality > 0.5"
    (out / "manifest.json").write_text(json.dumps(m))
    diffs = verify(out).differences
    parquet = [r["path"] for r in m["shards"] if r["format"] == "parquet"]
    for path in parquet:
        assert any(d.startswith(f"{path}: a mixture group's condition cannot be evaluated") for d in diffs)
    assert any("quality" in d for d in diffs)


def test_tokenized_shards_and_their_companion_files_are_checked(grouped, tmp_path):
    out = Path(shutil.copytree(grouped, tmp_path / "out"))
    rows = {r["format"]: r for r in manifest(out)["shards"] if r["split"] == "train"}
    index = next(iter(rows["megatron"]["files"]))
    (out / index).write_bytes((out / index).read_bytes() + b"\0")
    tokens = out / rows["tokens"]["path"]
    tokens.write_bytes(tokens.read_bytes()[:-8])
    hf_file = next(p for p in (out / rows["hf"]["path"]).rglob("*.arrow"))
    hf_file.write_bytes(hf_file.read_bytes()[:-100])
    (out / rows["mds"]["path"]).unlink()
    diffs = verify(out).differences
    assert f"{index}: sha256 differs (file edited?)" in diffs
    assert f"{rows['tokens']['path']}: sha256 differs (file edited?)" in diffs
    assert any(d.startswith(f"{rows['tokens']['path']}: ") and ("cannot be read" in d or "tokens" in d) for d in diffs)
    assert f"{rows['hf']['path']}: sha256 differs (file edited?)" in diffs
    assert any(d.startswith(f"{rows['mds']['path']}: missing (deleted?)") for d in diffs)


@pytest.mark.parametrize("fmt", ["megatron", "tokens", "mds"])
@pytest.mark.parametrize("keep", [3, 0.5])
def test_truncated_tokenized_shards_cannot_be_read(grouped, tmp_path, fmt, keep):
    out = Path(shutil.copytree(grouped, tmp_path / "out"))
    row = next(r for r in manifest(out)["shards"] if r["format"] == fmt)
    path = out / row["path"]
    data = path.read_bytes()
    path.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])
    diffs = verify(out).differences
    assert f"{row['path']}: sha256 differs (file edited?)" in diffs
    assert any(d.startswith(f"{row['path']}: cannot be read as {fmt}: ") for d in diffs), diffs


def test_truncated_jsonl_zst_is_caught(out):
    path = shard(out, "jsonl.zst")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    diffs = verify(out).differences
    rel = path.relative_to(out).as_posix()
    assert f"{rel}: sha256 differs (file edited?)" in diffs
    assert any(d.startswith(f"{rel}: cannot be read as jsonl.zst") and "truncated" in d for d in diffs)
    assert any(d.startswith("jsonl.zst shards: ") and "records in all" in d for d in diffs)


def test_recompressed_jsonl_zst_with_fewer_records_is_counted(out):
    """A shard cut at a record boundary and compressed again: complete stream, fewer records."""
    path = shard(out, "jsonl.zst")
    lines = zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes()).splitlines(keepends=True)
    path.write_bytes(zstandard.ZstdCompressor().compress(b"".join(lines[:-3])))
    rel = path.relative_to(out).as_posix()
    assert f"{rel}: {len(lines) - 3:,} records, manifest says {len(lines):,} (truncated?)" in verify(out).differences


def test_edited_byte_in_parquet_is_caught(out):
    path = shard(out, "parquet")
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    diffs = verify(out).differences
    assert f"{path.relative_to(out).as_posix()}: sha256 differs (file edited?)" in diffs


def test_deleted_shard_is_caught(out):
    path = shard(out, "parquet", 0)
    path.unlink()
    result = verify(out)
    rel = path.relative_to(out).as_posix()
    assert any(d.startswith(f"{rel}: missing (deleted?)") for d in result.differences)
    assert any(d.startswith("parquet shards: ") and "records in all" in d for d in result.differences)
    note = "parquet shards: per-source, mixture and ledger figures not compared (1 file(s) missing or unreadable)"
    assert note in result.differences
    assert not any("parquet shards hold" in d or d.startswith("parquet shards: source") for d in result.differences)
    assert not any(d.startswith("jsonl shards: ") for d in result.differences)  # other formats still match
    assert not result.ok and result.summary().startswith("FAILED: ")


def test_appended_record_in_jsonl_is_caught(out):
    path = shard(out, "jsonl")
    first = path.read_bytes().splitlines(keepends=True)[0]
    with open(path, "ab") as fh:
        fh.write(first)
    diffs = verify(out).differences
    rel = path.relative_to(out).as_posix()
    n = next(r for r in manifest(out)["shards"] if r["path"] == rel)["records"]
    assert f"{rel}: sha256 differs (file edited?)" in diffs
    assert f"{rel}: {n + 1:,} records, manifest says {n:,} (records added?)" in diffs
    assert any(d.startswith(f"{rel}: ") and "tokens, manifest says" in d for d in diffs)
    source = json.loads(first)["source"]
    assert any(d.startswith(f"jsonl shards: source {source}: ") and "records, manifest says" in d for d in diffs)


def test_jsonl_with_a_cut_last_line_is_caught(out):
    path = shard(out, "jsonl")
    path.write_bytes(path.read_bytes()[:-10])
    diffs = verify(out).differences
    rel = path.relative_to(out).as_posix()
    assert any(d.startswith(f"{rel}: cannot be read as jsonl") and "no final newline" in d for d in diffs)


def test_changed_manifest_counts_are_caught(out):
    m = manifest(out)
    m["shards"][0]["records"] += 1
    m["shards"][1]["tokens"] -= 5
    m["sources"]["inst"]["tokens_out"] += 7
    m["sources"]["docs"]["records_dropped"] += 1
    m["totals"]["records_in"] += 1
    (out / "manifest.json").write_text(json.dumps(m))
    diffs = verify(out).differences
    first, second = m["shards"][0], m["shards"][1]
    assert f"{first['path']}: {first['records'] - 1} records, manifest says {first['records']:,} (truncated?)" in diffs
    assert f"{second['path']}: {second['tokens'] + 5:,} tokens, manifest says {second['tokens']:,}" in diffs
    tokens = m["sources"]["inst"]["tokens_out"]
    assert f"parquet shards: source inst: {tokens - 7:,} tokens, manifest says {tokens:,}" in diffs
    dropped = m["sources"]["docs"]["records_dropped"]
    assert f"ledger.parquet: source docs: {dropped - 1:,} dropped records, manifest says {dropped:,}" in diffs
    records_in = m["totals"]["records_in"]
    assert f"ledger.parquet: {records_in - 1:,} records, manifest says {records_in:,}" in diffs


def test_changed_realized_share_is_caught(out):
    m = manifest(out)
    m["sources"]["docs"]["realized_share"] += 0.01
    (out / "manifest.json").write_text(json.dumps(m))
    diffs = verify(out).differences
    assert sum("source docs: realized share" in d for d in diffs) == 3  # once per format


def test_off_target_mixture_is_caught(out):
    m = manifest(out)
    bound = m["mixture"]["exactness"]["share_error_bound"]
    line = next(s for s in m["mixture"]["sources"] if s["source"] == "inst")
    line["target_share"] += bound + 0.01
    (out / "manifest.json").write_text(json.dumps(m))
    diffs = verify(out).differences
    assert len(diffs) == 3  # once per record format
    assert all(d.endswith(f"by more than the exactness bound {bound:.4%}") for d in diffs)
    assert all("mixture source inst: realized share" in d for d in diffs)


def test_a_record_sampled_more_than_max_epochs_is_caught(out):
    ledger = pl.read_parquet(out / "ledger.parquet")
    row = int(((ledger["source"] == "docs") & (ledger["times_sampled"] == 1)).arg_true()[0])
    ledger = ledger.with_columns(
        pl.when(pl.int_range(pl.len()) == row)
        .then(pl.lit(3, pl.Int64))
        .otherwise("times_sampled")
        .alias("times_sampled")
    )
    ledger.write_parquet(out / "ledger.parquet")
    diffs = verify(out).differences
    assert (
        "ledger.parquet: source docs: a record sampled 3 times, max_epochs is 2 (a record twice in one pass?)" in diffs
    )


def test_ledger_times_sampled_must_add_up(out):
    ledger = pl.read_parquet(out / "ledger.parquet")
    kept = ledger["status"] == "kept"
    first_kept = int(kept.arg_true()[0])
    ledger = ledger.with_columns(
        pl.when(pl.int_range(pl.len()) == first_kept).then(pl.col("times_sampled") + 1).otherwise("times_sampled")
    )
    ledger.write_parquet(out / "ledger.parquet")
    source = ledger["source"][first_kept]
    diffs = verify(out).differences
    assert any(
        d.startswith(f"ledger.parquet: source {source}: ") and "times_sampled (train), manifest" in d for d in diffs
    )
    assert any(d.startswith(f"ledger.parquet: source {source}: times_sampled (train) sums to") for d in diffs)


def test_unlisted_files_and_missing_quarantine_are_caught(out):
    (out / "shards" / "train-00099.parquet").write_bytes(b"x")
    quarantine = out / manifest(out)["sources"]["docs"]["quarantine_file"]
    quarantine.unlink()
    diffs = verify(out).differences
    assert "shards/train-00099.parquet: not listed in manifest.json (extra file?)" in diffs
    assert f"{quarantine.relative_to(out).as_posix()}: missing (deleted?)" in diffs


def test_shard_rows_pointing_outside_the_output_are_refused(out):
    m = manifest(out)
    m["shards"][0]["path"] = "../../etc/hostname"
    m["shards"][1] = "shards/x.parquet"
    (out / "manifest.json").write_text(json.dumps(m))
    diffs = verify(out).differences
    assert "../../etc/hostname: outside the output folder (manifest edited?)" in diffs
    assert "manifest.json: shards[1] is not a shard row with a path (edited?)" in diffs


def test_not_an_output_is_a_usage_error(tmp_path):
    with pytest.raises(NotAnOutput, match="not a folder"):
        verify(tmp_path / "nope")
    with pytest.raises(NotAnOutput, match=r"no manifest\.json"):
        verify(tmp_path)


def test_broken_manifest_is_a_difference(out):
    (out / "manifest.json").write_text("{not json")
    assert verify(out).differences[0].startswith("manifest.json: cannot be read")
    (out / "manifest.json").write_text("{}")
    assert verify(out).differences == ["manifest.json: no shards, sources, totals (edited, or not written by curate?)"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0.0, 0.999))
def test_any_truncation_of_a_jsonl_zst_is_caught_by_reading_alone(built, tmp_path, cut):
    """Without the checksum: reading a truncated .zst either fails or finds fewer records."""
    source = shard(built, "jsonl.zst")
    expected = read_counts(source, "jsonl.zst").records
    path = tmp_path / "cut.jsonl.zst"
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    try:
        counts = read_counts(path, "jsonl.zst")
    except (ValueError, zstandard.ZstdError):
        return
    assert counts.records < expected


def test_cli_exit_codes(built, out, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(main, ["verify", str(built)])
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("OK: ") and "everything matches manifest.json" in ok.output
    shard(out, "parquet").unlink()
    shard(out, "jsonl.zst").write_bytes(b"")
    bad = runner.invoke(main, ["verify", str(out)])
    assert bad.exit_code == 1
    lines = bad.output.splitlines()
    assert any("missing (deleted?)" in line for line in lines) and any(
        "0 records, manifest says" in line for line in lines
    )
    assert lines[-1].startswith("FAILED: ") and "differences from manifest.json" in lines[-1]
    assert "Traceback" not in bad.output
    usage = runner.invoke(main, ["verify", str(tmp_path / "nowhere")])
    assert usage.exit_code == 2 and "is not a folder" in usage.output
    empty = tmp_path / "empty"
    empty.mkdir()
    usage = runner.invoke(main, ["verify", str(empty)])
    assert usage.exit_code == 2 and "not a curate output" in usage.output


def test_the_ledger_reports_and_trainers_index_files_are_checked(grouped, tmp_path):
    """Files a trainer or a reviewer reads beside the shards: the MDS and datasets indexes, Megatron's
    --data-path blend, the ledger (a drop reason edited keeps every count that verify adds up)."""
    out = Path(shutil.copytree(grouped, tmp_path / "out"))
    listed = manifest(out)["checksums"]
    index_files = ["hf/dataset_dict.json", "mds/train/index.json", "megatron/data_path.txt", "ledger.parquet"]
    assert set(index_files) <= set(listed) and not {"manifest.json", "report.html", "run.json"} & set(listed)
    assert not any(rel.startswith("hf/train/") for rel in listed)  # the hf split folders are shard rows
    (out / "mds/train/index.json").unlink()
    dataset_dict = json.loads((out / "hf/dataset_dict.json").read_text())
    (out / "hf/dataset_dict.json").write_text(json.dumps({"splits": dataset_dict["splits"][:1]}))
    (out / "megatron/data_path.txt").write_text("1 megatron/train-00000\n")
    ledger = pl.read_parquet(out / "ledger.parquet")
    assert ledger["reason"].drop_nulls().len()
    ledger.with_columns(pl.col("reason").str.replace(r"^.*$", "edited")).write_parquet(out / "ledger.parquet")
    diffs = verify(out).differences
    assert "mds/train/index.json: missing (deleted?)" in diffs
    for rel in ("hf/dataset_dict.json", "megatron/data_path.txt", "ledger.parquet"):
        assert f"{rel}: sha256 differs (file edited?)" in diffs, diffs
    assert verify(grouped).ok
