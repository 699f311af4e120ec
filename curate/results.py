"""`curate.open(OUT)`: a build output folder as lazy polars frames, for notebooks, `inspect` and the report.

Nothing is read up front but `manifest.json`: `records` and `ledger` are lazy scans over the shards and
the ledger, so an output with millions of records opens instantly.

>>> out = curate.open("pipelines/out/quickstart")                       # doctest: +SKIP
>>> out.records.filter(pl.col("source") == "gsm8k").head(5).collect()   # doctest: +SKIP
>>> out.explain("7c7de130f195c73c")                                     # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from curate.errors import FatalError

#: Shard formats in the order they are preferred for reading (Parquet keeps types and scans lazily; an
#: `hf` split folder's Arrow stream files are read eagerly). Token formats (megatron, tokens, mds) hold
#: no record columns.
READ_ORDER = ("parquet", "jsonl", "jsonl.zst", "hf")
CLUSTER_REASON = "near_duplicate:"
TEMPLATE_SCHEMA = pl.Schema(
    {
        "cluster": pl.String(),
        "size": pl.Int64(),
        "kept": pl.Int64(),
        "sources": pl.List(pl.Struct({"source": pl.String(), "records": pl.Int64()})),
        "skeleton": pl.String(),
        "examples": pl.List(pl.Struct({"id": pl.String(), "source": pl.String(), "text": pl.String()})),
    }
)


def open_output(path: str | Path) -> BuildOutput:
    """Open a build output folder (one with a `manifest.json`). Raises FatalError when it is not one."""
    out = Path(path).expanduser()
    if not (out / "manifest.json").is_file():
        raise FatalError(f"{out} is not a curate output: no manifest.json (run `curate build` first)")
    try:
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FatalError(f"{out / 'manifest.json'}: not valid JSON: {exc}") from exc
    return BuildOutput(out, manifest)


@dataclass
class Explanation:
    """Everything known about one record id: its ledger rows, its output columns, its dedup cluster."""

    id: str
    ledger: list[dict[str, Any]]
    record: dict[str, Any] | None
    cluster: dict[str, Any] | None
    verdict: str = ""
    columns: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{self.id}: {self.verdict}"]
        for row in self.ledger:
            lines.append(f"  {row['source']} {row['file']}:{row['line']} status={row['status']}")
        for name, value in self.columns.items():
            lines.append(f"  {name} = {value!r}")
        if self.cluster:
            lines.append(
                f"  cluster {self.cluster['cluster']} (size {self.cluster['size']}): {self.cluster['skeleton']}"
            )
        return "\n".join(lines)


@dataclass
class BuildOutput:
    """A build output folder: `manifest` (dict), `ledger` and `records` (lazy), `templates`, `explain`."""

    path: Path
    manifest: dict[str, Any]

    def shard_files(self, split: str | None = None) -> tuple[str, dict[str, list[Path]]]:
        """The shard format read (Parquet when written) and its files per split, in manifest order."""
        shards = self.manifest.get("shards") or []
        formats = {s["format"] for s in shards}
        fmt = next((f for f in READ_ORDER if f in formats), "")
        by_split: dict[str, list[Path]] = {}
        for s in shards:
            name = s.get("split", "train")
            if s["format"] == fmt and (split is None or name == split):
                by_split.setdefault(name, []).append(self.path / s["path"])
        return fmt, by_split

    @cached_property
    def splits(self) -> list[str]:
        """The splits the output has shards for (e.g. `["train"]` or `["train", "validation"]`)."""
        return list(self.shard_files()[1])

    @property
    def has_records(self) -> bool:
        """Whether the output has shards with record columns (not only token formats)."""
        return bool(self.shard_files()[0])

    @property
    def records(self) -> pl.LazyFrame:
        """Every output record instance (a record sampled twice appears twice), lazily. With more than one
        split, a `split` column says which one a row is in. Empty when the build wrote only token formats
        (see `has_records`)."""
        fmt, by_split = self.shard_files()
        frames = []
        for split, files in by_split.items():
            frame = _scan(fmt, files)
            if len(by_split) > 1 and "split" not in frame.collect_schema().names():
                frame = frame.with_columns(pl.lit(split).alias("split"))
            frames.append(frame)
        if not frames:
            return pl.LazyFrame(schema={"id": pl.String(), "source": pl.String(), "n_tokens": pl.Int64()})
        return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]

    @property
    def ledger(self) -> pl.LazyFrame:
        """One row per input record: id, source, file, line, status, stage, reason, times_sampled."""
        path = self.path / self.manifest.get("ledger", "ledger.parquet")
        if not path.is_file():
            raise FatalError(f"{path}: ledger missing from the output")
        return pl.scan_parquet(path, glob=False)

    @cached_property
    def templates(self) -> pl.DataFrame:
        """The near-duplicate clusters `minhash_dedup` reported (`templates.jsonl`), largest first; empty
        when no such stage ran."""
        path = self.path / "templates.jsonl"
        if not path.is_file():
            return pl.DataFrame(schema=TEMPLATE_SCHEMA)
        rows = []
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    t = orjson.loads(line)
                    t["sources"] = [{"source": k, "records": v} for k, v in t.get("sources", {}).items()]
                    rows.append({k: t.get(k) for k in TEMPLATE_SCHEMA.names()})
        return pl.DataFrame(rows, schema=TEMPLATE_SCHEMA).sort("size", descending=True, maintain_order=True)

    def template(self, cluster: str) -> dict[str, Any] | None:
        """One cluster of `templates.jsonl` by id, or None."""
        found = self.templates.filter(pl.col("cluster") == cluster)
        return found.row(0, named=True) if found.height else None

    def explain(self, record_id: str) -> Explanation:
        """The record with this id and every decision about it: ledger status, stage and reason, times
        sampled, the columns stages wrote (when it is in the output), and its near-duplicate cluster."""
        rows = self.ledger.filter(pl.col("id") == record_id).collect().to_dicts()
        found = self.records.filter(pl.col("id") == record_id).head(1).collect()
        record = found.row(0, named=True) if found.height else None
        if not rows and record is None:
            raise FatalError(f"no record with id {record_id!r} in {self.path} (ledger or shards)")
        cluster_id = record.get("dup_cluster") if record else None
        for row in rows:
            reason = row.get("reason") or ""
            if reason.startswith(CLUSTER_REASON):
                cluster_id = reason.removeprefix(CLUSTER_REASON)
        cluster = self.template(cluster_id) if cluster_id else None
        if cluster_id and cluster is None:
            cluster = {"cluster": cluster_id, "size": None, "kept": None, "skeleton": "", "examples": []}
        columns = {k: v for k, v in (record or {}).items() if k not in ("text", "messages", "meta")}
        return Explanation(record_id, rows, record, cluster, _verdict(rows), columns)

    def to_hf(self) -> Any:
        """A `datasets.DatasetDict` with one split per output split (`train`, and `validation` when the
        build wrote one), read from the Parquet shards."""
        import datasets

        fmt, by_split = self.shard_files()
        if fmt != "parquet":
            raise FatalError(f"{self.path}: to_hf reads Parquet shards; this build wrote {fmt or 'no'} shards")
        files = {split: [str(p) for p in paths] for split, paths in by_split.items()}
        return datasets.load_dataset("parquet", data_files=files)

    def __repr__(self) -> str:
        totals = self.manifest.get("totals", {})
        return (
            f"<curate output {self.path}: {self.manifest.get('pipeline')}, {totals.get('records_out', 0):,} records,"
            f" {totals.get('tokens_out', 0):,} tokens, splits {', '.join(self.splits) or '-'}>"
        )


def _scan(fmt: str, files: list[Path]) -> pl.LazyFrame:
    if fmt == "parquet":
        return pl.scan_parquet(files, glob=False)
    if fmt == "hf":  # save_to_disk folders: Arrow IPC stream files
        arrows = [f for folder in files for f in sorted(folder.glob("*.arrow"))]
        return pl.concat([pl.read_ipc_stream(f) for f in arrows], how="diagonal_relaxed").lazy()
    # One frame per shard, each with its own schema (a shard of text documents has an all-null `messages`
    # column, which polars types Null and then refuses in the next shard), unified by supertype.
    if any(ch in str(f) for f in files for ch in "*?["):  # polars would expand them as a glob (no glob=False here)
        frames = [pl.read_ndjson(f.read_bytes(), infer_schema_length=None).lazy() for f in files]
    else:
        frames = [pl.scan_ndjson(f, infer_schema_length=None) for f in files]
    return pl.concat(frames, how="diagonal_relaxed")


def _verdict(rows: list[dict[str, Any]]) -> str:
    """One line saying what happened to the record."""
    if not rows:
        return "in the output shards, but not in the ledger"
    parts = []
    for row in rows:
        if row["status"] == "kept":
            parts.append(f"kept ({row['source']}), sampled {row['times_sampled']}x")
        else:
            parts.append(f"{row['status']} ({row['source']}) by {row['stage']}: {row['reason']}")
    return "; ".join(parts)
