"""Putting a build's output in place (`curate.dir_swap`): readers see the old folder or the new one."""

import errno
import os
from pathlib import Path

import pytest

import curate.dir_swap as dir_swap
from curate.dir_swap import exchange, remove_tree, replace_dir


def folder(path: Path, content: str) -> Path:
    path.mkdir()
    (path / "manifest.json").write_text(content)
    return path


def can_exchange(tmp_path: Path) -> bool:
    a, b = folder(tmp_path / "probe-a", "a"), folder(tmp_path / "probe-b", "b")
    return exchange(a, b)


def test_replace_puts_the_new_folder_in_place_and_deletes_the_old(tmp_path):
    target = folder(tmp_path / "out", "old")
    new = folder(tmp_path / ".out.tmp-1", "new")
    replace_dir(new, target)
    assert (target / "manifest.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_replace_without_a_previous_folder(tmp_path):
    new = folder(tmp_path / ".out.tmp-1", "new")
    replace_dir(new, tmp_path / "out")
    assert (tmp_path / "out" / "manifest.json").read_text() == "new"
    assert not new.exists()


def test_the_output_path_is_never_missing_where_folders_can_be_exchanged(tmp_path, monkeypatch):
    # the two renames leave a moment with no folder at the path; the exchange has none, so it must not
    # fall back to them here (Linux, a local file system)
    if not can_exchange(tmp_path):
        pytest.skip("this system or file system cannot exchange two folders (renameat2)")

    def no_rename(*args):
        raise AssertionError(f"os.rename{args}: the path would be missing between two renames")

    monkeypatch.setattr(dir_swap.os, "rename", no_rename)
    target = folder(tmp_path / "out", "old")
    replace_dir(folder(tmp_path / ".out.tmp-1", "new"), target)
    assert (target / "manifest.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "probe-a", "probe-b"]


def test_where_folders_cannot_be_exchanged_two_renames_do_it(tmp_path, monkeypatch):
    monkeypatch.setattr(dir_swap, "exchange", lambda a, b: False)
    target = folder(tmp_path / "out", "old")
    replace_dir(folder(tmp_path / ".out.tmp-1", "new"), target)
    assert (target / "manifest.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_exchange_that_fails_for_another_reason_raises(tmp_path):
    if not can_exchange(tmp_path):
        pytest.skip("this system or file system cannot exchange two folders (renameat2)")
    with pytest.raises(OSError) as caught:
        exchange(tmp_path / "missing", folder(tmp_path / "out", "old"))
    assert caught.value.errno == errno.ENOENT
    assert (tmp_path / "out" / "manifest.json").read_text() == "old"


def test_exchange_is_refused_without_renameat2(tmp_path, monkeypatch):
    monkeypatch.setattr(dir_swap, "_renameat2", lambda: None)
    a, b = folder(tmp_path / "a", "a"), folder(tmp_path / "b", "b")
    assert exchange(a, b) is False
    assert (a / "manifest.json").read_text() == "a" and os.path.isdir(b)


def test_a_second_ctrl_c_does_not_cut_the_cleanup_short(tmp_path, monkeypatch):
    """One Ctrl-C can come as two KeyboardInterrupts, the second inside the cleanup of the first: the
    temporary output was left behind in 6 of 25 tries."""
    import shutil

    (tmp_path / "tmp" / "shards").mkdir(parents=True)
    (tmp_path / "tmp" / "shards" / "a.parquet").write_bytes(b"x")
    real, calls = shutil.rmtree, []

    def interrupted_once(path, ignore_errors=False):
        calls.append(path)
        if len(calls) == 1:
            raise KeyboardInterrupt
        real(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(shutil, "rmtree", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        remove_tree(tmp_path / "tmp")
    assert not (tmp_path / "tmp").exists() and len(calls) == 2
