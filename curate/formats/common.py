"""What every shard writer shares: file hashing, shard names, and a shard's records with their tokens.

A shard's records are tokenized at most once (`Shard.tokenized`), however many tokenized formats are
configured: the rendered text of each record (see `curate.render`) is split at its training-target
spans, each piece is encoded with the pipeline's tiktoken encoding (special-token text is ordinary
text), and the encoding's end-of-text token is appended to every document.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from curate.arrow_arrays import list_array
from curate.render import apply_render, render_frame
from curate.tokens import encode_ordinary, get_encoding

if TYPE_CHECKING:
    from curate.config import OutputSection

_CHUNK = 1024  # text pieces per encoding task


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def shard_stem(split: str, number: int) -> str:
    """File name of a shard without its suffix: `<split>-<number:05d>` (e.g. `train-00000`)."""
    return f"{split}-{number:05d}"


def token_dtype(n_vocab: int) -> np.dtype:
    """uint16 where every token id fits, else uint32 (flat token files and MDS token columns)."""
    return np.dtype(np.uint16) if n_vocab <= 1 << 16 else np.dtype(np.uint32)


@dataclass
class Tokenized:
    """The documents of one shard as tokens: `tokens` (flat, uint32: tiktoken's ids as it returns them;
    every writer casts to its own file dtype), `offsets` (int64, documents + 1:
    document i is tokens[offsets[i]:offsets[i+1]], its last token the end-of-document token), `mask`
    (uint8 per token: 1 = training target), `texts` (the rendered text of each document)."""

    tokens: np.ndarray
    offsets: np.ndarray
    mask: np.ndarray
    texts: list[str]
    encoding: str
    eod: int
    n_vocab: int

    @property
    def documents(self) -> int:
        return len(self.offsets) - 1


def tokenize(
    records: pl.DataFrame, render: str, mask: str, encoding: str, threads: int = 4, frame: pl.DataFrame | None = None
) -> Tokenized:
    """Render and tokenize records (reads `kind`, `text`, `messages`) in order; `frame`: their
    `render_frame(records, render, mask)` when it is already computed."""
    enc = get_encoding(encoding)
    rendered = render_frame(records, render, mask) if frame is None else frame
    texts: list[str] = rendered["text"].to_list()
    pieces: list[str] = []
    targets: list[int] = []
    per_doc: list[int] = []
    for text, spans in zip(texts, rendered["spans"].to_list(), strict=True):
        at, count = 0, 0
        for span in spans:
            if span["start"] > at:
                pieces.append(text[at : span["start"]])
                targets.append(0)
                count += 1
            if span["end"] > span["start"]:
                pieces.append(text[span["start"] : span["end"]])
                targets.append(1)
                count += 1
            at = span["end"]
        if at < len(text):
            pieces.append(text[at:])
            targets.append(0)
            count += 1
        per_doc.append(count)

    def encode(chunk: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of a chunk of pieces as numpy arrays at once (Python int lists of a whole shard
        would take gigabytes): (piece lengths, flat ids)."""
        encoded = [encode_ordinary(enc, p) for p in chunk]
        lengths = np.fromiter((len(ids) for ids in encoded), dtype=np.int64, count=len(encoded))
        return lengths, (np.concatenate(encoded) if encoded else np.zeros(0, dtype=np.uint32))

    chunks = [pieces[i : i + _CHUNK] for i in range(0, len(pieces), _CHUNK)]
    with ThreadPoolExecutor(max(1, min(threads, len(chunks)))) as pool:
        parts = list(pool.map(encode, chunks))
    del pieces, chunks
    eod = enc.eot_token
    lengths = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    flat = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, dtype=np.uint32)
    del parts
    flat_mask = np.repeat(np.array(targets, dtype=np.uint8), lengths)
    doc_of_piece = np.repeat(np.arange(len(per_doc)), per_doc)
    content = np.bincount(doc_of_piece, weights=lengths, minlength=len(per_doc)).astype(np.int64)
    ends = np.cumsum(content)
    tokens = np.insert(flat, ends, eod)  # the end-of-document token after each document
    mask_out = np.insert(flat_mask, ends, 1)  # ... is a target: the model learns to stop
    offsets = np.zeros(len(per_doc) + 1, dtype=np.int64)
    np.cumsum(content + 1, out=offsets[1:])
    return Tokenized(tokens, offsets, mask_out, texts, encoding, eod, enc.n_vocab)


TOKEN_COLUMNS = ("_tokens", "_token_mask", "_token_text")  # one document's tokens, mask and text per record


def token_columns(tok: Tokenized, with_text: bool) -> list[pl.Series]:
    """A tokenized frame as columns, one row per document (`_tokens`: its ids with the end-of-document
    token, `_token_mask`, and `_token_text`, its rendered text, when `with_text`: only needed where
    the records' `text` is not that text, i.e. with `render = "messages"`), so documents can be
    tokenized where they are (one task per batch file) and gathered into shards later."""
    columns = [
        pl.Series(TOKEN_COLUMNS[0], list_array(tok.offsets, tok.tokens.astype(np.uint32, copy=False), large=True)),
        pl.Series(TOKEN_COLUMNS[1], list_array(tok.offsets, tok.mask.astype(np.uint8, copy=False), large=True)),
    ]
    if with_text:
        columns.append(pl.Series(TOKEN_COLUMNS[2], tok.texts, dtype=pl.String))
    return columns


def tokenized_from_columns(records: pl.DataFrame, encoding: str) -> Tokenized:
    """The `Tokenized` of rendered records that carry `token_columns` (in their order): equal to
    tokenizing the records together, since every document is tokenized on its own. The texts come from
    `_token_text` when present, else from the rendered records' `text`."""
    enc = get_encoding(encoding)
    lengths = records[TOKEN_COLUMNS[0]].list.len().to_numpy().astype(np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = records[TOKEN_COLUMNS[0]].explode().to_numpy().astype(np.uint32, copy=False)
    mask = records[TOKEN_COLUMNS[1]].explode().to_numpy().astype(np.uint8, copy=False)
    texts = records[TOKEN_COLUMNS[2] if TOKEN_COLUMNS[2] in records.columns else "text"].to_list()
    return Tokenized(tokens, offsets, mask, texts, encoding, enc.eot_token, enc.n_vocab)


@dataclass
class Shard:
    """One shard to write: its records (output order, public columns; not rendered, unless `_rendered`
    is given, and then `_tokens` too where a tokenized format is configured), split and number, the
    output settings and the pipeline's encoding; `rendered()` and `tokenized()` are computed once and
    shared by the formats."""

    records: pl.DataFrame
    split: str
    number: int
    output: OutputSection
    encoding: str
    _tokens: Tokenized | None = field(default=None, repr=False)
    _rendered: pl.DataFrame | None = field(default=None, repr=False)

    @property
    def stem(self) -> str:
        return shard_stem(self.split, self.number)

    def rendered(self) -> pl.DataFrame:
        """The records as record shards hold them (`apply_render`)."""
        if self._rendered is None:
            self._rendered = apply_render(self.records, self.output.render).rechunk()
        return self._rendered

    def tokenized(self) -> Tokenized:
        if self._tokens is None:
            self._tokens = tokenize(self.records, self.output.render, self.output.mask, self.encoding)
        return self._tokens
