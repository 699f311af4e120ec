"""`decontaminate`: drop training records that share a word n-gram with an evaluation set."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl

from curate.errors import ConfigError, FatalError
from curate.params import below_minimum, param
from curate.record import training_text
from curate.stages.base import DROP, Context, MapStep, Stage, mark

EVAL_KEYS = ("name", "path", "format", "fields", "text_field", "txt_mode")


def words(text: pl.Expr) -> pl.Expr:
    """Normalized words: lower case, runs of non-letter/digit characters are separators."""
    return (
        text.str.to_lowercase()
        .str.replace_all(r"[^\w]+", " ")
        .str.strip_chars()
        .str.split(" ")
        .list.eval(pl.element().filter(pl.element() != ""))
    )


def ngram_hashes(word_lists: pl.Series, n: int) -> pl.Series:
    """Per record, the 64-bit hashes of its word n-grams (none for records with fewer than n words)."""
    grams = [
        [" ".join(ws[i : i + n]) for i in range(len(ws) - n + 1)] if len(ws) >= n else [] for ws in word_lists.to_list()
    ]
    frame = pl.DataFrame({"g": grams}, schema={"g": pl.List(pl.String)})
    return frame.select(pl.col("g").list.eval(pl.element().hash(seed=0)))["g"]


@dataclass(frozen=True)
class EvalIndex:
    """The n-gram hashes of every eval set, by length (items shorter than `ngram` count whole)."""

    names: tuple[str, ...]
    by_length: dict[int, tuple[np.ndarray, np.ndarray]] = field(hash=False, compare=False)  # sorted hashes, owner


@functools.cache
def load_index(evals: tuple[tuple[tuple[str, Any], ...], ...], base: str, ngram: int, stamps: str) -> EvalIndex:
    """Read the eval sets once per process (per version of their files: `stamps`) and index their n-grams."""
    from curate.api import read_source

    names, per_length = [], {}
    for number, entry in enumerate(evals):
        table = dict(entry)
        names.append(table["name"])
        options = {k: dict(v) if k == "fields" else v for k, v in table.items() if k not in ("name", "path")}
        try:
            records = read_source(table["path"], name="eval", base_dir=base, **options)
        except ConfigError as exc:
            problems = [p.removeprefix("sources[0].") for p in exc.problems]
            found = "; ".join(problems)
            if all(p.startswith("path: not found") for p in problems):  # seen where the config was read
                raise FatalError(
                    f"decontaminate eval set {table['name']!r} cannot be read here ({found}); the config was checked "
                    "where it was loaded, so this worker does not see the file: with the ray executor, keep eval "
                    "sets on storage every node mounts at the same path"
                ) from exc
            raise FatalError(f"decontaminate eval set {table['name']!r}: {found}") from exc
        word_lists = records.select(words(training_text().fill_null("")).alias("w"))["w"]
        lengths = word_lists.list.len().to_numpy()
        for n in sorted({min(int(x), ngram) for x in lengths if x > 0}):
            chosen = word_lists.filter(pl.Series(np.minimum(lengths, ngram) == n))
            hashes = ngram_hashes(chosen, n).explode().drop_nulls().to_numpy()
            old_h, old_o = per_length.get(n, (np.empty(0, np.uint64), np.empty(0, np.int64)))
            per_length[n] = (np.r_[old_h, hashes], np.r_[old_o, np.full(len(hashes), number)])
    index = {}
    for n, (hashes, owner) in per_length.items():
        order = np.lexsort((owner, hashes))  # by hash, then eval order: the first eval set wins
        index[n] = (hashes[order], owner[order])
    return EvalIndex(tuple(names), index)


@dataclass
class Decontaminate(Stage, MapStep):
    """Drop records overlapping evaluation sets. Reads `text`/`messages`; drops rows with reason
    `contaminated:<eval name>`.

    A record is contaminated when it shares a word n-gram (`ngram` words, default 13 as in the GPT-3
    paper) with an item of an eval set, after normalization (lower case; punctuation and white space
    are word separators). An eval item shorter than `ngram` words counts as one n-gram of its whole
    text. Both sides use the training text (document, or all message contents). `eval` lists the sets
    like sources: `{name, path, format, fields, text_field, txt_mode}`; paths are relative to the
    config file. The manifest counts contaminated records per eval set.
    """

    name: ClassVar[str] = "decontaminate"
    reads: ClassVar[tuple[str, ...]] = ("text", "messages", "kind")
    drops_rows: ClassVar[bool] = True

    eval: list[dict[str, Any]] = param(factory=list, doc="eval sets: [{name, path, format, fields}, ...]")
    ngram: int = param(13, "words per n-gram")
    _base: str = field(default="", repr=False)  # the config file's folder (eval paths are relative to it)

    def problems(self, where: str) -> list[str]:
        from curate.config import SOURCE_NAME

        out = []
        out += below_minimum(where, self, ngram=1)
        if not self.eval:
            out.append(f"{where}.eval: name at least one eval set, e.g. [{{name = 'gsm8k_test', path = '...'}}]")
        seen: set[str] = set()
        for i, entry in enumerate(self.eval):
            unknown = sorted(set(entry) - set(EVAL_KEYS))
            if unknown:
                out.append(f"{where}.eval[{i}]: unknown keys {unknown}; use {', '.join(EVAL_KEYS)}")
            name, path = entry.get("name"), entry.get("path")
            if not isinstance(name, str) or not SOURCE_NAME.match(name):
                out.append(f"{where}.eval[{i}].name: required, [a-z0-9_-]+")
            elif name in seen:
                out.append(f"{where}.eval[{i}].name: {name!r} is used twice")
            else:
                seen.add(name)
            if not isinstance(path, str):
                out.append(f"{where}.eval[{i}].path: required (a file, folder or glob)")
            elif not self._files(path):
                out.append(f"{where}.eval[{i}].path: not found: {path!r} (relative to {self._folder})")
        return out

    def bind(self, base: Path) -> None:
        """Eval paths are relative to the config file's folder."""
        self._base = str(base)

    @property
    def _folder(self) -> Path:
        return Path(self._base) if self._base else Path.cwd()

    def _files(self, path: str) -> list[Path]:
        from curate.ingest.files import resolve_paths

        return resolve_paths(path, self._folder, urls=False)  # eval sets are local files

    def _stamps(self) -> str:
        """Path, size and modification time of every eval file."""
        stamps = [
            (str(f), f.stat().st_size, f.stat().st_mtime_ns)
            for entry in self.eval
            if isinstance(entry.get("path"), str)
            for f in self._files(entry["path"])
        ]
        return repr(stamps)

    def fingerprint(self) -> str:
        """Parameters plus the eval files' stamps: editing an eval set re-runs the stage."""
        return f"{super().fingerprint()}{self._stamps()}"

    def apply(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        evals = tuple(tuple(sorted(e.items(), key=lambda kv: kv[0])) for e in self.eval)
        frozen = tuple(tuple((k, tuple(sorted(v.items())) if isinstance(v, dict) else v) for k, v in e) for e in evals)
        index = load_index(frozen, str(self._folder), self.ngram, self._stamps())
        word_lists = df.select(words(training_text().fill_null("")).alias("w"))["w"]
        hit = np.full(df.height, -1, dtype=np.int64)
        for n, (hashes, owner) in sorted(index.by_length.items()):
            grams = ngram_hashes(word_lists, n)
            flat = grams.explode()
            rows = np.repeat(np.arange(df.height), grams.list.len().to_numpy())
            values = flat.drop_nulls().to_numpy()
            position = np.searchsorted(hashes, values)
            found = position < len(hashes)
            found[found] &= hashes[position[found]] == values[found]
            for row, pos in zip(rows[found], position[found], strict=True):
                eval_number = owner[pos]
                if hit[row] < 0 or eval_number < hit[row]:
                    hit[row] = eval_number
        reasons = [f"contaminated:{index.names[h]}" if h >= 0 else None for h in hit]
        return mark(df, DROP, pl.lit(pl.Series("reason", reasons, dtype=pl.String)))
