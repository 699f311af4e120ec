"""`curate verify OUT`: recompute an output folder's checksums, counts and shares against its manifest.

Every shard file listed in `manifest.json` is hashed and read back with its format's reader, one file
at a time and in bounded chunks (memory does not grow with the output). The recomputed record and
token counts are compared with the shard's manifest row; per format, the records and tokens of every
source (and group) are summed over all shards and compared with the manifest's per-source figures and
realized shares; `ledger.parquet` must account for every input record (in = kept + dropped +
quarantined per source) and its `times_sampled` must add up to the records in the shards. Every
difference is collected, none stops the check.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from curate.errors import CurateError
from curate.output import sha256_file

_CHUNK = 1 << 22  # bytes read per step
_READ_ERRORS = (OSError, ValueError, zstandard.ZstdError, pl.exceptions.PolarsError, pa.ArrowException)
SHARE_TOLERANCE = 0.001  # the mixture's exactness rule: 0.1% of the total tokens (or one record)


class NotAnOutput(CurateError):
    """The folder given to `verify` is not a curate output (usage error, exit 2)."""

    exit_code = 2


@dataclass
class Counts:
    """Records and tokens of a file (or of several), in total and per source."""

    records: int = 0
    tokens: int = 0
    by_source: dict[str, list[int]] = field(default_factory=dict)  # source -> [records, tokens, largest]

    def add_frame(self, df: pl.DataFrame) -> None:
        """Count a chunk of records with `source` and `n_tokens` columns."""
        self.records += df.height
        self.tokens += int(df["n_tokens"].sum() or 0)
        parts = df.group_by("source").agg(pl.len(), pl.col("n_tokens").sum().alias("t"), pl.col("n_tokens").max())
        for source, n, tokens, largest in parts.iter_rows():
            line = self.by_source.setdefault(source, [0, 0, 0])
            line[0] += n
            line[1] += int(tokens or 0)
            line[2] = max(line[2], int(largest or 0))

    def merge(self, other: Counts) -> None:
        self.records += other.records
        self.tokens += other.tokens
        for source, (n, tokens, largest) in other.by_source.items():
            line = self.by_source.setdefault(source, [0, 0, 0])
            line[0] += n
            line[1] += tokens
            line[2] = max(line[2], largest)


@dataclass
class VerifyResult:
    """What `curate.verify` returns: every difference found (empty when the output matches)."""

    output: Path
    differences: list[str] = field(default_factory=list)
    files: int = 0
    formats: dict[str, Counts] = field(default_factory=dict)
    ledger_records: int = 0

    @property
    def ok(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        """One line: everything matches, or how many differences."""
        records = max((c.records for c in self.formats.values()), default=0)
        tokens = max((c.tokens for c in self.formats.values()), default=0)
        seen = (
            f"{self.files} shard file(s) in {len(self.formats)} format(s), {records:,} records, {tokens:,} tokens"
            f" per format, ledger of {self.ledger_records:,} records"
        )
        if self.ok:
            return f"OK: {self.output}: {seen}; everything matches manifest.json"
        n = len(self.differences)
        return f"FAILED: {self.output}: {n} difference{'s' if n != 1 else ''} from manifest.json ({seen})"


def verify(out: str | Path) -> VerifyResult:
    """Check the output folder `out` against its `manifest.json`; raises NotAnOutput for a folder
    that is not a curate output."""
    folder = Path(out).expanduser()
    if not folder.is_dir():
        raise NotAnOutput(f"{folder} is not a folder; give the output folder of a curate build")
    if not (folder / "manifest.json").is_file():
        raise NotAnOutput(f"{folder} is not a curate output: it has no manifest.json")
    result = VerifyResult(folder)
    diffs = result.differences
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        diffs.append(f"manifest.json: cannot be read: {exc}")
        return result
    missing = [k for k in ("shards", "sources", "totals") if not isinstance(manifest, dict) or k not in manifest]
    if missing:
        diffs.append(f"manifest.json: no {', '.join(missing)} (edited, or not written by curate?)")
        return result
    _check_shards(folder, manifest, result)
    _check_mixture(manifest, result)
    _check_ledger(folder, manifest, result)
    _check_quarantine(folder, manifest, diffs)
    return result


def _check_shards(folder: Path, manifest: dict[str, Any], result: VerifyResult) -> None:
    """Hash and read every listed shard; flag missing and unlisted files."""
    diffs = result.differences
    listed = set()
    for row in manifest["shards"]:
        rel, fmt = row.get("path", "?"), row.get("format", "?")
        listed.add(rel)
        path = folder / rel
        result.formats.setdefault(fmt, Counts())
        if not path.exists():
            diffs.append(f"{rel}: missing (deleted?); manifest says {row.get('records', 0):,} records")
            continue
        result.files += 1
        if path.is_file() and sha256_file(path) != row.get("sha256"):
            diffs.append(f"{rel}: sha256 differs (file edited?)")
        try:
            counts = read_counts(path, fmt)
        except UnknownFormat:
            diffs.append(f"{rel}: verify has no reader for format {fmt!r}")
            continue
        except _READ_ERRORS as exc:
            diffs.append(f"{rel}: cannot be read as {fmt}: {exc} (truncated or corrupted?)")
            continue
        result.formats[fmt].merge(counts)
        if counts.records != row.get("records"):
            hint = "truncated?" if counts.records < (row.get("records") or 0) else "records added?"
            diffs.append(f"{rel}: {counts.records:,} records, manifest says {row.get('records')} ({hint})")
        if counts.tokens != row.get("tokens"):
            diffs.append(f"{rel}: {counts.tokens:,} tokens, manifest says {row.get('tokens')}")
    shards = folder / "shards"
    for path in sorted(shards.rglob("*")) if shards.is_dir() else []:
        rel = path.relative_to(folder).as_posix()
        covered = rel in listed or any(p.as_posix() in listed for p in PurePosixPath(rel).parents)
        if path.is_file() and not covered:
            diffs.append(f"{rel}: not listed in manifest.json (extra file?)")


def _check_mixture(manifest: dict[str, Any], result: VerifyResult) -> None:
    """Per format: totals, per-source records/tokens and realized shares against the manifest."""
    diffs = result.differences
    totals = manifest["totals"]
    for fmt, counts in result.formats.items():
        if counts.records != totals.get("records_out"):
            diffs.append(
                f"{fmt} shards: {counts.records:,} records in all, manifest totals say {totals.get('records_out')}"
            )
        if counts.tokens != totals.get("tokens_out"):
            diffs.append(
                f"{fmt} shards: {counts.tokens:,} tokens in all, manifest totals say {totals.get('tokens_out')}"
            )
        for source, line in manifest["sources"].items():
            n, tokens, _ = counts.by_source.get(source, [0, 0, 0])
            if n != line.get("records_out"):
                diffs.append(f"{fmt} shards: source {source}: {n:,} records, manifest says {line.get('records_out')}")
            if tokens != line.get("tokens_out"):
                diffs.append(
                    f"{fmt} shards: source {source}: {tokens:,} tokens, manifest says {line.get('tokens_out')}"
                )
            share = round(tokens / counts.tokens, 6) if counts.tokens else 0.0
            if abs(share - (line.get("realized_share") or 0.0)) > 1e-6:
                diffs.append(
                    f"{fmt} shards: source {source}: realized share {share:.6f}, "
                    f"manifest says {line.get('realized_share')}"
                )
        for source in sorted(set(counts.by_source) - set(manifest["sources"])):
            diffs.append(
                f"{fmt} shards: {counts.by_source[source][0]:,} records of source {source!r}, not in the manifest"
            )
        if manifest.get("mixture"):
            diffs += _off_target(fmt, counts, manifest["mixture"])


def _off_target(fmt: str, counts: Counts, mixture: dict[str, Any]) -> list[str]:
    """Sources whose tokens miss the plan's target by more than 0.1% of the total and more than their
    largest record (the mixture's exactness rule)."""
    problems = []
    total = mixture.get("total_tokens") or 0
    for line in mixture.get("sources") or []:
        if "target_tokens" not in line or "source" not in line:
            continue
        _, tokens, largest = counts.by_source.get(line["source"], [0, 0, 0])
        gap = abs(tokens - line["target_tokens"])
        if gap > SHARE_TOLERANCE * total and gap > largest:
            problems.append(
                f"{fmt} shards: source {line['source']}: {tokens:,} tokens, {gap:,} off the planned "
                f"{line['target_tokens']:,} (more than 0.1% of the total and more than its largest record)"
            )
    return problems


def _check_ledger(folder: Path, manifest: dict[str, Any], result: VerifyResult) -> None:
    """ledger.parquet: in = kept + dropped + quarantined per source; times_sampled = shard records."""
    diffs = result.differences
    path = folder / manifest.get("ledger", "ledger.parquet")
    if not path.is_file():
        diffs.append(f"{path.name}: missing (deleted?)")
        return
    try:
        per_source = (
            pl.scan_parquet(path)
            .group_by("source", "status")
            .agg(pl.len().alias("n"), pl.col("times_sampled").sum().alias("sampled"), pl.col("times_sampled").min())
            .collect()
        )
    except _READ_ERRORS as exc:
        diffs.append(f"{path.name}: cannot be read: {exc} (truncated or corrupted?)")
        return
    result.ledger_records = int(per_source["n"].sum())
    if result.ledger_records != manifest["totals"].get("records_in"):
        diffs.append(
            f"{path.name}: {result.ledger_records:,} records, "
            f"manifest totals say {manifest['totals'].get('records_in')} records in"
        )
    table: dict[str, dict[str, int]] = {}
    for row in per_source.iter_rows(named=True):
        line = table.setdefault(row["source"], {"sampled": 0})
        line[row["status"]] = row["n"]
        line["sampled"] += int(row["sampled"] or 0)
        if row["status"] not in ("kept", "dropped", "quarantined"):
            diffs.append(
                f"{path.name}: source {row['source']}: {row['n']:,} rows with unknown status {row['status']!r}"
            )
        elif row["status"] != "kept" and row["sampled"]:
            diffs.append(f"{path.name}: source {row['source']}: {row['status']} records have times_sampled > 0")
        elif row["status"] == "kept" and row["times_sampled"] < 1:
            diffs.append(f"{path.name}: source {row['source']}: kept records with times_sampled 0")
    for source in sorted(set(table) | set(manifest["sources"])):
        line, m = table.get(source, {"sampled": 0}), manifest["sources"].get(source, {})
        got = {
            "records_in": sum(v for k, v in line.items() if k != "sampled"),
            "records_kept": line.get("kept", 0),
            "records_dropped": line.get("dropped", 0),
            "records_quarantined": line.get("quarantined", 0),
            "records_out": line["sampled"],
        }
        for key, value in got.items():
            if value != m.get(key):
                what = "times_sampled sum" if key == "records_out" else key.removeprefix("records_") + " records"
                diffs.append(f"{path.name}: source {source}: {value:,} {what}, manifest says {m.get(key)}")
        for fmt, counts in result.formats.items():
            shard_records = counts.by_source.get(source, [0, 0, 0])[0]
            if shard_records != line["sampled"]:
                diffs.append(
                    f"{path.name}: source {source}: times_sampled sums to {line['sampled']:,}, "
                    f"{fmt} shards hold {shard_records:,}"
                )


def _check_quarantine(folder: Path, manifest: dict[str, Any], diffs: list[str]) -> None:
    """Each listed quarantine file exists and has one line per quarantined record of its source."""
    for line in manifest["sources"].values():
        rel = line.get("quarantine_file")
        if not rel:
            continue
        path = folder / rel
        if not path.is_file():
            diffs.append(f"{rel}: missing (deleted?)")
            continue
        with open(path, "rb") as fh:
            n = sum(1 for _ in fh)
        if n != line.get("records_quarantined"):
            diffs.append(f"{rel}: {n:,} lines, manifest says {line.get('records_quarantined')} quarantined records")


# ---------------------------------------------------------------- reading shards back


class UnknownFormat(Exception):
    """No reader for a shard format."""


def read_counts(path: Path, fmt: str) -> Counts:
    """Records and tokens (sum of `n_tokens`) of one shard file, read in bounded chunks."""
    counts = Counts()
    if fmt == "parquet":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536):
            counts.add_frame(pl.from_arrow(batch).select("source", "n_tokens"))
    elif fmt in ("jsonl", "jsonl.zst"):
        for lines in _jsonl_chunks(path, compressed=fmt == "jsonl.zst"):
            counts.add_frame(lines)
    else:
        raise UnknownFormat(fmt)
    return counts


def _raw_chunks(path: Path, compressed: bool) -> Iterator[bytes]:
    """The file's (decompressed) bytes in chunks; a zstd stream that stops inside a frame is an error."""
    with open(path, "rb") as fh:
        if not compressed:
            while chunk := fh.read(_CHUNK):
                yield chunk
            return
        decoder = None  # None between frames (a file may hold several concatenated frames)
        while chunk := fh.read(_CHUNK):
            while chunk:
                decoder = decoder or zstandard.ZstdDecompressor().decompressobj()
                yield decoder.decompress(chunk)
                chunk = b""
                if decoder.eof:
                    chunk, decoder = decoder.unused_data, None
        if decoder is not None:
            raise zstandard.ZstdError("the zstd stream ends inside a frame")


def _jsonl_chunks(path: Path, compressed: bool) -> Iterator[pl.DataFrame]:
    """`source` and `n_tokens` of every line, as frames of up to a chunk's worth of lines."""
    rest, number = b"", 0
    for chunk in _raw_chunks(path, compressed):
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        rest = data[cut:]
        if cut:
            frame, number = _parse_lines(data[:cut], number), number + data.count(b"\n", 0, cut)
            yield frame
    if rest:
        raise ValueError(f"line {number + 1}: no final newline (truncated?)")


def _parse_lines(data: bytes, before: int) -> pl.DataFrame:
    sources, tokens = [], []
    for i, line in enumerate(data.split(b"\n")[:-1], start=before + 1):
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"line {i}: not valid JSON ({exc})") from exc
        if not isinstance(row, dict) or not isinstance(row.get("n_tokens"), int):
            raise ValueError(f"line {i}: not a record with an integer n_tokens")
        sources.append(row.get("source"))
        tokens.append(row["n_tokens"])
    return pl.DataFrame({"source": sources, "n_tokens": tokens}, schema={"source": pl.String, "n_tokens": pl.Int64})
