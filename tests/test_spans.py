"""Worker-side reading (`curate.ingest.spans`): batches cut by a worker's scan and read by byte range
must be exactly the driver-side reader's batches: same cuts, rows, line numbers and payloads."""

import gzip
import hashlib
import importlib
import io
import itertools
import json
import os
from itertools import pairwise
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

import curate
from curate.build import scan_inputs
from curate.config import load_config
from curate.executor import LocalExecutor
from curate.ingest import files
from curate.ingest.batching import payload_size
from curate.ingest.files import OverlongLine, iter_raw_lines
from curate.ingest.parquet_spill import reads_by_rows, row_sizes, spill_parquet
from curate.ingest.scan_record import load_scan
from curate.ingest.scan_stream import ScanStream
from curate.ingest.source import iter_raw_batches, spec_for
from curate.ingest.spans import (
    Cut,
    ScanTask,
    file_size,
    read_span,
    reads_by_span,
    reads_by_spill,
    scan_file,
)
from tests.conftest import write_jsonl
from tests.test_build import output_bytes

LINES = [
    b'{"text": "a short document"}',
    b'{"text": "caf\xc3\xa9 \xe2\x80\x94 unicode"}',
    b'{"prompt": "What is 2+2?", "response": "4"}',
    b"",
    b"   ",
    b"\t",
    b"{not json",
    b'{"text": "bad \xff byte"}',
    b'{"text": "' + b"long " * 300 + b'"}',
]


def batches(path: Path, batch_size: int, batch_bytes: int, by_span: bool, **options) -> list[tuple]:
    """(index, file, first row, lines, payloads) of every batch of a source of one file, and the warnings
    (by span: batch files are spilled into a folder beside it). `options`: the source's."""
    source = {"name": "s", "path": str(path), "format": "text", **options}
    config = load_config({"pipeline": {"name": "t"}, "sources": [source]})
    specs = [spec_for(src, i) for i, src in enumerate(config.sources)]
    cuts = None
    if by_span:
        files = config.sources[0].files
        spill = str(path.parent / "spill")
        src = config.sources[0]
        cuts = {
            (0, f): scan_file(ScanTask(f, batch_size, batch_bytes, file_size(f), spill, 0, src.txt_mode, src.split))
            for f in files
        }
        assert all(c is not None for c in cuts.values())
    warnings: list[str] = []
    out = []
    for batch in iter_raw_batches(config.sources, specs, path.parent, batch_size, warnings, batch_bytes, cuts):
        lines, payloads = read_span(*batch.span) if batch.span else (batch.lines, batch.payloads)
        out.append((batch.index, batch.file, batch.first_row, lines, payloads))
    return [*out, tuple(warnings)]


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(st.sampled_from(LINES), max_size=40),
    endings=st.lists(st.sampled_from([b"\n", b"\r\n"]), min_size=40, max_size=40),
    final_newline=st.booleans(),
    bom=st.booleans(),
    batch_size=st.integers(1, 7),
    batch_bytes=st.one_of(st.integers(1, 300), st.just(1 << 62)),
)
def test_span_batches_equal_the_driver_reader(
    tmp_path_factory, lines, endings, final_newline, bom, batch_size, batch_bytes
):
    content = b"".join(line + ending for line, ending in zip(lines, endings, strict=False))
    if lines and not final_newline:
        content = content.rstrip(b"\r\n")
    path = tmp_path_factory.mktemp("spans") / "data.jsonl"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + content)
    assert batches(path, batch_size, batch_bytes, by_span=True) == batches(path, batch_size, batch_bytes, by_span=False)


def compress(content: bytes, suffix: str, cuts: tuple[int, ...] = ()) -> bytes:
    """`content` as one gzip member / zstd frame, or several (split at the `cuts` offsets)."""
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(content)), len(content)]
    pieces = [content[lo:hi] for lo, hi in pairwise(bounds)] or [b""]
    one = gzip.compress if suffix == ".gz" else zstandard.ZstdCompressor().compress
    return b"".join(one(piece) for piece in pieces)


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(st.sampled_from(LINES), max_size=40),
    endings=st.lists(st.sampled_from([b"\n", b"\r\n", b"\n\n", b"\r\r\n"]), min_size=40, max_size=40),
    final_newline=st.booleans(),
    bom=st.booleans(),
    suffix=st.sampled_from([".gz", ".zst"]),
    members=st.lists(st.integers(0, 4000), max_size=3),
    batch_size=st.integers(1, 7),
    batch_bytes=st.one_of(st.integers(1, 300), st.just(1 << 62)),
)
def test_spilled_batches_of_compressed_files_equal_the_driver_reader(
    tmp_path_factory, lines, endings, final_newline, bom, suffix, members, batch_size, batch_bytes
):
    content = b"".join(line + ending for line, ending in zip(lines, endings, strict=False))
    if lines and not final_newline:
        content = content.rstrip(b"\r\n")
    path = tmp_path_factory.mktemp("spill") / f"data.jsonl{suffix}"
    path.write_bytes(compress((b"\xef\xbb\xbf" if bom else b"") + content, suffix, tuple(members)))
    spilled = batches(path, batch_size, batch_bytes, by_span=True)
    assert spilled == batches(path, batch_size, batch_bytes, by_span=False)
    assert len(list((path.parent / "spill").glob("*.zst"))) == len(spilled) - 1  # a file per batch


def test_a_damaged_compressed_file_is_read_by_the_driver_reader_on_the_worker(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    lines = (json.dumps({"text": f"{i} {hashlib.sha256(bytes(i)).hexdigest()}"}).encode() for i in range(400))
    whole = gzip.compress(b"\n".join(lines) + b"\n")
    path.write_bytes(whole[: len(whole) // 2])  # truncated: the reader quarantines what follows the damage
    spilled = batches(path, 10, 1 << 20, by_span=True)
    assert spilled == batches(path, 10, 1 << 20, by_span=False)
    assert "truncated_file" in spilled[-2][4][-1].reason  # the last batch ends with the reader's problem
    names = [p.name for p in (tmp_path / "spill").iterdir()]  # the lines spilled before the damage are gone:
    assert len(names) == len(spilled) - 1 and all(n.endswith(".pickle.zst") for n in names)  # only these
    path.write_bytes(whole)
    assert scan_file(ScanTask(path, 10, 1 << 20, file_size(path))) is None  # no spill folder given
    cuts = scan_file(ScanTask(path, 150, 1 << 20, file_size(path), str(tmp_path / "spill2")))
    assert [cut.items for cut in cuts] == [150, 150, 100] and all(cut.spill for cut in cuts)
    Path(cuts[1].spill).write_bytes(zstandard.ZstdCompressor().compress(b'{"text": "one"}\n'))
    with pytest.raises(
        curate.FatalError,
        match=r"spilled batch .* of input .*a\.jsonl\.gz is missing or damaged \(its content is not what",
    ):
        read_span(path, cuts[1])
    Path(cuts[2].spill).unlink()
    with pytest.raises(curate.FatalError, match=r"spilled batch .* of input .*a\.jsonl\.gz is missing or damaged"):
        read_span(path, cuts[2])


def test_lines_across_read_chunks(tmp_path):
    """Records longer than the reader's 1 MiB chunks, and line ends falling on chunk borders."""
    big = json.dumps({"text": "x" * (3 << 20)}).encode()
    rows = [big, b'{"text": "small"}', b"", big[: (1 << 20) - 1], b'{"text": "after"}']
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"\n".join(rows) + b"\n")
    for size, limit in ((1, 1 << 62), (2, 1 << 62), (100, 1 << 21)):
        assert batches(path, size, limit, by_span=True) == batches(path, size, limit, by_span=False)


def test_only_json_lines_and_parquet_are_read_by_the_workers(tmp_path):
    assert reads_by_span(tmp_path / "a.jsonl") and reads_by_rows(tmp_path / "a.parquet")
    for name in ("a.parquet.gz", "a.parquet.zst", "a.jsonl", "a.json", "a.csv", "a.txt"):
        assert not reads_by_rows(tmp_path / name)
    assert reads_by_spill(tmp_path / "a.jsonl.gz") and reads_by_spill(tmp_path / "a.jsonl.zst")
    for name in ("a.jsonl.gz", "a.jsonl.zst", "a.json", "a.parquet", "a.txt", "a.csv"):
        assert not reads_by_span(tmp_path / name)
    for name in ("a.jsonl", "a.json.gz", "a.parquet", "a.txt.zst", "a.csv.gz"):
        assert not reads_by_spill(tmp_path / name)


def test_a_file_the_worker_cannot_see_is_left_to_the_driver(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": "one"}])
    path = tmp_path / "a.jsonl"
    assert scan_file(ScanTask(tmp_path / "missing.jsonl", 10, 1 << 20, None)) is None
    assert scan_file(ScanTask(path, 10, 1 << 20, file_size(path) + 1)) is None  # not the file the driver sees
    assert scan_file(ScanTask(path, 10, 1 << 20, file_size(path))) is not None


def test_remote_file_by_span():
    fs = fsspec.filesystem("memory")
    fs.pipe("/spans/data.jsonl", b'{"text": "one"}\r\n\n{"text": "two"}\n{"text": "three"}')
    from curate.ingest.remote import RemoteFile

    remote = RemoteFile("memory:///spans/data.jsonl")
    cuts = scan_file(ScanTask(remote, 2, 1 << 20, None))
    assert [read_span(remote, cut) for cut in cuts] == [
        ([1, 3], [b'{"text": "one"}', b'{"text": "two"}']),
        ([4], [b'{"text": "three"}']),
    ]


def test_changed_input_is_refused(tmp_path):
    path = tmp_path / "a.jsonl"
    write_jsonl(path, [{"text": "one"}, {"text": "two"}])
    (cut,) = scan_file(ScanTask(path, 10, 1 << 20, file_size(path)))
    path.write_bytes(b'{"text": "one"}\n')
    with pytest.raises(curate.FatalError, match="changed while it was read"):
        read_span(path, cut)


def test_an_input_rewritten_to_the_same_size_after_the_scan_is_refused(tmp_path):
    # the old byte ranges would cut the new lines in half: the scan's stamp (size, mtime) catches it
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"text":"a"}\n{"text":"bb"}\n')
    cuts = scan_file(ScanTask(path, 1, 1 << 20, file_size(path)))
    assert len(cuts) == 2 and all(cut.stamp for cut in cuts)
    path.write_bytes(b'{"text":"aa"}\n{"text":"b"}\n')
    os.utime(path, ns=(1, 1))  # a different mtime, however coarse the file system's clock
    for cut in cuts:
        with pytest.raises(curate.FatalError, match="changed while it was read"):
            read_span(path, cut)


def _driver_batches(path: Path, batch_size: int):
    """The driver-side batches of a one-file source, as `--workers 1` reads them (no scan, no cuts)."""
    config = load_config({"pipeline": {"name": "t"}, "sources": [{"name": "s", "path": str(path), "format": "text"}]})
    specs = [spec_for(src, i) for i, src in enumerate(config.sources)]
    return iter_raw_batches(config.sources, specs, path.parent, batch_size, [])


@pytest.mark.parametrize("change", ["append", "rewrite_same_size"])
def test_an_input_that_changes_while_the_driver_reads_it_is_refused(tmp_path, change):
    # --workers 1 reads a file as it streams it: a writer still appending to it (or replacing it) must
    # stop the build, as a changed file stops a scanned one, instead of a build of whatever was there
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"text":"a"}\n{"text":"bb"}\n')
    stream = _driver_batches(path, batch_size=1)
    assert next(stream).payloads == [b'{"text":"a"}']
    if change == "append":
        with open(path, "ab") as f:
            f.write(b'{"text":"ccc"}\n')
    else:
        path.write_bytes(b'{"text":"x"}\n{"text":"yy"}\n')
        os.utime(path, ns=(1, 1))  # a different mtime, however coarse the file system's clock
    with pytest.raises(curate.FatalError, match=r"a\.jsonl changed while it was read"):
        list(stream)


def test_an_unchanged_input_read_by_the_driver_gives_every_batch(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"text":"a"}\n{"text":"bb"}\n')
    assert [b.payloads for b in _driver_batches(path, batch_size=1)] == [[b'{"text":"a"}'], [b'{"text":"bb"}']]


def test_a_hf_dataset_folder_is_stamped_by_the_files_in_it(tmp_path):
    from curate.ingest.spans import read_stamp

    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "dataset_info.json").write_text("{}")
    (folder / "state.json").write_text("{}")
    (folder / "data-00000-of-00001.arrow").write_bytes(b"12345")
    before = read_stamp(folder)
    (folder / "data-00000-of-00001.arrow").write_bytes(b"123456")
    assert read_stamp(folder) != before


def test_an_input_deleted_after_the_scan_is_a_clean_error(tmp_path):
    path = tmp_path / "a.jsonl"
    write_jsonl(path, [{"text": "one"}])
    (cut,) = scan_file(ScanTask(path, 10, 1 << 20, file_size(path)))
    path.unlink()
    with pytest.raises(curate.FatalError, match=r"a\.jsonl is gone \(deleted or moved"):
        read_span(path, cut)


@pytest.mark.parametrize("workers", [1, 2])
def test_an_input_deleted_during_the_build_is_a_clean_error(tmp_path, monkeypatch, workers):
    write_jsonl(tmp_path / "a.jsonl", [{"text": "one"}, {"text": "two"}])
    build_module = importlib.import_module("curate.build")
    listed = build_module._ingest_tasks

    def delete_then_list(*args, **kwargs):
        (tmp_path / "a.jsonl").unlink()
        return listed(*args, **kwargs)

    monkeypatch.setattr(build_module, "_ingest_tasks", delete_then_list)
    config = {"pipeline": {"name": "gone"}, "sources": [{"name": "s", "path": "a.jsonl", "format": "text"}]}
    with pytest.raises(curate.FatalError, match=r"a\.jsonl is gone"):
        curate.build(config, base_dir=tmp_path, workers=workers)


def test_build_with_workers_reads_by_span_and_writes_the_same_output(tmp_path):
    """Two workers read the JSON Lines inputs by byte range; one worker gets the lines from the driver."""
    rows = [{"text": f"document number {i} " * (i % 7 + 1)} for i in range(60)]
    write_jsonl(tmp_path / "a.jsonl", rows[:35])
    write_jsonl(tmp_path / "b.jsonl", rows[35:])
    (tmp_path / "c.jsonl").write_bytes(b'\xef\xbb\xbf{"text": "bom"}\r\n\r\n{broken\r\n')
    config = {
        "pipeline": {"name": "spans", "batch_size": 4},
        "sources": [{"name": "docs", "path": "*.jsonl"}],
        "stages": [{"use": "exact_dedup"}],
    }
    one = curate.build(config, base_dir=tmp_path, output=tmp_path / "w1", work_dir=tmp_path / "k1")
    two = curate.build(config, base_dir=tmp_path, output=tmp_path / "w2", work_dir=tmp_path / "k2", workers=2)
    for name in ("manifest.json", "ledger.parquet", "quarantine/docs.jsonl"):
        assert (one.output / name).read_bytes() == (two.output / name).read_bytes(), name
    assert sorted(p.name for p in (two.output / "shards").iterdir()) == sorted(
        p.name for p in (one.output / "shards").iterdir()
    )


def test_build_with_workers_spills_compressed_inputs_and_writes_the_same_output(tmp_path, monkeypatch):
    """Two workers cut the compressed and Parquet inputs into spilled batches themselves (a truncated
    file and one that is not Parquet are left to the driver); one worker gets every record from the
    driver. The spill folder goes after pass 0."""
    rows = [{"text": f"document number {i} " * (i % 7 + 1)} for i in range(90)]
    lines = [json.dumps(r).encode() for r in rows]
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(b"\n".join(lines[:40]) + b"\n\n"))
    (tmp_path / "b.jsonl.zst").write_bytes(compress(b"\xef\xbb\xbf" + b"\r\n".join(lines[40:80]), ".zst"))
    cut = gzip.compress(b"\n".join(lines[80:]))
    (tmp_path / "c.jsonl.gz").write_bytes(cut[: len(cut) - 12])  # truncated
    table = pa.table({"text": [f"table row {i} " * (i % 5 + 1) for i in range(30)], "n": list(range(30))})
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=7)
    (tmp_path / "e.parquet").write_bytes(b"not parquet")
    (tmp_path / "misc").mkdir()
    (tmp_path / "misc" / "f.json").write_text(json.dumps([{"text": f"array item {i}"} for i in range(9)]))
    (tmp_path / "misc" / "g.csv").write_text("text\n" + "".join(f'"csv, row {i}"\n' for i in range(6)) + "ragged,row\n")
    (tmp_path / "misc" / "h.txt").write_text("".join(f"block {i}\nsecond line\n\n" for i in range(5)))
    config = {
        "pipeline": {"name": "spill", "batch_size": 4},
        "sources": [
            {"name": "docs", "path": "*.jsonl.*"},
            {"name": "tables", "path": "*.parquet", "format": "text"},
            {"name": "misc", "path": "misc", "format": "text"},
        ],
        "stages": [{"use": "exact_dedup"}],
    }
    scanned: list[dict] = []

    def recorded(*args):  # the driver's scan, seen from the build
        scanned.append(scan_inputs(*args))
        return scanned[-1]

    build_module = importlib.import_module("curate.build")  # `curate.build` the attribute is the API function
    monkeypatch.setattr(build_module, "scan_inputs", recorded)
    one = curate.build(config, base_dir=tmp_path, output=tmp_path / "w1", work_dir=tmp_path / "k1")
    assert not scanned  # one worker: the driver reads every input
    two = curate.build(config, base_dir=tmp_path, output=tmp_path / "w2", work_dir=tmp_path / "k2", workers=2)
    assert output_bytes(one.output) == output_bytes(two.output)
    assert one.manifest["totals"]["records_in"] >= 110 and (two.output / "quarantine" / "docs.jsonl").exists()
    assert (two.output / "quarantine" / "tables.jsonl").exists()  # e.parquet: not Parquet
    assert (two.output / "quarantine" / "misc.jsonl").exists()  # g.csv: a ragged row
    (cuts,) = scanned
    names = ["a.jsonl.gz", "b.jsonl.zst", "c.jsonl.gz", "d.parquet", "e.parquet", "f.json", "g.csv", "h.txt"]
    assert sorted(Path(f).name for _, f in cuts) == names  # c (damaged), e (not Parquet) through the reader
    assert all(c.spill for f in cuts for c in cuts[f]) and sum(len(c) for c in cuts.values()) == 20 + 3 + 8 + 1 + 7
    assert not list((tmp_path / "k2").rglob("spill")) and not list((tmp_path / "k2").rglob("scan.json"))


def test_every_byte_limit_cuts_where_the_driver_reader_cuts(tmp_path):
    """`batch_bytes` counts payload bytes (no line ending): each limit around the line sizes, with CRLF."""
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b"\r\n".join(LINES[:3] * 3) + b"\r\n\r\n" + LINES[0])
    for limit in range(1, 130):
        assert batches(path, 100, limit, by_span=True) == batches(path, 100, limit, by_span=False), limit


TEXTS = ["", "plain", "café — unicode", "😀 astral", "x" * 300, None]


@st.composite
def parquet_tables(draw) -> pa.Table:
    """Tables with the column types sources hold: strings (plain, large, dictionary-encoded, null),
    numbers, lists, structs and binary (the last four do not count toward a batch's payload)."""
    rows = draw(st.integers(0, 40))
    texts = st.lists(st.sampled_from(TEXTS), min_size=rows, max_size=rows)
    columns = {
        "text": pa.array(draw(texts), pa.string()),
        "prompt": pa.array(draw(texts), pa.large_string()),
        "label": pa.array(draw(texts), pa.string()).dictionary_encode(),
        "view": pa.array(draw(texts), pa.string_view()),
        "n": pa.array(range(rows), pa.int64()),
        "tags": pa.array([[t or "", "b"] for t in draw(texts)], pa.list_(pa.string())),
        "meta": pa.array([{"k": t} for t in draw(texts)], pa.struct([("k", pa.string())])),
        "blob": pa.array([(t or "").encode() for t in draw(texts)], pa.binary()),
    }
    keep = draw(st.lists(st.sampled_from(sorted(columns)), min_size=1, unique=True))
    return pa.table({name: columns[name] for name in keep})


@settings(max_examples=60, deadline=None)
@given(
    table=parquet_tables(),
    row_group=st.integers(1, 50),
    batch_size=st.integers(1, 7),
    batch_bytes=st.one_of(st.integers(1, 400), st.just(1 << 62)),
)
def test_spilled_batches_of_parquet_files_equal_the_driver_reader(
    tmp_path_factory, table, row_group, batch_size, batch_bytes
):
    path = tmp_path_factory.mktemp("parquet") / "data.parquet"
    pq.write_table(table, path, row_group_size=row_group)
    spilled = batches(path, batch_size, batch_bytes, by_span=True)
    assert spilled == batches(path, batch_size, batch_bytes, by_span=False)
    assert len(list((path.parent / "spill").glob("*.arrow"))) == len(spilled) - 1  # a file per batch


def test_parquet_rows_are_sized_as_the_driver_reader_sizes_them():
    table = pa.table({"a": ["é😀", None, "abc"], "b": pa.array(["xy", "z", None]).dictionary_encode(), "n": [1, 2, 3]})
    assert row_sizes(table.to_batches()[0]) == [4, 1, 3]
    assert row_sizes(table.to_batches()[0]) == [payload_size(row) for row in table.to_pylist()]


def test_parquet_files_arrow_cannot_cut_go_through_the_driver_reader_on_the_worker(tmp_path):
    """Not Parquet, or an extension type (its Python values cannot be sized from Arrow): the row path
    declines, and the driver's reader, run on the worker, spills them instead; an empty file has no batch."""
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    odd = tmp_path / "odd.parquet"
    pq.write_table(pa.table({"meta": pa.array(['{"a": 1}'] * 5, pa.json_()), "text": list("abcde")}), odd)
    for path in (garbage, odd):
        assert spill_parquet(ScanTask(path, 2, 1 << 20, file_size(path)), tmp_path / "rows") is None
        assert batches(path, 2, 1 << 20, by_span=True) == batches(path, 2, 1 << 20, by_span=False)
        assert all(p.name.endswith(".pickle.zst") for p in (tmp_path / "spill").iterdir())
    assert "invalid_parquet" in batches(garbage, 2, 1 << 20, by_span=True)[0][4][0].reason
    assert not list((tmp_path / "rows").glob("*"))
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    assert scan_file(ScanTask(empty, 10, 1 << 20, 0, str(tmp_path / "spill"))) == []  # no records, as the driver
    fine = tmp_path / "fine.parquet"
    pq.write_table(pa.table({"text": ["one", "two", "three"]}), fine)
    assert scan_file(ScanTask(fine, 10, 1 << 20, file_size(fine))) is None  # no spill folder given
    assert scan_file(ScanTask(tmp_path / "missing.parquet", 10, 1 << 20, None, str(tmp_path / "spill"))) is None


def test_a_changed_or_missing_parquet_spill_is_refused(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": [f"row {i}" for i in range(25)]}), path, row_group_size=7)
    cuts = scan_file(ScanTask(path, 10, 1 << 20, file_size(path), str(tmp_path / "spill")))
    assert [(c.first_line, c.items) for c in cuts] == [(1, 10), (11, 10), (21, 5)]
    assert read_span(path, cuts[1]) == (list(range(11, 21)), [{"text": f"row {i}"} for i in range(10, 20)])
    Path(cuts[1].spill).write_bytes(Path(cuts[2].spill).read_bytes())
    with pytest.raises(
        curate.FatalError,
        match=r"spilled batch .* of input .*a\.parquet is missing or damaged \(its content is not what",
    ):
        read_span(path, cuts[1])
    Path(cuts[2].spill).unlink()
    with pytest.raises(curate.FatalError, match=r"spilled batch .* of input .*a\.parquet is missing or damaged"):
        read_span(path, cuts[2])


def _hf_folder(path: Path) -> Path:
    import datasets

    rows = {"instruction": ["add 2 and 2", "name a colour", "say hi"], "output": ["4", "red", "hi"]}
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(rows), "test": datasets.Dataset.from_dict(rows)}
    ).save_to_disk(str(path))
    return path


OTHER_FORMATS = {
    "array.json": b'[{"text": "one"}, 7, {"text": "caf\xc3\xa9"}, {"text": "three"}]',
    "lines.json": b'{"text": "really"}\n{"text": "json lines"}\n{broken\n',
    "broken.json": b'[{"text": "one"}, {"text": ',
    "table.csv": b'text,label\n"multi\nline",a\nragged\n"bad \xff byte",b\nplain,c\n',
    "blocks.txt": b"\xef\xbb\xbfone block\nof two lines\n\n\n second block \n\r\nthird\n",
    "array.json.gz": gzip.compress(b'[{"text": "zipped"}, {"text": "array"}]'),
    "table.csv.zst": zstandard.ZstdCompressor().compress(b"text\nfirst\nsecond\nthird\n"),
    "blocks.txt.gz": gzip.compress(b"a\n\nb\n\nc\n\nd\n")[:-6],  # truncated: the reader reports the file
}


@pytest.mark.parametrize("name", sorted(OTHER_FORMATS))
@pytest.mark.parametrize("batch_size", [1, 2, 100])
def test_other_formats_are_read_by_the_driver_reader_on_the_worker(tmp_path, name, batch_size):
    path = tmp_path / name
    path.write_bytes(OTHER_FORMATS[name])
    spilled = batches(path, batch_size, 1 << 20, by_span=True)
    assert spilled == batches(path, batch_size, 1 << 20, by_span=False)
    assert len(list((tmp_path / "spill").glob("*.pickle.zst"))) == len(spilled) - 1


def test_text_files_whole_compressed_parquet_and_dataset_folders_on_the_worker(tmp_path):
    whole = tmp_path / "whole.txt"
    whole.write_bytes(b"one document\n\nin one file\n")
    assert batches(whole, 1, 1 << 20, True, txt_mode="file") == batches(whole, 1, 1 << 20, False, txt_mode="file")
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"text": ["a", None, "c"], "when": pa.array([0, 1, 2], pa.timestamp("s"))}), sink)
    packed = tmp_path / "rows.parquet.zst"
    packed.write_bytes(zstandard.ZstdCompressor().compress(sink.getvalue().to_pybytes()))
    assert batches(packed, 2, 1 << 20, by_span=True) == batches(packed, 2, 1 << 20, by_span=False)
    folder = _hf_folder(tmp_path / "hf")
    for split in ("", "test"):
        assert batches(folder, 2, 1 << 20, True, split=split) == batches(folder, 2, 1 << 20, False, split=split)
    assert {p.name.split(".", 1)[1] for p in (tmp_path / "spill").iterdir()} == {"pickle.zst"}  # all spilled


def test_a_changed_or_missing_spill_of_the_driver_reader_is_refused(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(json.dumps([{"text": f"row {i}"} for i in range(5)]).encode())
    cuts = scan_file(ScanTask(path, 2, 1 << 20, file_size(path), str(tmp_path / "spill")))
    assert [(c.first_line, c.items) for c in cuts] == [(1, 2), (3, 2), (5, 1)]
    assert read_span(path, cuts[1]) == ([3, 4], [{"text": "row 2"}, {"text": "row 3"}])
    Path(cuts[1].spill).write_bytes(Path(cuts[2].spill).read_bytes())
    with pytest.raises(
        curate.FatalError, match=r"spilled batch .* of input .*a\.json is missing or damaged \(its content is not what"
    ):
        read_span(path, cuts[1])
    Path(cuts[2].spill).write_bytes(b"garbage")
    with pytest.raises(curate.FatalError, match=r"spilled batch .* of input .*a\.json is missing or damaged"):
        read_span(path, cuts[2])


def test_a_resumed_pass_0_reuses_the_recorded_scan_and_its_spilled_batches(tmp_path, monkeypatch):
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(b"".join(b'{"text": "row %d"}\n' % i for i in range(9))))
    write_jsonl(tmp_path / "b.jsonl", [{"text": f"line {i}"} for i in range(5)])
    (tmp_path / "c.json").write_text(json.dumps([{"text": f"item {i}"} for i in range(4)]))
    config = load_config(
        {"pipeline": {"name": "t", "batch_size": 2}, "sources": [{"name": "s", "path": "*.*", "format": "text"}]},
        base_dir=tmp_path,
    )
    build_module = importlib.import_module("curate.build")  # `curate.build` the attribute is the API function
    scan = build_module.scan_inputs
    folder = tmp_path / "pass"
    folder.mkdir()
    with LocalExecutor(2) as executor:
        first = build_module._scan_once(config, executor, folder)
        assert sum(len(c) for c in first.values()) == 5 + 3 + 2 and (folder / "scan.json").exists()
        monkeypatch.setattr(build_module, "scan_inputs", lambda *args: pytest.fail("the inputs were cut again"))
        assert build_module._scan_once(config, executor, folder) == first  # resumed: the record is reused
        spilled = [Path(c.spill) for cuts in first.values() for c in cuts if c.spill]
        spilled[0].unlink()  # a batch file gone: the record cannot be used, the inputs are cut again
        monkeypatch.setattr(build_module, "scan_inputs", scan)
        assert build_module._scan_once(config, executor, folder) == first and all(p.exists() for p in spilled)
    assert load_scan(folder / "scan.json", config.sources[:0]) is None  # a file no source has
    (folder / "scan.json").write_text('{"version": 2, "files": [{"source": 0}]}')
    assert load_scan(folder / "scan.json", config.sources) is None
    (folder / "scan.json").write_text("{not json")
    assert load_scan(folder / "scan.json", config.sources) is None


def test_a_spilled_batch_with_one_byte_changed_is_refused(tmp_path):
    """Every kind of spilled batch is checked against the digest its scan recorded, so a change that
    still decodes is refused instead of read as other records."""
    write = {
        "a.jsonl.gz": lambda p: p.write_bytes(gzip.compress(b'{"text": "one"}\n{"text": "two"}\n')),
        "b.parquet": lambda p: pq.write_table(pa.table({"text": ["one", "two"]}), p),
        "c.json": lambda p: p.write_text('[{"text": "one"}, {"text": "two"}]'),
    }
    for name, make in write.items():
        path = tmp_path / name
        make(path)
        (cut,) = scan_file(ScanTask(path, 10, 1 << 20, file_size(path), str(tmp_path / "spill")))
        assert read_span(path, cut)[1]  # reads back as scanned
        data = bytearray(Path(cut.spill).read_bytes())
        data[len(data) // 2] ^= 1
        Path(cut.spill).write_bytes(bytes(data))
        with pytest.raises(curate.FatalError, match="is missing or damaged"):
            read_span(path, cut)


def test_parquet_with_string_views_or_a_dictionary_per_row_group_takes_the_row_path(tmp_path):
    views = tmp_path / "views.parquet"
    pq.write_table(pa.table({"text": pa.array(["é😀", None, "abc"] * 4, pa.string_view())}), views, row_group_size=5)
    dictionaries = tmp_path / "dictionaries.parquet"
    schema = pa.schema([("text", pa.dictionary(pa.int32(), pa.string()))])
    with pq.ParquetWriter(dictionaries, schema) as writer:  # each row group with a dictionary of its own
        for part in range(4):
            values = pa.array([f"part {part} row {i}" for i in range(5)]).dictionary_encode()
            writer.write_table(pa.table({"text": values.cast(schema.field("text").type)}))
    for path in (views, dictionaries):
        assert spill_parquet(ScanTask(path, 7, 1 << 20, file_size(path)), tmp_path / "rows") is not None
        assert batches(path, 7, 1 << 20, by_span=True) == batches(path, 7, 1 << 20, by_span=False)


def test_a_damaged_parquet_file_is_the_same_fatal_error_on_the_driver_and_on_a_worker(tmp_path):
    path = tmp_path / "damaged.parquet"
    pq.write_table(pa.table({"text": [f"row {i} " * 20 for i in range(2000)]}), path, compression="snappy")
    data = bytearray(path.read_bytes())
    for offset in range(200, 2200, 400):  # inside the data pages, before the footer
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    message = r"cannot decode Parquet input .*damaged\.parquet: .*the file is damaged"
    with pytest.raises(curate.FatalError, match=message):
        batches(path, 100, 1 << 20, by_span=False)
    with pytest.raises(curate.FatalError, match=message):
        batches(path, 100, 1 << 20, by_span=True)
    assert not list((tmp_path / "spill").glob("*"))


def test_a_parquet_footer_that_does_not_decode_is_the_same_fatal_error_on_the_driver_and_on_a_worker(tmp_path):
    path = tmp_path / "footer.parquet"
    pq.write_table(pa.table({"text": [f"row {i}" for i in range(50)]}), path)
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")
    for offset in range(len(data) - 8 - footer, len(data) - 8 - footer + 20):  # the thrift footer
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    message = r"cannot decode Parquet input .*footer\.parquet: .*the file is damaged"
    for by_span in (False, True):
        with pytest.raises(curate.FatalError, match=message):
            batches(path, 10, 1 << 20, by_span=by_span)


def test_parquet_strings_that_are_not_utf8_quarantine_their_rows_on_the_driver_and_on_a_worker(tmp_path):
    values = [b"fine", b"bad \xff\xfe here", b"also fine"]
    offsets = pa.array([0, *itertools.accumulate(len(v) for v in values)], pa.int32())
    text = pa.Array.from_buffers(pa.string(), 3, [None, offsets.buffers()[1], pa.py_buffer(b"".join(values))])
    pq.write_table(pa.table({"text": text, "n": [1, 2, 3]}), tmp_path / "bad.parquet")
    config = {"pipeline": {"name": "utf"}, "sources": [{"name": "s", "path": "bad.parquet", "format": "text"}]}
    built = [
        curate.build(config, base_dir=tmp_path, output=tmp_path / f"o{w}", work_dir=tmp_path / f"k{w}", workers=w)
        for w in (1, 2)
    ]
    ledger = built[0].ledger.select("line", "status", "reason")
    assert ledger["status"].to_list() == ["kept", "quarantined", "kept"]
    assert ledger["reason"][1].startswith("invalid_utf8: a string of the row is not valid UTF-8")
    assert output_bytes(built[0].output) == output_bytes(built[1].output)
    lines = (built[0].output / "quarantine" / "s.jsonl").read_text().splitlines()
    (quarantined,) = [json.loads(line) for line in lines]
    assert quarantined["raw"] == "{'text': b'bad \\xff\\xfe here', 'n': 2}"  # the raw row shows the bytes


def test_a_split_the_dataset_folder_lacks_is_a_fatal_error(tmp_path):
    folder = _hf_folder(tmp_path / "hf")
    for by_span in (False, True):
        with pytest.raises(curate.FatalError, match=r"has no split 'nope' \(it has train, test\)"):
            batches(folder, 2, 1 << 20, by_span, split="nope")


def test_the_scan_streams_a_file_at_a_time_and_is_recorded_once_complete(tmp_path):
    keys = [(0, tmp_path / f"{name}.jsonl") for name in "abc"]
    pulled: list[int] = []
    completed: list[dict] = []

    def results():
        for i, cuts in enumerate([[Cut(0, 1, 1, 1)], None, [Cut(0, 2, 1, 2)]]):
            pulled.append(i)
            yield cuts

    stream = ScanStream(keys, results(), on_complete=completed.append)
    assert stream.get(keys[0]) == [Cut(0, 1, 1, 1)] and pulled == [0]  # the first file's scan only
    assert stream.get(keys[1]) is None and pulled == [0, 1] and not completed  # the driver reads b
    assert stream.get(keys[2]) == [Cut(0, 2, 1, 2)] and pulled == [0, 1, 2]
    assert completed == [{keys[0]: [Cut(0, 1, 1, 1)], keys[2]: [Cut(0, 2, 1, 2)]}]
    assert dict(stream) == completed[0] and len(stream) == 2 and len(completed) == 1


def test_ingest_tasks_start_before_the_last_input_is_scanned(tmp_path, monkeypatch):
    # with local workers, the batches of the first file go out while later files are still scanned
    for name in "abcd":
        write_jsonl(tmp_path / f"{name}.jsonl", [{"text": f"{name} {i}"} for i in range(6)])
    build_module = importlib.import_module("curate.build")
    events: list[str] = []
    listed = build_module._ingest_tasks

    def traced(config, specs, p, ctx, warnings, cuts):
        scans = cuts._results if isinstance(cuts, ScanStream) else None
        assert scans is not None, "pass 0 got its scan eagerly"
        for task in listed(config, specs, p, ctx, warnings, cuts):
            events.append(f"batch {task[0].index} after {len(cuts._taken)} scans")
            yield task

    monkeypatch.setattr(build_module, "_ingest_tasks", traced)
    config = {"pipeline": {"name": "stream", "batch_size": 3}, "sources": [{"name": "s", "path": "*.jsonl"}]}
    two = curate.build(config, base_dir=tmp_path, output=tmp_path / "w2", work_dir=tmp_path / "k2", workers=2)
    assert events[0] == "batch 0 after 1 scans" and events[-1] == "batch 7 after 4 scans"
    monkeypatch.setattr(build_module, "_ingest_tasks", listed)
    one = curate.build(config, base_dir=tmp_path, output=tmp_path / "w1", work_dir=tmp_path / "k1")
    assert output_bytes(one.output) == output_bytes(two.output)


def _reference_lines(content: bytes, cap: int) -> list[tuple[bytes, int]]:
    """(line, length) of `content`'s lines without `\\n`, a line over `cap` bytes as (its head, length)."""
    lines = content.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return [(line if len(line) <= cap else line[:2000], len(line)) for line in lines]


@settings(max_examples=300, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 5000), max_size=12),
    final_newline=st.booleans(),
    chunk=st.integers(1, 3000),
    cap=st.one_of(st.integers(1, 4000), st.sampled_from([1999, 2000, 2001])),  # around the head kept
)
def test_lines_over_the_cap_are_not_held(tmp_path_factory, lengths, final_newline, chunk, cap):
    content = b"\n".join(bytes([97 + i % 26]) * n for i, n in enumerate(lengths))
    if lengths and final_newline:
        content += b"\n"
    path = tmp_path_factory.mktemp("lines") / "data.jsonl"
    path.write_bytes(content)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(files, "_CHUNK", chunk)
        read = [
            (bytes(line), line.length if isinstance(line, OverlongLine) else len(line))
            for line in iter_raw_lines(path, cap)
        ]
        assert not any(isinstance(line, OverlongLine) for line in iter_raw_lines(path))  # no cap: whole lines
    assert read == _reference_lines(content, cap)


@pytest.mark.parametrize("suffix", ["", ".gz", ".zst"])
def test_an_overlong_line_is_quarantined_and_the_file_read_on_by_driver_and_worker(tmp_path, monkeypatch, suffix):
    monkeypatch.setattr(files, "MAX_LINE_BYTES", 3000)
    rows = [b'{"text": "before"}', b"[" + b'{"text": "an array"}, ' * 400 + b"{}]", b'{"text": "after"}']
    content = b"\n".join(rows) + b"\n"
    path = tmp_path / f"data.jsonl{suffix}"
    path.write_bytes(compress(content, suffix) if suffix else content)
    on_worker = batches(path, 2, 1 << 20, by_span=True)
    assert on_worker == batches(path, 2, 1 << 20, by_span=False)
    [(_, _, _, lines, payloads), (_, _, _, lines_after, payloads_after), ()] = on_worker
    assert lines == [1, 2] and payloads[0] == rows[0] and payloads_after == [rows[2]] and lines_after == [3]
    assert payloads[1].reason.startswith(f"line_too_long: a line of {len(rows[1]):,} bytes, over the 3,000")
    assert payloads[1].raw == rows[1][:2000].decode()
    assert all(name.endswith(".pickle.zst") for name in os.listdir(tmp_path / "spill"))  # the reader's spill


MEMBERS = st.lists(
    st.tuples(st.sampled_from(["random", "one_byte", "lines"]), st.integers(0, 3 << 20)), min_size=1, max_size=4
)


def _member(kind: str, size: int) -> bytes:
    if kind == "random":
        return hashlib.shake_256(str(size).encode()).digest(size)
    if kind == "one_byte":
        return b"x" * size
    return (b'{"text": "line %d"}\n' * (size // 18 + 1))[:size]


@settings(max_examples=25, deadline=None)
@given(members=MEMBERS, chunk=st.sampled_from([1 << 12, 1 << 20]))
def test_bounded_decompression_gives_the_whole_stream_of_every_member(members, chunk):
    """gzip members and zstd frames, incompressible or not, cut by reads anywhere: the pieces the capped
    decoders give join to the content."""
    data = [_member(kind, size) for kind, size in members]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(files, "_CHUNK", chunk)
        gz = b"".join(gzip.compress(d, compresslevel=1) for d in data)
        zs = b"".join(zstandard.ZstdCompressor(level=1).compress(d) for d in data)
        assert b"".join(files._gzip_chunks(io.BytesIO(gz))) == b"".join(data)
        assert b"".join(files._zstd_chunks(io.BytesIO(zs))) == b"".join(data)


@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_a_decompression_bomb_is_read_in_bounded_pieces(tmp_path, monkeypatch, suffix):
    """64 MB of one byte compresses to a few KB, one read of the file: it comes in pieces of at most
    32 MiB (zstd: 1 KiB of compressed bytes at a time; gzip: 1 MiB of output at a time), and as one line
    over the cap, not held whole."""
    monkeypatch.setattr(files, "MAX_LINE_BYTES", 3000)
    content = b'{"text": "a"}\n' + b"x" * (64 << 20) + b'\n{"text": "b"}\n'
    path = tmp_path / f"bomb.jsonl{suffix}"
    path.write_bytes(compress(content, suffix))
    assert path.stat().st_size < files._CHUNK
    sizes = [len(chunk) for chunk in files.iter_chunks(path)]
    assert sum(sizes) == len(content) and max(sizes) <= (32 << 20 if suffix == ".zst" else 1 << 20)
    lines = list(iter_raw_lines(path, files.MAX_LINE_BYTES))
    assert lines[0] == b'{"text": "a"}' and lines[2] == b'{"text": "b"}'
    assert isinstance(lines[1], OverlongLine) and lines[1].length == 64 << 20
