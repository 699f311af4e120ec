"""`curate inspect OUT`: look into a build output from the terminal. The functions here return polars
frames and dicts (the CLI only prints them): a summary, records selected by source / filter expression /
seeded sample, the members of a near-duplicate cluster (kept and dropped), and one record's history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl
from rich.table import Table
from rich.text import Text

from curate.errors import CurateError
from curate.expr import ExprError, Expression
from curate.record import training_text
from curate.results import CLUSTER_REASON, BuildOutput, Explanation

PREVIEW_CHARS = 120
#: Columns shown for selected records (when present), before the stage columns.
BASE_COLUMNS = ("id", "source", "kind", "n_tokens")
#: Columns never shown in record tables (shown only by `explain`).
CONTENT_COLUMNS = ("text", "messages", "meta")
#: Columns left out of record tables to save width (`--id` shows every column).
DETAIL_COLUMNS = ("dup_cluster_size", "lang_score", "cot_steps", "final_answer")


class QueryError(CurateError):
    """A bad `--where` expression, or an unknown source or cluster (exit code 2, like a usage error)."""

    exit_code = 2


@dataclass
class Selection:
    """Records picked by `select`: `total` matching instances, of which `records` (at most `limit`)."""

    total: int
    records: pl.DataFrame


def summary(out: BuildOutput) -> dict[str, Any]:
    """Per source: records in, kept, dropped, quarantined, out; and the ledger's status counts."""
    m = out.manifest
    rows = [
        {
            "source": name,
            **{k: s.get(k) for k in ("records_in", "records_kept", "records_dropped", "records_quarantined")},
            "records_out": s.get("records_out"),
            "tokens_out": s.get("tokens_out"),
        }
        for name, s in m.get("sources", {}).items()
    ]
    columns = out.records.collect_schema().names()
    return {"pipeline": m.get("pipeline"), "totals": m.get("totals", {}), "sources": rows, "columns": columns}


def preview() -> pl.Expr:
    """The first characters of a record's training text on one line."""
    text = training_text().str.replace_all(r"\s+", " ")
    cut = pl.when(text.str.len_chars() > PREVIEW_CHARS).then(text.str.slice(0, PREVIEW_CHARS) + "…").otherwise(text)
    return cut.alias("preview")


def _check_source(out: BuildOutput, source: str) -> None:
    known = list(out.manifest.get("sources", {}))
    if source not in known:
        raise QueryError(f"unknown source {source!r}; sources: {', '.join(known)}")


def select(
    out: BuildOutput,
    source: str | None = None,
    where: str | None = None,
    sample: int | None = None,
    seed: int = 0,
    limit: int = 20,
) -> Selection:
    """Output record instances of `source` matching the `where` expression (the `filter` stage's language,
    over the shard columns); `sample` picks that many at random (seeded), else the first `limit`."""
    if not out.has_records:
        formats = ", ".join(sorted({s["format"] for s in out.manifest.get("shards", [])})) or "none"
        raise QueryError(f"{out.path} has no record shards to read (formats: {formats}); use parquet or jsonl")
    records = out.records
    if source is not None:
        _check_source(out, source)
        records = records.filter(pl.col("source") == source)
    if where:
        schema = records.collect_schema()
        try:
            records = records.filter(Expression.parse(where).compile(schema).fill_null(False))
        except ExprError as exc:
            raise QueryError(f"--where: {exc}") from exc
    total = records.select(pl.len()).collect().item()
    if sample is not None:
        rows = records.with_row_index("_i").select("_i").collect()
        picked = rows.sample(n=min(sample, rows.height), seed=seed, shuffle=False)["_i"] if rows.height else []
        records = records.with_row_index("_i").filter(pl.col("_i").is_in(list(picked))).drop("_i")
    else:
        records = records.head(limit)
    return Selection(total, records.collect())


def shown_columns(df: pl.DataFrame, extra: int = 3) -> pl.DataFrame:
    """A record table for a terminal: id, source, kind, n_tokens, up to `extra` stage columns, preview."""
    base = [c for c in BASE_COLUMNS if c in df.columns]
    stage = [
        c for c in df.columns if c not in (*BASE_COLUMNS, *CONTENT_COLUMNS, *DETAIL_COLUMNS) and not c.startswith("rd_")
    ]
    cols = [pl.col(c) for c in [*base, *stage[:extra]]]
    if {"kind", "text", "messages"} <= set(df.columns):
        cols.append(df.select(preview()).to_series())
    return df.select(cols)


def cluster(out: BuildOutput, cluster_id: str) -> dict[str, Any]:
    """Every known member of a near-duplicate cluster: kept ones from the shards (their `dup_cluster`),
    dropped ones from the ledger (`near_duplicate:<cluster>`), with the skeleton from templates.jsonl.

    Members kept by dedup but not sampled by the mixture are not in the shards, so their cluster is
    known only for the examples templates.jsonl lists (their ledger rows are shown); the rest count
    in the template's `size` only."""
    template = out.template(cluster_id)
    records = out.records
    kept = pl.DataFrame()
    if "dup_cluster" in records.collect_schema().names():
        kept = records.filter(pl.col("dup_cluster") == cluster_id).unique("id", keep="first", maintain_order=True)
        kept = kept.collect()
    dropped = out.ledger.filter(pl.col("reason") == f"{CLUSTER_REASON}{cluster_id}").collect()
    kept_ids = kept["id"].to_list() if kept.height else []
    examples = [e["id"] for e in (template or {}).get("examples") or [] if e["id"] not in kept_ids]
    # Members the report kept as examples but the mixture did not sample: their ledger rows.
    unsampled = out.ledger.filter(pl.col("id").is_in(examples) & (pl.col("status") != "kept")).collect()
    if template is None and kept.is_empty() and dropped.is_empty():
        raise QueryError(f"no cluster {cluster_id!r} in {out.path} (templates.jsonl, shards or ledger)")
    kept_ledger = out.ledger.filter(pl.col("id").is_in(kept_ids)).select("id", "source", "times_sampled").collect()
    parts = [
        rows.select("id", "source", pl.lit(None, pl.String).alias("preview"), "times_sampled", "status", "reason")
        for rows in (unsampled, dropped)
    ]
    if kept.height:
        kept_rows = kept.select("id", "source", preview()).join(kept_ledger, on=["id", "source"], how="left")
        parts.insert(0, kept_rows.with_columns(pl.lit("kept").alias("status"), pl.lit(None, pl.String).alias("reason")))
    members = pl.concat(parts, how="diagonal_relaxed")
    return {"cluster": cluster_id, "template": template, "members": members}


def explain(out: BuildOutput, record_id: str) -> Explanation:
    """The record and every decision about it (see `BuildOutput.explain`)."""
    return out.explain(record_id)


# Terminal views (rich renderables) of the results above, for `curate inspect`.


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "[]"
    return str(value)


def frame_table(df: pl.DataFrame, title: str, cut: int | None = None) -> Table:
    """A polars frame as a rich table (values as plain text: no markup is interpreted); with `cut`,
    values other than the preview are cut to that many characters."""
    table = Table(title=title, title_justify="left")
    for name, dtype in df.schema.items():
        table.add_column(
            name,
            justify="right" if dtype.is_numeric() else "left",
            overflow="ellipsis" if name == "preview" else "fold",
            no_wrap=name not in ("preview", "value", "reason", "file"),
            min_width=20 if name == "preview" else 16 if name == "id" else None,
            ratio=1 if name == "preview" else None,
        )
    keep = {i for i, name in enumerate(df.columns) if name in ("id", "preview")}
    for row in df.iter_rows():
        cells = [_cell(v) for v in row]
        if cut is not None:
            cells = [c if i in keep or len(c) <= cut else c[: cut - 1] + "…" for i, c in enumerate(cells)]
        table.add_row(*(Text(c) for c in cells))
    return table


def summary_views(info: dict[str, Any]) -> list[Any]:
    t = info["totals"]
    head = Text(
        f"{info['pipeline']}: {t.get('records_in', 0):,} records in, {t.get('records_out', 0):,} out, "
        f"{t.get('tokens_out', 0):,} tokens"
    )
    columns = Text("columns: " + ", ".join(info["columns"]))
    return [head, frame_table(pl.DataFrame(info["sources"]), "sources"), columns]


def selection_views(sel: Selection, what: str) -> list[Any]:
    shown = shown_columns(sel.records)
    return [frame_table(shown, f"{what}: {shown.height:,} of {sel.total:,} matching record instances", cut=18)]


def cluster_views(found: dict[str, Any]) -> list[Any]:
    views: list[Any] = []
    t = found["template"]
    if t is not None:
        sources = ", ".join(f"{s['source']} {s['records']}" for s in t["sources"] or [])
        views.append(Text(f"cluster {found['cluster']}: {t['size']} records, {t['kept']} kept ({sources})"))
        views.append(Text(f"skeleton: {t['skeleton']}"))
    members = found["members"]
    views.append(frame_table(members, f"members found: {members.height}"))
    if t is not None and t["size"] and members.height < t["size"]:
        views.append(Text(f"{t['size'] - members.height} more: kept by dedup but not sampled by the mixture"))
    return views


def explain_views(e: Explanation) -> list[Any]:
    views: list[Any] = [Text(f"{e.id}: {e.verdict}", style="bold")]
    if e.ledger:
        views.append(frame_table(pl.DataFrame(e.ledger), "ledger"))
    if e.columns:
        rows = pl.DataFrame({"column": list(e.columns), "value": [_cell(v) for v in e.columns.values()]})
        views.append(frame_table(rows, "columns (as written to the shards)"))
    if e.record is not None:
        views.append(Text("content:", style="bold"))
        if e.record.get("messages"):
            for m in e.record["messages"]:
                views.append(Text(f"[{m['role']}] {m['content']}"))
        else:
            views.append(Text(str(e.record.get("text"))))
        if e.record.get("meta"):
            views.append(Text(f"meta: {e.record['meta']}"))
    elif e.ledger:
        views.append(Text("content: not in the output (see the input file and line above)"))
    if e.cluster:
        size = e.cluster.get("size")
        views.append(
            Text(
                f"near-duplicate cluster {e.cluster['cluster']} (size {size if size is not None else '?'}): "
                f"{e.cluster.get('skeleton') or ''}  — see `curate inspect OUT --cluster {e.cluster['cluster']}`"
            )
        )
    return views
