"""`curate verify OUT`: recompute an output folder's checksums, counts and shares against its manifest.

Every file a manifest shard row names (and its companion `files`) is hashed, and the shard is read back
with its format's reader, one file at a time and in bounded chunks for record shards (memory does not
grow with the output). Compared with the manifest:

- each row's records and tokens (tokenized formats: the documents and tokens in the file itself);
- per format and split, the totals (`splits`, `totals`; tokenized formats: documents only);
- per record format (`jsonl`, `jsonl.zst`, `parquet`): each source's training records, tokens and
  realized share, its validation records and tokens, and with a mixture the plan's realized tokens
  and shares per source and, from the Parquet shards (which hold every column a group condition can
  name), per group and per (group, source) cell; each recomputed share must also meet the mixture's
  exactness rule (within the manifest's `share_error_bound`, each cell within half a record);
- `ledger.parquet`: per source in = kept + dropped + quarantined as in the manifest, and the
  `times_sampled` sums per split equal to the records in the shards; quarantine files line counts;
- every other file the manifest's `checksums` lists (the ledger, quarantine, stage reports, the trainers'
  index files `hf/dataset_dict.json`, MDS `index.json`, Megatron `data_path*.txt`): its sha256.

Every difference is collected (none stops the check) as "<file or part>: <what differs>".
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import polars as pl
import pyarrow as pa
import zstandard

from curate.errors import CurateError
from curate.expr import ExprError
from curate.formats import RECORD_FORMATS, TOKENIZED, sha256_file
from curate.formats.hf import tree_sha256
from curate.verify_read import Counts, GroupRule, read_counts

_READ_ERRORS = (
    OSError,
    ValueError,
    KeyError,
    struct.error,
    zstandard.ZstdError,
    pl.exceptions.PolarsError,
    pa.ArrowException,
)  # what the format readers raise on a damaged file


class NotAnOutput(CurateError):
    """The folder given to `verify` is not a curate output (usage error, exit 2)."""

    exit_code = 2


@dataclass
class VerifyResult:
    """What `curate.verify` returns: every difference found (empty when the output matches)."""

    output: Path
    differences: list[str] = field(default_factory=list)
    files: int = 0
    counts: dict[str, dict[str, Counts]] = field(default_factory=dict)  # format -> split -> counts
    ledger_records: int = 0
    unreadable: dict[str, int] = field(default_factory=dict)  # format -> shard files missing or unreadable

    @property
    def ok(self) -> bool:
        return not self.differences

    def total(self, fmt: str) -> Counts:
        """A format's counts over every split."""
        total = Counts()
        for counts in self.counts.get(fmt, {}).values():
            total.add(counts)
        return total

    def summary(self) -> str:
        """One line: everything matches, or how many differences."""
        records = max((self.total(f).records for f in self.counts), default=0)
        seen = (
            f"{self.files} shard file(s) in {len(self.counts)} format(s), {records:,} records per format, "
            f"ledger of {self.ledger_records:,} records"
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
    _check_totals(manifest, result)
    for fmt, n in result.unreadable.items():  # their per-source figures would only repeat that
        diffs.append(
            f"{fmt} shards: per-source, mixture and ledger figures not compared ({n} file(s) missing or unreadable)"
        )
    for fmt in RECORD_FORMATS:
        if fmt in result.counts and fmt not in result.unreadable:
            _check_sources(fmt, manifest, result)
            if manifest.get("mixture"):
                _check_mixture(fmt, manifest["mixture"], result)
    _check_ledger(folder, manifest, result)
    _check_quarantine(folder, manifest, diffs)
    _check_other_files(folder, manifest, diffs)
    return result


def _check_other_files(folder: Path, manifest: dict[str, Any], diffs: list[str]) -> None:
    """The files beside the shards (`checksums`: the ledger, reports, trainers' index files) against
    their sha256 (a manifest written before curate listed them has none)."""
    checksums = manifest.get("checksums") or {}
    if not isinstance(checksums, dict):
        diffs.append("manifest.json: checksums is not a table of files (edited?)")
        return
    for rel, digest in checksums.items():
        if not _inside(rel):
            diffs.append(f"{rel}: outside the output folder (manifest edited?)")
        else:
            _check_digest(folder, rel, digest, diffs)


def _check_digest(folder: Path, rel: str, digest: Any, diffs: list[str]) -> None:
    """A file the manifest lists with its sha256: there, and with that digest."""
    if not (folder / rel).is_file():
        diffs.append(f"{rel}: missing (deleted?)")
    elif sha256_file(folder / rel) != digest:
        diffs.append(f"{rel}: sha256 differs (file edited?)")


def _num(value: Any) -> str:
    """A manifest value in a message: integers with thousands separators, anything else as it is."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else repr(value)


def _differs(diffs: list[str], where: str, what: str, got: int, expected: Any) -> None:
    if got != expected:
        diffs.append(f"{where}: {got:,} {what}, manifest says {_num(expected)}")


# ---------------------------------------------------------------- shards


def _check_shards(folder: Path, manifest: dict[str, Any], result: VerifyResult) -> None:
    """Hash and read every listed shard and companion file; flag missing and unlisted files."""
    diffs = result.differences
    group = _group_rule(manifest.get("mixture"))
    listed: set[str] = set()
    for number, row in enumerate(manifest["shards"]):
        if not isinstance(row, dict) or not isinstance(row.get("path"), str):
            diffs.append(f"manifest.json: shards[{number}] is not a shard row with a path (edited?)")
            continue
        rel, fmt, split = row["path"], str(row.get("format", "?")), str(row.get("split", "train"))
        companions = row.get("files") if isinstance(row.get("files"), dict) else {}
        listed |= {rel, *companions}
        if not all(_inside(p) for p in (rel, *companions)):
            diffs.append(f"{rel}: outside the output folder (manifest edited?)")
            continue
        counts = result.counts.setdefault(fmt, {}).setdefault(split, Counts())
        path = folder / rel
        if not path.exists():
            diffs.append(f"{rel}: missing (deleted?); manifest says {_num(row.get('records'))} records")
            result.unreadable[fmt] = result.unreadable.get(fmt, 0) + 1
            continue
        result.files += 1
        if (tree_sha256(path) if path.is_dir() else sha256_file(path)) != row.get("sha256"):
            diffs.append(f"{rel}: sha256 differs (file edited?)")
        for other, digest in companions.items():
            _check_digest(folder, other, digest, diffs)
        try:
            found = read_counts(path, fmt, group if fmt == "parquet" else None)
        except ExprError as exc:
            diffs.append(f"{rel}: a mixture group's condition cannot be evaluated on the shard: {exc}")
            result.unreadable[fmt] = result.unreadable.get(fmt, 0) + 1
            continue
        except _READ_ERRORS as exc:
            diffs.append(f"{rel}: cannot be read as {fmt}: {exc} (truncated or corrupted?)")
            result.unreadable[fmt] = result.unreadable.get(fmt, 0) + 1
            continue
        counts.add(found)
        expected = row.get("records")
        if found.records != expected:
            hint = "truncated?" if isinstance(expected, int) and found.records < expected else "records added?"
            diffs.append(f"{rel}: {found.records:,} records, manifest says {_num(expected)} ({hint})")
        _differs(diffs, rel, "tokens", found.tokens, row.get("tokens"))
    shards = folder / "shards"
    for path in sorted(shards.rglob("*")) if shards.is_dir() else []:
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel not in listed:
            diffs.append(f"{rel}: not listed in manifest.json (extra file?)")


def _inside(rel: str) -> bool:
    path = PurePosixPath(rel)
    return not path.is_absolute() and ".." not in path.parts


def _group_rule(mixture: dict[str, Any] | None) -> GroupRule | None:
    """The groups' definitions from the manifest's plan (named groups in order, and the rest group)."""
    groups = (mixture or {}).get("groups") or []
    named = [(g["group"], g.get("definition") or {}) for g in groups if not (g.get("definition") or {}).get("rest")]
    rest = next((g["group"] for g in groups if (g.get("definition") or {}).get("rest")), None)
    return (named, rest) if groups else None


# ---------------------------------------------------------------- totals, sources, mixture


def _check_totals(manifest: dict[str, Any], result: VerifyResult) -> None:
    """Per format: all splits against `totals`, each split against `splits` (tokenized: documents only)."""
    diffs, totals, splits = result.differences, manifest["totals"], manifest.get("splits") or {}
    for fmt, per_split in result.counts.items():
        whole = result.total(fmt)
        _differs(diffs, f"{fmt} shards", "records in all", whole.records, totals.get("records_out"))
        if fmt not in TOKENIZED:
            _differs(diffs, f"{fmt} shards", "tokens in all", whole.tokens, totals.get("tokens_out"))
        for split in sorted(set(per_split) | set(splits)):
            counts, expected = per_split.get(split, Counts()), splits.get(split)
            if expected is None:
                if splits:
                    diffs.append(f"{fmt} shards: split {split!r} is not in the manifest's splits")
                continue
            _differs(diffs, f"{fmt} shards, {split}", "records", counts.records, expected.get("records"))
            if fmt not in TOKENIZED:
                _differs(diffs, f"{fmt} shards, {split}", "tokens", counts.tokens, expected.get("tokens"))


def _check_sources(fmt: str, manifest: dict[str, Any], result: VerifyResult) -> None:
    """Per source: training records, tokens and realized share; validation records and tokens."""
    diffs = result.differences
    train = result.counts[fmt].get("train", Counts())
    held = result.counts[fmt].get("validation", Counts())
    for source, line in manifest["sources"].items():
        where = f"{fmt} shards: source {source}"
        n, tokens = train.by_source.get(source, [0, 0])
        _differs(diffs, where, "records", n, line.get("records_out"))
        _differs(diffs, where, "tokens", tokens, line.get("tokens_out"))
        share = round(tokens / train.tokens, 6) if train.tokens else 0.0
        if abs(share - (line.get("realized_share") or 0.0)) > 1e-6:
            diffs.append(f"{where}: realized share {share:.6f}, manifest says {_num(line.get('realized_share'))}")
        n, tokens = held.by_source.get(source, [0, 0])
        if n or "validation_records" in line:
            _differs(diffs, where, "validation records", n, line.get("validation_records"))
            _differs(diffs, where, "validation tokens", tokens, line.get("validation_tokens"))
    for split, counts in result.counts[fmt].items():
        for source in sorted(set(counts.by_source) - set(manifest["sources"])):
            diffs.append(f"{fmt} shards, {split}: {counts.by_source[source][0]:,} records of unknown source {source!r}")


def _check_mixture(fmt: str, mixture: dict[str, Any], result: VerifyResult) -> None:
    """The plan's realized tokens and shares per source (and group and cell), and the exactness rule."""
    diffs = result.differences
    train = result.counts[fmt].get("train", Counts())
    bound = (mixture.get("exactness") or {}).get("share_error_bound")
    for line in mixture.get("sources") or []:
        where = f"{fmt} shards: mixture source {line.get('source')}"
        tokens = train.by_source.get(line.get("source"), [0, 0])[1]
        if "realized_tokens" in line:
            _differs(diffs, where, "tokens", tokens, line["realized_tokens"])
        share = tokens / train.tokens if train.tokens else 0.0
        if "realized_share" in line and abs(round(share, 6) - line["realized_share"]) > 1e-6:
            diffs.append(f"{where}: realized share {share:.6f}, manifest says {_num(line['realized_share'])}")
        if bound is not None and "target_share" in line and abs(share - line["target_share"]) > bound + 1e-6:
            diffs.append(
                f"{where}: realized share {share:.4%} misses the target {line['target_share']:.4%} by more "
                f"than the exactness bound {bound:.4%}"
            )
    if fmt != "parquet" or train.by_cell is None:
        return
    cells = train.by_cell
    for line in mixture.get("groups") or []:
        where = f"{fmt} shards: mixture group {line.get('group')}"
        tokens = sum(t for (g, _), t in cells.items() if g == line.get("group"))
        _differs(diffs, where, "tokens", tokens, line.get("realized_tokens"))
        share = tokens / train.tokens if train.tokens else 0.0
        if "realized_share" in line and abs(round(share, 6) - line["realized_share"]) > 1e-6:
            diffs.append(f"{where}: realized share {share:.6f}, manifest says {_num(line['realized_share'])}")
    for line in mixture.get("cells") or []:
        where = f"{fmt} shards: mixture group {line.get('group')}, source {line.get('source')}"
        tokens = cells.get((line.get("group"), line.get("source")), 0)
        _differs(diffs, where, "tokens", tokens, line.get("realized_tokens"))
        slack = (line.get("max_record_tokens") or 0) / 2 + 1
        if "target_tokens" in line and abs(tokens - line["target_tokens"]) > slack:
            diffs.append(
                f"{where}: {tokens:,} tokens miss the target {line['target_tokens']:,} by more than half of its "
                "largest record (exactness rule)"
            )


# ---------------------------------------------------------------- ledger and quarantine


def _check_ledger(folder: Path, manifest: dict[str, Any], result: VerifyResult) -> None:
    """ledger.parquet: in = kept + dropped + quarantined per source; times_sampled = shard records."""
    diffs = result.differences
    name = manifest.get("ledger", "ledger.parquet")
    path = folder / name
    if not path.is_file():
        diffs.append(f"{name}: missing (deleted?)")
        return
    try:
        ledger = pl.scan_parquet(path, glob=False)
        split = pl.col("split") if "split" in ledger.collect_schema() else pl.lit("train")
        per = (
            ledger.group_by("source", "status", split.alias("split"))
            .agg(
                pl.len().alias("n"),
                pl.col("times_sampled").sum().alias("sampled"),
                pl.col("times_sampled").min().alias("least"),
                pl.col("times_sampled").max().alias("most"),
            )
            .collect()
        )
    except _READ_ERRORS as exc:
        diffs.append(f"{name}: cannot be read: {exc} (truncated or corrupted?)")
        return
    result.ledger_records = int(per["n"].sum())
    _differs(diffs, name, "records", result.ledger_records, manifest["totals"].get("records_in"))
    table: dict[str, dict[str, int]] = {}
    sampled: dict[tuple[str, str], int] = {}
    for row in per.iter_rows(named=True):
        line = table.setdefault(row["source"], {})
        line[row["status"]] = line.get(row["status"], 0) + row["n"]
        if row["status"] == "kept":
            key = (row["source"], row["split"] or "train")
            sampled[key] = sampled.get(key, 0) + int(row["sampled"] or 0)
        if row["status"] not in ("kept", "dropped", "quarantined"):
            diffs.append(f"{name}: source {row['source']}: {row['n']:,} rows with unknown status {row['status']!r}")
        elif row["status"] != "kept" and row["sampled"]:
            diffs.append(f"{name}: source {row['source']}: {row['status']} records have times_sampled > 0")
        elif row["status"] == "kept" and row["least"] < 1:
            diffs.append(f"{name}: source {row['source']}: kept records with times_sampled 0")
        cap = _epoch_cap(manifest, row["source"])
        if cap is not None and (row["most"] or 0) > cap:
            diffs.append(
                f"{name}: source {row['source']}: a record sampled {row['most']} times, max_epochs is {cap} "
                "(a record twice in one pass?)"
            )
    for source in sorted(set(table) | set(manifest["sources"])):
        line, m = table.get(source, {}), manifest["sources"].get(source, {})
        where = f"{name}: source {source}"
        _differs(diffs, where, "records in", sum(line.values()), m.get("records_in"))
        for status in ("kept", "dropped", "quarantined"):
            _differs(diffs, where, f"{status} records", line.get(status, 0), m.get(f"records_{status}"))
        _differs(diffs, where, "times_sampled (train)", sampled.get((source, "train"), 0), m.get("records_out"))
        for fmt in (f for f in RECORD_FORMATS if f not in result.unreadable):
            for split, counts in result.counts.get(fmt, {}).items():
                shard_records = counts.by_source.get(source, [0, 0])[0]
                if shard_records != sampled.get((source, split), 0):
                    diffs.append(
                        f"{where}: times_sampled ({split}) sums to {sampled.get((source, split), 0):,}, "
                        f"{fmt} shards hold {shard_records:,}"
                    )


def _epoch_cap(manifest: dict[str, Any], source: str) -> int | None:
    """The most passes the mixture allows over a source's records (None without a mixture)."""
    mixture = manifest.get("mixture") or {}
    caps = [c.get("max_epochs") for c in mixture.get("cells") or [] if c.get("source") == source]
    caps += [s.get("max_epochs") for s in mixture.get("sources") or [] if s.get("source") == source and not caps]
    return max((c for c in caps if isinstance(c, int)), default=None)


def _check_quarantine(folder: Path, manifest: dict[str, Any], diffs: list[str]) -> None:
    """Each listed quarantine file exists and has one line per quarantined record of its source."""
    for line in manifest["sources"].values():
        rel = line.get("quarantine_file")
        if not rel:
            continue
        if not _inside(rel) or not (folder / rel).is_file():
            diffs.append(f"{rel}: missing (deleted?)")
            continue
        with open(folder / rel, "rb") as fh:
            n = sum(1 for _ in fh)
        _differs(diffs, rel, "lines", n, line.get("records_quarantined"))
