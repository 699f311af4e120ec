"""Builds stopped at awkward moments: during the output swap, by Ctrl-C, by a killed driver; and paths
a build must cope with (glob characters, a work dir under a file)."""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import curate
from curate.errors import FatalError
from curate.executor import LocalExecutor
from tests.conftest import write_jsonl
from tests.test_build import output_bytes

build_module = importlib.import_module("curate.build")  # `curate.build` the attribute is the API function


def test_a_build_killed_between_the_two_renames_of_the_swap_keeps_the_previous_output(tmp_path, small_pipeline):
    curate.build(small_pipeline, base_dir=tmp_path)
    before = output_bytes(tmp_path / "out")
    # what a kill after `out` -> `.out.old-*` and before `.out.tmp-*` -> `out` leaves behind
    os.rename(tmp_path / "out", tmp_path / ".out.old-12345678")
    (tmp_path / ".out.tmp-87654321").mkdir()
    small_pipeline["mixture"] = {"weights": {"inst": 0.5, "docs": 0.5}, "total_tokens": 10_000}  # infeasible
    with pytest.raises(FatalError, match="infeasible mixture"):
        curate.build(small_pipeline, base_dir=tmp_path)
    assert output_bytes(tmp_path / "out") == before  # put back, not deleted
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")) == [".out.lock"]


def test_run_json_is_in_the_output_before_it_is_put_in_place(tmp_path, small_pipeline, monkeypatch):
    replace = build_module.replace_dir
    seen: list[dict] = []

    def checked(new: Path, target: Path) -> None:
        assert (new / "run.json").is_file()  # written into the new output, with the lock held
        seen.append(__import__("json").loads((new / "run.json").read_text()))
        replace(new, target)

    monkeypatch.setattr(build_module, "replace_dir", checked)
    result = curate.build(small_pipeline, base_dir=tmp_path)
    assert seen and seen[0] == result.run and result.run["records_in"] == 10
    assert (tmp_path / "out" / "run.json").is_file()


def _sigint_self(task: int) -> int:
    os.kill(os.getpid(), signal.SIGINT)
    return task


def test_workers_leave_ctrl_c_to_the_driver():
    # a terminal's Ctrl-C reaches every process of the group: the workers ignore it (no tracebacks from
    # them); the driver stops the pool
    with LocalExecutor(2) as executor:
        assert list(executor.map(_sigint_self, iter(range(4)))) == [0, 1, 2, 3]


def _worker_pid(task: int) -> int:
    time.sleep(0.2)
    return os.getpid()


DRIVER = """
import sys, time
from curate.executor import LocalExecutor
from tests.test_stop_and_resume import _worker_pid
if __name__ == "__main__":
    with LocalExecutor(2) as executor:
        pids = set(executor.map(_worker_pid, iter(range(6))))
        print(" ".join(map(str, sorted(pids))), flush=True)
        time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_exit_when_their_driver_is_killed(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    repo = str(Path(__file__).parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    driver = subprocess.Popen([sys.executable, str(script)], cwd=repo, env=env, stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in driver.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        driver.kill()
        driver.wait()
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids), "workers outlived their killed driver"
    finally:
        driver.kill()


def test_partial_files_of_a_stopped_build_are_removed_when_it_resumes(tmp_path, small_pipeline):
    first = curate.build(small_pipeline, base_dir=tmp_path)
    (folder,) = [p for p in (tmp_path / ".curate").glob("pass-*") if (p / "batch-000000.parquet").exists()][:1]
    (folder / "_DONE").unlink()
    (folder / "batch-000001.parquet").unlink()
    partial = folder / ".removed-000001.parquet.4242.tmp"
    partial.write_bytes(b"half a write")
    again = curate.build(small_pipeline, base_dir=tmp_path)
    assert not partial.exists()
    assert output_bytes(again.output) == output_bytes(first.output)


@pytest.mark.parametrize("workers", [1, 2])
def test_glob_characters_in_the_output_and_work_dir_are_plain_names(tmp_path, small_pipeline, workers):
    small_pipeline["stages"].append({"use": "minhash_dedup", "fields": "prompt", "template": True})
    reference = curate.build(small_pipeline, base_dir=tmp_path, output=tmp_path / "plain", work_dir=tmp_path / "w")
    odd = curate.build(
        small_pipeline, base_dir=tmp_path, output=tmp_path / "o[1]", work_dir=tmp_path / "w[1]*?", workers=workers
    )
    assert output_bytes(odd.output) == output_bytes(reference.output)
    small_pipeline["output"] = {"formats": ["jsonl"]}  # read back through the notebook API too
    shown = curate.build(small_pipeline, base_dir=tmp_path, output=tmp_path / "j[1]", work_dir=tmp_path / "w[1]*?")
    assert curate.open(shown.output).records.collect().height == shown.manifest["totals"]["records_out"]


def test_a_work_dir_under_a_file_is_a_clean_error(tmp_path, small_pipeline):
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(FatalError, match=r"cannot create work dir .*afile/sub: .*afile is a file"):
        curate.build(small_pipeline, base_dir=tmp_path, work_dir=tmp_path / "afile" / "sub")
    with pytest.raises(FatalError, match=r"work dir .*afile exists and is not a folder"):
        curate.build(small_pipeline, base_dir=tmp_path, work_dir=tmp_path / "afile")


def test_leftovers_are_matched_by_name_not_as_a_glob(tmp_path, small_pipeline):
    # `o[23]` as a glob would match `.o2.old-*` and `.o2.tmp-*`: another output's leftovers
    other = tmp_path / ".o2.old-99999999"
    other.mkdir()
    (other / "manifest.json").write_text("{}")
    busy = tmp_path / ".o2.tmp-11111111"
    busy.mkdir()
    mine = curate.build(small_pipeline, base_dir=tmp_path, output=tmp_path / "o[23]")
    before = output_bytes(mine.output)
    os.rename(mine.output, tmp_path / ".o[23].old-12345678")  # killed between the two renames
    small_pipeline["mixture"] = {"weights": {"inst": 0.5, "docs": 0.5}, "total_tokens": 10_000}
    with pytest.raises(FatalError, match="infeasible mixture"):
        curate.build(small_pipeline, base_dir=tmp_path, output=tmp_path / "o[23]")
    assert output_bytes(tmp_path / "o[23]") == before  # its own old output put back
    assert other.exists() and busy.exists()  # the other output's folders untouched


@pytest.mark.parametrize("name", ["plain", "j[1]"])
def test_json_lines_shards_with_different_null_columns_read_back_as_one_frame(tmp_path, name):
    # the first shards hold only text documents (`messages` all null), the later ones only instructions
    docs = [{"text": f"Document {i} about topic {i % 3} in plain words."} for i in range(30)]
    write_jsonl(tmp_path / "docs.jsonl", docs)
    write_jsonl(
        tmp_path / "inst.jsonl",
        [{"instruction": f"Add {i} and 3.", "input": "", "output": f"{i} + 3 = {i + 3}."} for i in range(30)],
    )
    config = {
        "pipeline": {"name": "s", "seed": 1},
        "sources": [{"name": "docs", "path": "docs.jsonl"}, {"name": "inst", "path": "inst.jsonl"}],
        "output": {"formats": ["jsonl"], "shard_max_records": 7},
    }
    built = curate.build(config, base_dir=tmp_path, output=tmp_path / name)
    records = curate.open(built.output).records.collect()
    assert records.height == 60 and records["source"].to_list() == ["docs"] * 30 + ["inst"] * 30
    assert records["messages"][0] is None and records["messages"][59] is not None


def _cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    "damage",
    [
        lambda pass_dir: (pass_dir / "batch-000001.parquet").unlink(),
        lambda pass_dir: (pass_dir / "removed-000002.parquet").unlink(),
        lambda pass_dir: _cut_short(pass_dir / "batch-000000.parquet"),
        lambda pass_dir: _cut_short(pass_dir / "removed-000001.parquet"),
        lambda pass_dir: (pass_dir / "decisions.parquet").write_bytes(b"not parquet"),
        lambda pass_dir: (pass_dir / "warnings.txt").unlink(),
        lambda pass_dir: (pass_dir / "_DONE").write_text("x"),
        lambda pass_dir: shutil.copyfile(pass_dir / "batch-000000.parquet", pass_dir / "batch-000000 copy.parquet"),
    ],
    ids=[
        "batch deleted",
        "removed deleted",
        "batch cut",
        "removed cut",
        "decisions garbled",
        "warnings",
        "marker",
        "stray copy",
    ],
)
def test_a_finished_pass_with_files_missing_or_damaged_is_redone_not_read_short(tmp_path, small_pipeline, damage):
    """A finished pass's rows are read by listing its folder: a batch file deleted from it lost its records
    (exit 0, a shorter ledger); a damaged one gave a polars traceback on every rerun."""
    small_pipeline["pipeline"]["batch_size"] = 3  # 10 records: 4 batches
    first = curate.build(small_pipeline, base_dir=tmp_path, work_dir=tmp_path / "wd")
    before = output_bytes(first.output)
    [pass_dir] = sorted((tmp_path / "wd").glob("pass-*"))
    damage(pass_dir)
    again = curate.build(small_pipeline, base_dir=tmp_path, work_dir=tmp_path / "wd")
    assert again.run["cached_passes"] == [] and again.ledger.height == 10
    assert output_bytes(again.output) == before
    assert curate.build(small_pipeline, base_dir=tmp_path, work_dir=tmp_path / "wd").run["cached_passes"]


def test_a_full_disk_is_a_clean_error_and_the_build_resumes(tmp_path, small_pipeline, monkeypatch):
    """polars and pyarrow report a full disk as their own errors, with the code only in the text."""
    import polars as pl

    reference = output_bytes(curate.build(small_pipeline, base_dir=tmp_path, work_dir=tmp_path / "ref-wd").output)
    executor_module = importlib.import_module("curate.executor")
    write = executor_module._write_atomic
    calls = []

    def fills_up(df, path):
        calls.append(path)
        if len(calls) == 2:
            raise pl.exceptions.ComputeError("parquet: underlying IO error: No space left on device (os error 28)")
        write(df, path)

    monkeypatch.setattr(executor_module, "_write_atomic", fills_up)
    with pytest.raises(FatalError) as info:
        curate.build(small_pipeline, base_dir=tmp_path, work_dir=tmp_path / "wd")
    message = str(info.value)
    assert message.startswith("no space left on device (parquet: underlying IO error: No space left on device")
    assert f"work dir ({tmp_path / 'wd'})" in message and message.endswith("the build resumes where it stopped")
    monkeypatch.setattr(executor_module, "_write_atomic", write)
    assert output_bytes(curate.build(small_pipeline, base_dir=tmp_path, work_dir=tmp_path / "wd").output) == reference


def test_a_marker_without_sizes_is_checked_by_the_parquet_footers(tmp_path, small_pipeline):
    """A work dir of an earlier curate: its `_DONE` holds the batch count only."""
    small_pipeline["pipeline"]["batch_size"] = 3
    before = output_bytes(curate.build(small_pipeline, base_dir=tmp_path, work_dir=tmp_path / "wd").output)
    [pass_dir] = sorted((tmp_path / "wd").glob("pass-*"))
    count = (pass_dir / "_DONE").read_text().splitlines()[0]
    assert int(count) == 4 and len((pass_dir / "_DONE").read_text().splitlines()) == 4 * 2 + 2  # + decisions
    (pass_dir / "_DONE").write_text(f"{count}\n")
    cached = curate.build(small_pipeline, base_dir=tmp_path, work_dir=tmp_path / "wd")
    assert cached.run["cached_passes"] == [pass_dir.name]
    _cut_short(pass_dir / "batch-000002.parquet")
    again = curate.build(small_pipeline, base_dir=tmp_path, work_dir=tmp_path / "wd")
    assert again.run["cached_passes"] == [] and output_bytes(again.output) == before
