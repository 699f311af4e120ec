"""JSON arrays, CSV and compressed Parquet are read in bounded memory (issue 6: "inputs are read in
bounded batches"): item by item, never the whole file, with the same records and the same quarantine
reasons as parsing the whole text would give.

The JSON reader is checked against `json.loads` on random arrays cut into random chunk sizes, and on
the same arrays cut short (the error's message, line and column match); laziness is checked by counting
the chunks read before the first records come out.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import curate
import curate.ingest.files as files
import curate.ingest.json_stream as json_stream
import curate.ingest.readers as readers
from curate.config import load_config
from curate.errors import FatalError
from curate.ingest.json_stream import json_type
from curate.ingest.readers import Problem, ends_in_quotes, iter_file
from curate.ingest.source import resolve_format

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
ITEMS = st.lists(st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=5) | JSON_VALUES, max_size=12)


def items_of(path: Path) -> list[tuple[int, Any]]:
    """(number, object or ('problem', reason)) of every item the reader yields."""
    return [(n, ("problem", v.reason) if isinstance(v, Problem) else v) for n, v in iter_file(path)]


def expected_items(data: list[Any]) -> list[tuple[int, Any]]:
    """What parsing the whole array gives: every object, and a quarantined item for any other value."""
    return [
        (
            i,
            item
            if isinstance(item, dict)
            else ("problem", f"not_an_object: record is a JSON {json_type(item)}, expected an object"),
        )
        for i, item in enumerate(data, start=1)
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=ITEMS, chunk=st.integers(1, 64), indent=st.sampled_from([None, 0, 2]), ascii_only=st.booleans())
def test_json_array_items_equal_json_loads_for_any_chunking(tmp_path, monkeypatch, data, chunk, indent, ascii_only):
    monkeypatch.setattr(files, "_CHUNK", chunk)
    path = tmp_path / "array.json"
    text = json.dumps(data, indent=indent, ensure_ascii=ascii_only)
    path.write_bytes(text.encode())
    assert items_of(path) == expected_items(json.loads(text))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.lists(st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=4), min_size=1, max_size=8),
       cut=st.floats(0.05, 0.98), chunk=st.integers(1, 40), indent=st.sampled_from([None, 1]))  # fmt: skip
def test_a_json_array_cut_short_keeps_the_items_before_and_reports_where_as_json_loads(
    tmp_path, monkeypatch, data, cut, chunk, indent
):
    monkeypatch.setattr(files, "_CHUNK", chunk)
    text = json.dumps(data, indent=indent, ensure_ascii=False)
    text = text[: max(2, int(len(text) * cut))]
    path = tmp_path / "cut.json"
    path.write_bytes(text.encode())
    with pytest.raises(json.JSONDecodeError) as whole:
        json.loads(text)
    found = items_of(path)
    *kept, (number, last) = found
    assert [v for _, v in kept] == data[: len(kept)]  # a prefix of the items, every one an object
    assert number == len(kept) + 1
    error = whole.value
    rest = "the rest of the file was not read" if kept else "file not read"
    assert last == ("problem", f"invalid_json: {error.msg} at line {error.lineno} column {error.colno}; {rest}")


REST = "; the rest of the file was not read"
LONG_INT = (
    "invalid_json: cannot parse the value (ValueError: Exceeds the limit (4300 digits) for integer string "
    "conversion: value has 5000 digits; use sys.set_int_max_str_digits() to increase the limit)"
)
TOO_DEEP = (
    "invalid_json: cannot parse the value (RecursionError: maximum recursion depth exceeded while decoding "
    "a JSON array from a unicode string)"
)
NOT_READ = "; file not read"


def problem(reason: str) -> tuple[str, str]:
    return ("problem", reason)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", []),
        (b" \n ", []),
        (b"[]", []),
        (b'  {"a": 1,\n "b": [1, 2]}\n ', [(1, {"a": 1, "b": [1, 2]})]),  # one object over several lines
        (b'"a string"', [(1, problem("not_an_object: the file holds a JSON string, not an array of objects"))]),
        (b'{"a": 1} {"b": 2}', [(1, problem("invalid_json: Extra data at line 1 column 10"))]),
        (b'[{"a": 1}] x', [(1, {"a": 1}), (2, problem("invalid_json: Extra data at line 1 column 12" + REST))]),
        (b'[{"a": 1},]', [(1, {"a": 1}), (2, problem("invalid_json: Expecting value at line 1 column 11" + REST))]),
        (
            b'[{"a": "\xc3\xa9"}, {"b": "x\xffy"}]',
            [
                (1, {"a": "\u00e9"}),
                (2, problem("invalid_utf8: byte 22 is not valid UTF-8 (invalid start byte) (line 1)" + REST)),
            ],
        ),
        (b'{"a": "\xff"}', [(1, problem("invalid_utf8: byte 7 is not valid UTF-8 (invalid start byte)" + NOT_READ))]),
        # JSON Lines named .json, even when its first line is broken or not UTF-8: each line on its own
        (b'{"a": 1}\n{"b": 2}\n', [(1, b'{"a": 1}'), (2, b'{"b": 2}')]),
        (b'{"a": \n{"b": 2}\n', [(1, b'{"a": '), (2, b'{"b": 2}')]),
        (b'{"a": "\xff"}\n{"b": 2}\n', [(1, b'{"a": "\xff"}'), (2, b'{"b": 2}')]),
        (b'\n\n{"a": oops}', [(3, problem("invalid_json: Expecting value at line 3 column 7"))]),
        (b'\x0c{"a": 1}\n{"b": 2}\n', [(1, b'\x0c{"a": 1}'), (2, b'{"b": 2}')]),  # the old rule: bytes.strip
        # damage right after an element keeps the element
        (
            b'[{"a": 1}\xff',
            [
                (1, {"a": 1}),
                (2, problem("invalid_utf8: byte 9 is not valid UTF-8 (invalid start byte) (line 1)" + REST)),
            ],
        ),
        # what json.loads raises besides JSONDecodeError is quarantined too
        (
            b"[" + b"9" * 5000 + b"]",
            [
                (
                    1,
                    problem(LONG_INT + " at line 1 column 2" + NOT_READ),
                )
            ],
        ),
        (
            b'[{"a": 1}, ' + b"[" * 100_000 + b"]" * 100_000 + b"]",
            [
                (1, {"a": 1}),
                (
                    2,
                    problem(TOO_DEEP + " at line 1 column 12" + REST),
                ),
            ],
        ),
        # a byte-order mark split over two chunks, and a second one
        (b'\xef\xbb\xbf\xef\xbb\xbf[{"a": 1}]', [(1, {"a": 1})]),
    ],
)
def test_json_file_shapes(tmp_path, monkeypatch, content, expected):
    monkeypatch.setattr(files, "_CHUNK", 3)
    path = tmp_path / "f.json"
    path.write_bytes(content)
    assert items_of(path) == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=ITEMS,
    chunk=st.integers(1, 16),
    encoding=st.sampled_from(["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"]),
)
def test_json_in_any_encoding_json_loads_reads(tmp_path, monkeypatch, data, chunk, encoding):
    monkeypatch.setattr(files, "_CHUNK", chunk)
    path = tmp_path / "encoded.json"
    content = json.dumps(data, ensure_ascii=False).encode(encoding, "surrogatepass")
    path.write_bytes(content)
    assert items_of(path) == expected_items(json.loads(content))


def test_surrogates_written_as_utf8_bytes_read_as_json_loads_reads_them(tmp_path):
    path = tmp_path / "surrogates.json"
    content = b'[{"lone": "\xed\xa0\x80"}, {"pair": "\xed\xa0\xbd\xed\xb8\x80"}]'
    path.write_bytes(content)
    assert (
        items_of(path)
        == [(1, {"lone": "\ud800"}), (2, {"pair": "\ud83d\ude00"})]
        == expected_items(json.loads(content))
    )


def test_numbers_and_literals_cut_by_a_chunk_end_are_read_whole(tmp_path, monkeypatch):
    path = tmp_path / "n.json"
    path.write_bytes(b"[" + b", ".join(b'{"n": %d, "f": %d.5e3, "t": true}' % (i * 7919, i) for i in range(200)) + b"]")
    for chunk in (1, 2, 3, 5, 7):
        monkeypatch.setattr(files, "_CHUNK", chunk)
        assert [v for _, v in items_of(path)] == [{"n": i * 7919, "f": i * 1000 + 500.0, "t": True} for i in range(200)]


def counting(monkeypatch, module: Any) -> list[int]:
    """Patch `module.iter_chunks` to count the chunks read; the list holds one entry per chunk."""
    read: list[int] = []
    original = files.iter_chunks

    def chunks(path: Any) -> Iterator[bytes]:
        for chunk in original(path):
            read.append(len(chunk))
            yield chunk

    monkeypatch.setattr(module, "iter_chunks", chunks)
    return read


def big_inputs(tmp_path: Path, count: int = 4000) -> dict[str, Path]:
    rows = [{"text": f"document {i} " + "word " * 40} for i in range(count)]
    array = tmp_path / "big.json"
    array.write_text(json.dumps(rows, indent=1))
    table = tmp_path / "big.csv"
    table.write_text("text\n" + "".join(f'"{r["text"]}"\n' for r in rows))
    return {"json": array, "csv": table}


@pytest.mark.parametrize("kind", ["json", "csv"])
def test_a_big_file_is_read_a_chunk_at_a_time(tmp_path, monkeypatch, kind):
    monkeypatch.setattr(files, "_CHUNK", 4096)
    path = big_inputs(tmp_path)[kind]
    read = counting(monkeypatch, json_stream if kind == "json" else files)
    items = iter_file(path)
    first = [next(items) for _ in range(10)]
    assert [p["text"].split()[1] for _, p in first] == [str(i) for i in range(10)]
    assert len(read) <= 3  # of ~230 chunks: the file is not read whole before its first records
    assert sum(1 for _ in items) == 4000 - 10
    assert sum(read) == path.stat().st_size


@pytest.mark.parametrize("kind", ["json", "csv"])
def test_format_detection_reads_only_the_head_of_a_big_file(tmp_path, monkeypatch, kind):
    monkeypatch.setattr(files, "_CHUNK", 4096)
    path = big_inputs(tmp_path)[kind]
    read = counting(monkeypatch, json_stream if kind == "json" else files)
    config = load_config({"pipeline": {"name": "t"}, "sources": [{"name": "docs", "path": str(path)}]})
    assert resolve_format(config.sources[0], 0) == "text"
    assert 1 <= len(read) <= 3


def test_no_whole_file_read_for_json_csv_and_compressed_parquet(tmp_path, monkeypatch):
    inputs = big_inputs(tmp_path, 50)
    parquet = tmp_path / "t.parquet.zst"
    plain = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": [f"row {i}" for i in range(50)]}), plain, row_group_size=10)
    parquet.write_bytes(zstandard.ZstdCompressor().compress(plain.read_bytes()))

    def refuse(path: Any) -> bytes:
        raise AssertionError(f"{path} was read whole")

    monkeypatch.setattr("curate.ingest.readers.read_all", refuse)
    for path in (inputs["json"], inputs["csv"], parquet):
        assert len(items_of(path)) == 50


def test_a_truncated_compressed_csv_keeps_the_rows_before_the_cut(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_CHUNK", 512)
    body = b"text\n" + b"".join(b"row number %d with some words\n" % i for i in range(2000))
    whole = gzip.compress(body)
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    found = items_of(path)
    *rows, (number, last) = found
    assert rows and [v["text"] for _, v in rows] == [f"row number {i} with some words" for i in range(len(rows))]
    assert number == -1 and last[1].startswith("truncated_file: the .gz stream ends before its end-of-stream marker")


def test_a_build_over_a_streamed_json_array_and_csv_keeps_every_record(tmp_path):
    inputs = big_inputs(tmp_path, 300)
    config = {
        "pipeline": {"name": "t", "batch_size": 64},
        "sources": [{"name": "a", "path": str(inputs["json"])}, {"name": "c", "path": str(inputs["csv"])}],
        "output": {"formats": ["parquet"]},
    }
    outputs = []
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        result = curate.build(config, output=out, work_dir=tmp_path / f"work{workers}", workers=workers)
        kept = result.ledger.filter(pl.col("status") == "kept")
        assert kept.group_by("source").len().sort("source").rows() == [("a", 300), ("c", 300)]
        outputs.append(pl.read_parquet(out / "shards" / "train-00000.parquet"))
    assert outputs[0].equals(outputs[1])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(st.sampled_from(["alpha words here", "beta words here", "gamma", 7, None]), max_size=12),
    cut=st.none() | st.floats(0.1, 0.95),
)
def test_every_element_of_a_json_array_is_in_the_ledger(tmp_path_factory, texts, cut):
    """Ledger accounting over a streamed array, damaged or not: each element read is kept, dropped or
    quarantined, and damage is one more quarantined record."""
    folder = tmp_path_factory.mktemp("ledger")
    data = [{"text": t} if isinstance(t, str) else t for t in texts]
    content = json.dumps(data).encode()
    if cut is not None:
        content = content[: max(1, int(len(content) * cut))]
    (folder / "a.json").write_bytes(content)
    read = items_of(folder / "a.json")
    config = {
        "pipeline": {"name": "t"},
        "sources": [{"name": "a", "path": "a.json", "format": "text"}],
        "stages": [{"use": "normalize"}, {"use": "exact_dedup"}],
        "output": {"formats": ["parquet"]},
    }
    result = curate.build(config, output=folder / "out", work_dir=folder / "work", base_dir=folder)
    ledger = result.ledger
    assert ledger.height == len(read) == result.manifest["totals"]["records_in"]
    assert sorted(ledger["line"].to_list()) == [n for n, _ in read]
    problems = {n for n, v in read if isinstance(v, tuple)}
    quarantined = set(ledger.filter(pl.col("status") == "quarantined")["line"].to_list())
    assert problems <= quarantined  # non-objects and damage; an object without text is quarantined later
    kept = ledger.filter(pl.col("status") == "kept")["line"].to_list()
    texts_kept = [read[n - 1][1]["text"] for n in kept]
    assert len(texts_kept) == len(set(texts_kept))  # exact duplicates dropped


def test_an_unterminated_string_does_not_pull_the_rest_of_the_file_into_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_CHUNK", 1024)
    monkeypatch.setattr(files, "MAX_VALUE_CHARS", 50_000)
    path = tmp_path / "open.json"
    path.write_bytes(b'[{"text": "fine"}, {"text": "no end ' + b"word " * 100_000 + b'"}]')
    read = counting(monkeypatch, json_stream)
    found = items_of(path)
    assert found[0] == (1, {"text": "fine"})
    assert found[1][0] == 2 and found[1][1][1].startswith("invalid_json: a value of over 50,000 characters")
    assert sum(read) < 200_000  # of 500,000 bytes
    path.write_bytes(b'[{"text": "' + b"word " * 9_000 + b'"}]')  # a long value under the limit is read
    assert items_of(path)[0][1]["text"].startswith("word word")
    # one object over several lines and over the limit: one quarantined record, not one per line
    path.write_bytes(b'{"data": [\n' + b'"word word word",\n' * 5_000 + b'"end"]}\n')
    [(line, (_, reason))] = items_of(path)
    assert line == 1 and reason.startswith("invalid_json: a value of over 50,000 characters")


def test_an_unclosed_csv_quote_quarantines_the_rest_of_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "MAX_VALUE_CHARS", 50_000)
    path = tmp_path / "open.csv"
    path.write_bytes(b'text\nfine\n"no end\n' + b"word word\n" * 20_000)
    limit = csv.field_size_limit()
    try:
        found = items_of(path)
    finally:
        csv.field_size_limit(limit)  # the csv module's limit is process-wide
    assert found[0] == (2, {"text": "fine"})
    assert found[1] == (
        3,  # where the unclosed quote is, not where the csv module gave up
        (
            "problem",
            "invalid_csv: field larger than field limit (50000) (an unclosed quote?); the rest of the file "
            "was not read",
        ),
    )


def test_a_lone_surrogate_in_a_json_array_is_quarantined_not_fatal(tmp_path):
    """json.loads decodes `\\ud800` and surrogates written as UTF-8 bytes; such a string cannot be
    stored, so the record is quarantined (it used to stop the build with a traceback)."""
    (tmp_path / "a.json").write_bytes(
        b'[{"text": "fine one"}, {"text": "escaped \\ud800 lone"}, {"text": "bytes \xed\xa0\x80 lone"},'
        b' {"text": "pair \\ud83d\\ude00 fine"}, {"text": "a\xed\xa0\x80b" oops}]'
    )
    config = {"pipeline": {"name": "t"}, "sources": [{"name": "a", "path": "a.json", "format": "text"}]}
    for extra in ({}, {"id_field": "text"}):
        config["sources"][0].update(extra)
        result = curate.build(config, output=tmp_path / "out", work_dir=tmp_path / "work", base_dir=tmp_path)
        rows = {r["line"]: r for r in result.ledger.to_dicts()}
        assert [rows[n]["status"] for n in (1, 2, 3, 4, 5)] == [
            "kept",
            "quarantined",
            "quarantined",
            "kept",
            "quarantined",
        ]
        assert rows[2]["reason"].startswith("invalid_utf8: the record holds a string that is not valid UTF-8")
        assert rows[5]["reason"].startswith("invalid_json: Expecting ',' delimiter")
        raw = [json.loads(line) for line in (tmp_path / "out" / "quarantine" / "a.jsonl").read_text().splitlines()]
        assert any("\\udca0" in r["raw"] or "\\ud800" in r["raw"] for r in raw if r["line"] == 5)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        # a quote never closed before the end of the file: the lenient csv module would end the field
        # there, so the row held every line after the quote, silently
        (b'text\nfine\n"no end\nmore\nlines\n', [(2, "fine"), (3, "invalid_csv")]),
        (b'text\n"only row\n', [(2, "invalid_csv")]),
        # closed quotes, escaped quotes and a stray quote the module accepts stay as they were
        (b'text\nfine\n"closed\nacross lines"\n', [(2, "fine"), (3, "closed\nacross lines")]),
        (b'text\n"a ""quoted"" word"\nlast', [(2, 'a "quoted" word'), (3, "last")]),
        (b'text\n"a"b\nok\n', [(2, "ab"), (3, "ok")]),
        (b'a,b\r\n1,"2\r\n3"\r\n', [(2, "1")]),
    ],
)
def test_a_csv_quote_left_open_at_the_end_of_the_file_is_quarantined(tmp_path, content, expected):
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    found = items_of(path)
    shown = [
        (line, item[1].split(":")[0] if isinstance(item, tuple) else next(iter(item.values()))) for line, item in found
    ]
    assert shown == expected
    if expected[-1][1] == "invalid_csv":
        assert found[-1][1][1].startswith("invalid_csv: a quote opened in this row is never closed")


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet='ab,"\n\r', max_size=40))
def test_the_open_quote_check_reads_csv_as_the_csv_module_does(text):
    # oracle: a line appended after text that ends inside quotes lands inside a field, not in a row of its own
    rows = list(csv.reader(io.StringIO(text + "\nZZZ\n", newline="")))
    absorbed = not any(row == ["ZZZ"] for row in rows)
    assert ends_in_quotes(text) == absorbed


@pytest.mark.parametrize(
    "content",
    [
        b'text,id\nok,1\n"a"b,"runs\nline a\nline b\n',  # the strict parser stops at `"a"b` first
        b'text,id\nx"y,"runs\nz\n',
    ],
)
def test_an_open_quote_after_other_irregular_quoting_is_still_found(tmp_path, content):
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    assert items_of(path)[-1][1][1].startswith("invalid_csv: a quote opened in this row is never closed")


def test_a_csv_header_with_a_quote_never_closed_is_one_quarantined_record(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b'"text\nfine\nmore\n')
    [(line, (_, reason))] = items_of(path)
    assert line == 1 and reason.startswith("invalid_csv: a quote opened in the header is never closed")


def test_a_compressed_parquet_too_big_for_tmpdir_stops_with_its_name(tmp_path, monkeypatch):
    plain = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": [f"row {i} " * 50 for i in range(2000)]}), plain, row_group_size=100)
    packed = tmp_path / "t.parquet.gz"  # gzip pieces are at most _CHUNK bytes
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    size = plain.stat().st_size
    monkeypatch.setattr(files, "_CHUNK", 4096)
    looks: list[int] = []

    def free(folder: str, left: list[int]) -> int:
        looks.append(len(looks))
        return (left.pop(0) if len(left) > 1 else left[0]), readers.TMP_RESERVE

    # room for it all: read as before, with a look at the free space every _RECHECK bytes
    monkeypatch.setattr(readers, "_RECHECK", size // 3)
    monkeypatch.setattr(readers, "free_and_reserve", lambda folder: free(folder, [readers.TMP_RESERVE + 2 * size]))
    assert len(items_of(packed)) == 2000 and len(looks) >= 3
    # too little room from the start: an error naming the file, before the disk is full
    monkeypatch.setattr(readers, "_RECHECK", 64 << 20)
    monkeypatch.setattr(readers, "free_and_reserve", lambda folder: free(folder, [readers.TMP_RESERVE + size // 2]))
    with pytest.raises(FatalError, match=rf"cannot read {re.escape(str(packed))}: it decompresses to more than the "):
        items_of(packed)
    assert readers.free_and_reserve(str(tmp_path))[1] <= readers.TMP_RESERVE  # a tenth of a smaller filesystem
    # the disk fills up while it is decompressed (another process): caught at the next look
    monkeypatch.setattr(readers, "_RECHECK", size // 3)
    left = [readers.TMP_RESERVE + 2 * size, 0]  # free bytes at the first look, then at every later one
    monkeypatch.setattr(readers, "free_and_reserve", lambda folder: free(folder, left))
    with pytest.raises(FatalError, match="Set TMPDIR to a folder on a larger disk, or store the file as plain Parquet"):
        items_of(packed)
