"""`diverse_select`: DEITA-style greedy selection of dissimilar records under a record/token budget."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import polars as pl

from curate.arrow_arrays import list_array
from curate.diversity.select import ACCEPTED, BUDGET, TOO_SIMILAR, greedy_select
from curate.diversity.vectors import center, feature_ids, hashed_vectors, text_of, vectors_from_ids
from curate.errors import FatalError
from curate.params import below_minimum, param
from curate.stages.base import DROP, BarrierStep, Context, MapStep, Stage, Step
from curate.stages.diversity import MAX_DIM

VEC, IDS, RANK = "_dsel_vec", "_dsel_ids", "_dsel_rank"
_SLICE = 65536


@dataclass(frozen=True)
class _Embed(MapStep):
    """Per record: the hashed vector of its text (with `min_df`: its feature ids, as the counts need
    every record), and its `rank_by` value (checked to exist)."""

    field: str
    dim: int
    frame: int
    min_df: int
    rank_by: str
    stage_name: str = "diverse_select"
    reads: tuple[str, ...] = ("kind", "text", "messages", "meta")

    @property
    def writes(self) -> tuple[str, ...]:  # type: ignore[override]
        return (IDS if self.min_df else VEC, RANK)

    def apply(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        rank = pl.lit(None, pl.Float64)
        if self.rank_by:
            if self.rank_by not in df.columns:
                available = ", ".join(c for c in df.columns if not c.startswith("_"))
                raise FatalError(
                    f"diverse_select.rank_by: no column {self.rank_by!r} (an earlier stage must write it); "
                    f"available columns: {available}"
                )
            dtype = df.schema[self.rank_by]
            if not (dtype.is_numeric() or dtype == pl.Boolean):
                raise FatalError(f"diverse_select.rank_by: column {self.rank_by!r} is {dtype}, not numeric")
            rank = pl.col(self.rank_by).cast(pl.Float64)
        texts = df.select(text_of(self.field)).to_series()
        if self.min_df:
            ids, owner = feature_ids(texts, self.frame)
            ids = ids[np.argsort(owner, kind="stable")]  # grouped by record, for the list column
            offsets = np.r_[0, np.cumsum(np.bincount(owner, minlength=df.height))].astype(np.int64)
            column = pl.Series(IDS, pl.from_arrow(list_array(offsets, ids, large=True)))
        else:
            vectors = hashed_vectors(texts, self.dim, self.frame)
            column = pl.Series(VEC, vectors, dtype=pl.Array(pl.Float32, self.dim))
        return df.with_columns(column, rank.alias(RANK))


@dataclass(frozen=True)
class _Select(BarrierStep):
    """All candidates at once: order by rank, centre, greedy selection per scope group."""

    dim: int
    max_similarity: float
    max_records: int | None
    max_tokens: int | None
    scope: str
    center: bool
    min_df: int
    stage_name: str = "diverse_select"

    @property
    def reads(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("source", "n_tokens", IDS if self.min_df else VEC, RANK)

    def decide(self, rows: pl.LazyFrame, ctx: Context) -> pl.DataFrame:
        keys = rows.select("_row", "source", "n_tokens", RANK).collect()
        n = keys.height
        vectors = self._vectors(rows, n)
        if self.center:
            center(vectors, inplace=True)  # the mean of all candidates, whatever the scope
        keys = keys.with_columns(pl.int_range(n, dtype=pl.Int64).alias("_at"))
        # visiting order: rank descending (nulls and NaN last), then input order
        keys = keys.sort([pl.col(RANK).fill_nan(None), "_row"], descending=[True, False], nulls_last=True)
        groups = keys["source"].to_numpy() if self.scope == "source" else np.zeros(n, dtype=object)
        status = np.full(n, BUDGET, dtype=np.int8)
        stats: dict = {"scope": self.scope, "sources": {}}
        for group in sorted(set(groups.tolist())):
            position = np.flatnonzero(groups == group)  # in visiting order
            part = vectors[keys["_at"].to_numpy()[position]]
            tokens = keys["n_tokens"].fill_null(0).to_numpy()[position]
            status[position] = greedy_select(part, tokens, self.max_similarity, self.max_records, self.max_tokens)
        del vectors
        reasons = np.array([None, "diverse_select:too_similar", "diverse_select:budget"], dtype=object)[status]
        decided = keys.select("_row", "source", "n_tokens").with_columns(
            pl.Series(DROP, reasons.tolist(), dtype=pl.String), pl.Series("_status", status)
        )
        if ctx.artifacts is not None:
            for name, part in decided.group_by("source"):
                stats["sources"][name[0]] = _counts(part)
            stats.update(_counts(decided))
            (ctx.artifacts / "diverse_select.stats.json").write_text(json.dumps(stats, sort_keys=True) + "\n")
        return decided.select("_row", DROP).sort("_row")

    def _vectors(self, rows: pl.LazyFrame, n: int) -> np.ndarray:
        """Every candidate's vector in scan order, read in slices; with `min_df`, built here from the
        feature ids of all candidates (their document frequencies need every record)."""
        if not self.min_df:
            vectors = np.empty((n, self.dim), dtype=np.float32)
            for start in range(0, n, _SLICE):
                vectors[start : start + _SLICE] = rows.select(VEC).slice(start, _SLICE).collect()[VEC].to_numpy()
            return vectors
        ids, lengths = [], []
        for start in range(0, n, _SLICE):
            column = rows.select(IDS).slice(start, _SLICE).collect()[IDS]
            lengths.append(column.list.len().fill_null(0).to_numpy())
            ids.append(column.explode().drop_nulls().to_numpy().astype(np.uint32))
        owner = np.repeat(np.arange(n), np.concatenate(lengths)) if n else np.zeros(0, dtype=np.int64)
        flat = np.concatenate(ids) if ids else np.zeros(0, dtype=np.uint32)
        return vectors_from_ids(flat, owner, n, self.dim, self.min_df)


def _counts(part: pl.DataFrame) -> dict:
    status = part["_status"]
    return {
        "candidates": part.height,
        "selected": int((status == ACCEPTED).sum()),
        "too_similar": int((status == TOO_SIMILAR).sum()),
        "budget": int((status == BUDGET).sum()),
        "tokens_selected": int(part.filter(pl.col("_status") == ACCEPTED)["n_tokens"].sum()),
    }


@dataclass
class DiverseSelect(Stage):
    """Greedy diverse selection (as DEITA). Reads the chosen field's text, `n_tokens` and the `rank_by`
    column; drops rows: `diverse_select:too_similar` and `diverse_select:budget`.

    Records are visited by `rank_by` descending (a numeric column written by an earlier stage, e.g.
    `reasoning_depth`; nulls last; ties and an empty `rank_by`: input order, so the result does not
    depend on worker count). A record is accepted when its cosine similarity to every record accepted
    so far is below `max_similarity`, until `max_records` or `max_tokens` is reached: the first record
    that would exceed a budget ends the selection, and it and all later records are dropped with
    `diverse_select:budget`; earlier records too similar to an accepted one are dropped with
    `diverse_select:too_similar`. With `scope = "source"` each source is selected separately and the
    budgets apply per source. Similarity is the cosine of the hashed word uni+bigram vectors of
    `curate.diversity.vectors` (with `frame`, of the first and last `frame` tokens only; with `min_df`,
    of the features found in at least `min_df` candidates: recurring wording such as a template's fixed
    text, while a record that shares no such feature with others is never too similar). With `center`
    the candidates' mean vector is subtracted first: that removes the words all records share, but also
    most of a template that dominates the data, so it is off by default. The defaults (`frame = 8`,
    `min_df = 5`, `max_similarity = 0.5`) are the best measured for covering instruction templates
    (benchmarks/EVAL_DIVERSITY.md); to compare whole documents (pretraining text) set `frame = 0` and
    `min_df = 0`. The selection is exact (no
    approximation), computed in blocks with matrix products (`curate.diversity.select`); cost is
    candidates x accepted x `dim`.
    Writes `diverse_select.stats.json` (the manifest's `stage_stats.diverse_select`).
    """

    name: ClassVar[str] = "diverse_select"
    reads: ClassVar[tuple[str, ...]] = ("kind", "text", "messages", "n_tokens")
    drops_rows: ClassVar[bool] = True

    max_similarity: float = param(0.5, "accept a record only if its cosine similarity to every accepted one is below")
    max_records: int | None = param(None, "most records selected (per source with scope = source)")
    max_tokens: int | None = param(None, "most tokens selected (per source with scope = source)")
    rank_by: str = param("", "numeric column visited first (descending); default input order")
    field: Literal["prompt", "response", "all"] = param("prompt", "text compared (pretrain records: text)")
    scope: Literal["global", "source"] = param("global", "select across all sources or within each")
    dim: int = param(256, "hashed vector dimensions")
    frame: int = param(8, "compare only the first and last `frame` tokens (0: the whole text)")
    center: bool = param(False, "subtract the candidates' mean vector first (removes shared common words)")
    min_df: int = param(5, "compare only features found in at least this many candidates (recurring wording); 0: all")

    def problems(self, where: str) -> list[str]:
        out = []
        if not 0.0 < self.max_similarity <= 1.0:
            out.append(f"{where}.max_similarity: must be in (0, 1], got {self.max_similarity}")
        out += below_minimum(where, self, max_records=1, max_tokens=1, dim=8, frame=0, min_df=0)
        if self.dim > MAX_DIM:
            out.append(f"{where}.dim: must be <= {MAX_DIM}, got {self.dim}")
        if self.rank_by.startswith("_"):
            out.append(f"{where}.rank_by: internal columns (starting with _) cannot be used, got {self.rank_by!r}")
        return out

    def steps(self) -> list[Step]:
        select = _Select(
            self.dim, self.max_similarity, self.max_records, self.max_tokens, self.scope, self.center, self.min_df
        )
        return [_Embed(self.field, self.dim, self.frame, self.min_df, self.rank_by), select]
