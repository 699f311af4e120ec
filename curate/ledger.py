"""The ledger: one row per input record, saying whether it was kept, dropped or quarantined, and why."""

from __future__ import annotations

import polars as pl

from curate.stages.base import DROP, ERROR

#: The public ledger's columns, in order. `split` is 'train' or 'validation' for kept records, else null;
#: `times_sampled` counts every use (training repeats, or 1 for a validation record).
LEDGER_COLUMNS = ("id", "source", "file", "line", "status", "stage", "reason", "times_sampled", "split")


def assign_unique_ids(ledger: pl.DataFrame) -> pl.DataFrame:
    """Records with equal ids within a source (identical content) get `~2`, `~3`, ... in input order."""
    occurrence = pl.col("_row").rank("ordinal").over(["source", "id"])
    return ledger.with_columns(
        pl.when(pl.col("id").is_not_null() & (occurrence > 1))
        .then(pl.concat_str(pl.col("id"), pl.lit("~"), occurrence.cast(pl.String)))
        .otherwise(pl.col("id"))
        .alias("id")
    )


def duplicate_id_warnings(ids: pl.DataFrame) -> list[str]:
    """One warning per source whose records share ids (identical content, or repeated `id_field` values)."""
    extra = (
        ids.drop_nulls("id")
        .group_by("source", "id")
        .len()
        .filter(pl.col("len") > 1)
        .group_by("source")
        .agg((pl.col("len") - 1).sum().alias("n"))
        .sort("source")
    )
    return [
        f"{r['source']}: {r['n']} record(s) share an id with an earlier record of the source; "
        "they got ~2, ~3, ... suffixes"
        for r in extra.iter_rows(named=True)
    ]


def build_ledger(removed: pl.DataFrame, kept: pl.DataFrame, times: pl.DataFrame) -> pl.DataFrame:
    """One row per input record: kept (sampled >= 1), dropped (with stage and reason), quarantined.

    `times` has `_row`, `times_sampled` and optionally `split` and `reason` (why a kept row was not used:
    `not_sampled`, `not_in_group`; stage `mixture`).
    """
    gone = removed.select(
        "_row",
        "_file",
        "_line",
        "id",
        "source",
        pl.when(pl.col(ERROR).is_not_null()).then(pl.lit("quarantined")).otherwise(pl.lit("dropped")).alias("status"),
        pl.col("_stage").alias("stage"),
        pl.coalesce(ERROR, DROP).alias("reason"),
        pl.lit(0, pl.Int64).alias("times_sampled"),
        pl.lit(None, pl.String).alias("split"),
    )
    parts = [gone]
    if kept.height:
        if "split" not in times.columns:
            used = pl.col("times_sampled") > 0
            times = times.with_columns(pl.when(used).then(pl.lit("train")).alias("split"))
        if "reason" not in times.columns:
            times = times.with_columns(pl.lit(None, pl.String).alias("reason"))
        sampled = kept.select("_row", "_file", "_line", "id", "source").join(times, on="_row", how="left")
        used = pl.col("times_sampled") > 0
        parts.append(
            sampled.with_columns(pl.col("times_sampled").fill_null(0)).select(
                "_row",
                "_file",
                "_line",
                "id",
                "source",
                pl.when(used).then(pl.lit("kept")).otherwise(pl.lit("dropped")).alias("status"),
                pl.when(used).then(pl.lit(None, pl.String)).otherwise(pl.lit("mixture")).alias("stage"),
                pl.when(used)
                .then(pl.lit(None, pl.String))
                .otherwise(pl.col("reason").fill_null("not_sampled"))
                .alias("reason"),
                "times_sampled",
                pl.when(used).then(pl.col("split")).alias("split"),
            )
        )
    ledger = pl.concat(parts, how="vertical").sort("_row")
    return assign_unique_ids(ledger).rename({"_file": "file", "_line": "line"})
