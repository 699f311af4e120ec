"""`minhash_dedup`: near-duplicate and template-aware removal with MinHash LSH."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import polars as pl

from curate.arrow_arrays import list_array
from curate.minhash import shingles
from curate.minhash.bands import COUNT, SIG, BandTask, band_groups, band_pairs, merge_pairs, scope_codes
from curate.minhash.clusters import candidate_pairs, components, verified
from curate.minhash.ray_lsh import LshPlan, lsh_edges
from curate.minhash.signature import band_keys, lsh_params, ngram_hashes, signatures
from curate.minhash.skeleton import template_mask
from curate.minhash.template_tasks import GRAMS, run_template_tasks
from curate.names import free_name
from curate.params import below_minimum, param
from curate.stages.base import DROP, BarrierStep, Context, MapStep, Stage, Step, Tasks

FOLDED, TEXT, SEP = "_mh_folded", "_mh_text", "_mh_sep"
_CONTENT = ("kind", "text", "messages", "meta")  # what the compared text is made from
START, END = "\x02", "\x03"  # unit markers of a text's start and end (template mode)
_EXAMPLE_CHARS = 500
_ROWS_PER_PARTITION = 4_000_000  # on Ray: about this many band rows (records x bands) per bucket group


def compared_text(df: pl.DataFrame, fields: str, include_input: bool, template: bool, unit: str) -> pl.DataFrame:
    """`_row` with the text of the compared fields (`TEXT`), its folded form (`FOLDED`) and the unit
    separator (`SEP`: a space for word units, empty for characters). The map step shingles `FOLDED`;
    the barrier recomputes the three for the few records its report shows, so they are never stored."""
    out = df.select("_row", shingles.field_text(fields, include_input).fill_null("").alias(TEXT))
    out = out.with_columns(shingles.fold(pl.col(TEXT), template).alias(FOLDED))
    by_words = shingles.by_words(pl.col(FOLDED), unit)
    return out.with_columns(pl.when(by_words).then(pl.lit(" ")).otherwise(pl.lit("")).alias(SEP))


@dataclass(frozen=True)
class _Shingle(MapStep):
    """Per record: the text of the chosen fields and its folded form; then, with `template`, its n-gram
    hashes in order (the barrier needs every record to find template n-grams), else its MinHash
    signature and n-gram count (computed here, in parallel across workers)."""

    fields: str
    template: bool
    include_input: bool
    ngram: int
    unit: str
    num_perm: int
    seed: int
    stage_name: str = "minhash_dedup"
    reads: tuple[str, ...] = ("kind", "text", "messages", "meta")

    @property
    def writes(self) -> tuple[str, ...]:  # type: ignore[override]
        return (GRAMS if self.template else SIG, COUNT)

    def apply(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        texts = compared_text(df, self.fields, self.include_input, self.template, self.unit)
        folded = pl.col(FOLDED)
        if self.template:  # start/end markers make template n-grams position-aware
            folded = pl.when(folded != "").then(pl.concat_str(pl.lit(f"{START} "), folded, pl.lit(f" {END}")))
        split = pl.col(SEP) == " "  # by_words, computed once in compared_text
        units = texts.select(shingles.units(folded.fill_null(""), self.unit, split).alias("u"))["u"]
        lengths = units.list.len().to_numpy()
        unit_hashes = units.explode().drop_nulls().hash(seed=0).to_numpy()
        grams, counts = ngram_hashes(unit_hashes, lengths, self.ngram)
        if self.template:
            offsets = np.r_[0, np.cumsum(counts)]
            column = pl.Series(GRAMS, pl.from_arrow(list_array(offsets, grams)))
        else:
            owner = np.repeat(np.arange(df.height), counts)
            sig = signatures(owner, grams, df.height, self.num_perm, self.seed)
            column = pl.Series(SIG, sig, dtype=pl.Array(pl.UInt32, self.num_perm))
        return df.with_columns(column, pl.Series(COUNT, counts, dtype=pl.Int64))


@dataclass(frozen=True)
class _Cluster(BarrierStep):
    """All records at once: template n-grams (when `template`), signatures, LSH, components, keep."""

    template: bool
    ngram: int
    num_perm: int
    threshold: float
    bands: int
    rows: int
    seed: int
    verify: bool
    scope: str
    keep_per_cluster: int
    rank_by: str
    top_templates: int
    fields: str
    include_input: bool
    unit: str
    stage_name: str = "minhash_dedup"

    @property
    def reads(self) -> tuple[str, ...]:  # type: ignore[override]
        return (*self._compared, *_CONTENT)

    @property
    def _compared(self) -> tuple[str, ...]:
        shingles_in = GRAMS if self.template else SIG
        return ("id", "source", shingles_in, COUNT, *([self.rank_by] if self.rank_by else []))

    def decide(self, rows: pl.LazyFrame, ctx: Context) -> pl.DataFrame:
        data = rows.select("_row", *self._compared).collect().sort("_row")
        n = data.height
        lengths = data[COUNT].to_numpy()
        scope = scope_codes(data["source"], self.scope == "source")
        stats: dict = {"records": n, "bands": self.bands, "rows": self.rows}
        keep = None
        if self.template:
            owner = np.repeat(np.arange(n), lengths)
            grams = data[GRAMS].explode().drop_nulls().to_numpy().astype(np.uint32)
            keep, skeleton = template_mask(owner, grams, scope)
            # Unstructured records (no template text) are compared by all their n-grams instead, so
            # near-copies among them are still found and they never pile up in one empty-skeleton cluster.
            unstructured = np.bincount(owner[keep], minlength=n) == 0
            keep |= unstructured[owner]
            stats.update(asdict(skeleton), unstructured=int((unstructured & (lengths > 0)).sum()))
            sig = signatures(owner[keep], grams[keep], n, self.num_perm, self.seed)
            shingled = np.bincount(owner[keep], minlength=n) > 0
        else:
            sig = data[SIG].to_numpy().reshape(n, self.num_perm)
            shingled = lengths > 0
        keys = band_keys(sig, self.bands, self.rows)
        pairs = candidate_pairs(keys, scope, shingled)
        edges = verified(pairs, sig, self.threshold) if self.verify else pairs
        starts, row_ids = np.r_[0, np.cumsum(lengths)], data["_row"]

        def masks(wanted: list[int]) -> dict[int, np.ndarray]:  # template mode only (keep is set)
            at = {r: int(row_ids.search_sorted(r)) for r in wanted}
            return {r: keep[starts[i] : starts[i + 1]] for r, i in at.items()}

        data = data.drop(SIG, GRAMS, strict=False)
        return self._decisions(rows, data, len(pairs), edges, shingled, masks if keep is not None else None, ctx, stats)

    def decide_in_tasks(self, rows: pl.LazyFrame, ctx: Context, files: list[Path], tasks: Tasks) -> pl.DataFrame:
        """`decide` as tasks: with `template`, the skeleton figures and signatures from partitioned tasks
        (`curate.minhash.template_tasks`); then the LSH bands in one task per group of bands
        (`curate.minhash.bands`), or, on Ray, in Ray Data shuffles by (band, key) (`curate.minhash.ray_lsh`).
        Only histograms, template n-grams and candidate pairs (on Ray: verified pairs) reach this process."""
        data = rows.select("_row", *[c for c in self._compared if c not in (SIG, GRAMS)]).collect().sort("_row")
        names = [str(f) for f in files]
        stats: dict = {"records": data.height, "bands": self.bands, "rows": self.rows}
        masks = None
        if self.template:
            assert ctx.scratch is not None  # run_barrier gives every barrier a scratch folder
            scopes = self._scopes(data["source"])
            names, masks = run_template_tasks(rows, names, scopes, ctx.scratch, tasks, self.num_perm, self.seed, stats)
            kept = pl.scan_parquet(names, glob=False).select("_row", COUNT).collect().sort("_row")
            shingled = kept[COUNT].to_numpy() > 0
        else:
            shingled = data[COUNT].to_numpy() > 0
        threshold = self.threshold if self.verify else None
        if tasks.on_ray:  # band buckets grouped by Ray Data shuffles; only the edges come back
            scopes = self._scopes(data["source"])
            partitions = max(2 * tasks.parallelism, data.height * self.bands // _ROWS_PER_PARTITION + 1)
            plan = LshPlan(tuple(names), self.bands, self.rows, self.num_perm, scopes, threshold, partitions)
            candidates, found = lsh_edges(plan)
            edges = np.searchsorted(data["_row"].to_numpy(), found)  # `_row` pairs -> record indices
            return self._decisions(rows, data, candidates, edges, shingled, masks, ctx, stats)
        by_source = self.scope == "source"
        band_tasks = [
            BandTask(tuple(names), first, count, self.rows, self.num_perm, by_source, threshold)
            for first, count in band_groups(self.bands, tasks.parallelism)
        ]
        pairs, passed = merge_pairs(tasks.run(band_pairs, band_tasks), data.height)
        return self._decisions(rows, data, len(pairs), pairs[passed], shingled, masks, ctx, stats)

    def _scopes(self, sources: pl.Series) -> dict[str, int] | None:
        """Scope code per source, as `scope_codes` numbers them (None: one global scope)."""
        if self.scope != "source":
            return None
        return {name: code for code, name in enumerate(sorted(sources.unique().to_list()), start=1)}

    def _decisions(
        self,
        rows: pl.LazyFrame,
        data: pl.DataFrame,
        candidates: int,
        edges: np.ndarray,
        shingled: np.ndarray,
        masks: Callable[[list[int]], dict] | None,
        ctx: Context,
        stats: dict,
    ) -> pl.DataFrame:
        """Clusters from the verified pairs (`edges`, record indices; `candidates` pairs were checked), the
        keep/drop decisions, and the report files. `masks`
        gives the kept-n-gram masks of records by `_row` (template mode; None: every n-gram is kept)."""
        n = data.height
        labels = components(n, edges)
        stats.update(
            shingled=int(shingled.sum()),
            unshingled=int(n - shingled.sum()),
            candidate_pairs=candidates,
            verified_pairs=len(edges),
        )
        decisions = self._keep(data, labels)
        stats.update(
            clusters=int(decisions.filter(pl.col("dup_cluster_size") > 1)["dup_cluster"].n_unique()),
            records_in_clusters=int((decisions["dup_cluster_size"] > 1).sum()),
            dropped=int(decisions[DROP].is_not_null().sum()),
        )
        if ctx.artifacts is not None:
            self._write_report(rows, data, decisions, masks, ctx, stats)
        return decisions.select("_row", DROP, "dup_cluster", "dup_cluster_size")

    def _keep(self, data: pl.DataFrame, labels: np.ndarray) -> pl.DataFrame:
        """Cluster ids (the smallest record id, made unique by `unique_cluster_names`), sizes, and the drop
        reason beyond `keep_per_cluster`, in `data`'s order. Only records in clusters of two or more are
        ranked: a record alone is its own cluster and never dropped (over a million records, 30% of them
        in clusters, 0.2-0.4 s against 1.0-1.4 s for window expressions over every record)."""
        sizes = np.bincount(labels, minlength=len(labels))[labels]
        frame = data.select("_row", "id", *([self.rank_by] if self.rank_by else [])).with_columns(
            pl.Series("_label", labels), pl.Series("dup_cluster_size", sizes, pl.Int64)
        )
        smallest = frame.filter(pl.col("dup_cluster_size") > 1).select(
            "_row", pl.col("id").min().over("_label").alias("dup_cluster")
        )
        named = frame.join(smallest, on="_row", how="left", maintain_order="left")
        frame = unique_cluster_names(named.with_columns(pl.coalesce("dup_cluster", "id").alias("dup_cluster")), data)
        # within a cluster: the most reasoning-rich first (with `rank_by`), ties and the rest in input order
        order = [pl.col(self.rank_by).fill_null(float("-inf")).neg()] if self.rank_by else []
        grouped = frame.filter(pl.col("dup_cluster_size") > 1).sort([*order, "_row"])
        dropped = (
            grouped.with_columns(pl.int_range(pl.len()).over("_label").alias("_rank"))
            .filter(pl.col("_rank") >= self.keep_per_cluster)
            .select("_row", pl.concat_str(pl.lit("near_duplicate:"), pl.col("dup_cluster")).alias(DROP))
        )
        return frame.join(dropped, on="_row", how="left", maintain_order="left")

    def _write_report(
        self,
        rows: pl.LazyFrame,
        data: pl.DataFrame,
        decisions: pl.DataFrame,
        masks: Callable[[list[int]], dict] | None,
        ctx: Context,
        stats: dict,
    ) -> None:
        """`templates.jsonl` (largest clusters: size, sources, skeleton, three examples) and stats."""
        assert ctx.artifacts is not None
        clusters = (
            decisions.join(data.select("_row", "source"), on="_row")
            .filter(pl.col("dup_cluster_size") > 1)
            .group_by("dup_cluster")
            .agg(
                pl.len().alias("size"),
                pl.col(DROP).is_null().sum().alias("kept"),
                pl.col("_row").sort().alias("rows"),
                pl.col("source").value_counts(sort=True).alias("sources"),
            )
            .sort(["size", "dup_cluster"], descending=[True, False])
            .head(self.top_templates)
        )
        firsts = [members[0] for members in clusters["rows"].to_list()]
        counts = dict(zip(data["_row"].to_list(), data[COUNT].to_list(), strict=True)) if masks is None else {}
        kept = masks(firsts) if masks is not None else {r: np.ones(counts[r], dtype=bool) for r in firsts}
        shown = pl.Series("_row", [r for members in clusters["rows"].to_list() for r in members[:3]], pl.Int64)
        content = rows.filter(pl.col("_row").is_in(shown.implode())).select("_row", *_CONTENT).collect()
        texts = compared_text(content, self.fields, self.include_input, self.template, self.unit)
        texts = texts.join(data.select("_row", "id", "source"), on="_row").sort("_row")
        lines = []
        for cluster in clusters.iter_rows(named=True):
            members = cluster["rows"]
            examples = texts.filter(pl.col("_row").is_in(members[:3])).select(
                "id", "source", pl.col(TEXT).str.slice(0, _EXAMPLE_CHARS)
            )
            lines.append(
                {
                    "cluster": cluster["dup_cluster"],
                    "size": cluster["size"],
                    "kept": cluster["kept"],
                    "sources": {s["source"]: s["count"] for s in cluster["sources"]},
                    "skeleton": self._skeleton(
                        texts.row(int(texts["_row"].search_sorted(members[0])), named=True),
                        kept[members[0]],
                    ),
                    "examples": [
                        {"id": r["id"], "source": r["source"], "text": r[TEXT]} for r in examples.iter_rows(named=True)
                    ],
                }
            )
        with open(ctx.artifacts / "templates.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        (ctx.artifacts / "minhash_dedup.stats.json").write_text(json.dumps(stats, sort_keys=True) + "\n")

    def _skeleton(self, record: dict, kept_grams: np.ndarray) -> str:
        """The record's folded text with the units no kept n-gram covers shown as `…`."""
        folded, sep = record[FOLDED], record[SEP]
        marked = f"{START} {folded} {END}" if self.template and folded else folded
        units = pl.select(shingles.units(pl.lit(marked), "word" if sep == " " else "char")).item().to_list()
        if len(units) <= self.ngram:
            covered = np.full(len(units), bool(kept_grams.any()))
        else:
            covered = np.zeros(len(units), dtype=bool)
            for position in np.flatnonzero(kept_grams):
                covered[position : position + self.ngram] = True
        out: list[str] = []
        for unit, shown in zip(units, covered, strict=True):
            token = unit if shown else "…"
            if token == "…" and out and out[-1] == "…":
                continue
            if token not in (START, END):
                out.append(token)
        return sep.join(out)


@dataclass
class MinhashDedup(Stage):
    """Near-duplicate removal with MinHash LSH, template-aware. Reads the chosen fields (and `rank_by`);
    writes `dup_cluster`, `dup_cluster_size`; drops rows beyond `keep_per_cluster` per cluster
    (reason `near_duplicate:<cluster id>`).

    See `curate.minhash.shingles` for the text, skeleton and shingling rules and
    `curate.minhash.skeleton` for how template n-grams are found. Records are compared by MinHash
    signatures (numpy, equal to datasketch's); LSH bands and rows minimise false positives plus false
    negatives for `threshold` unless given; candidate pairs from shared band buckets are verified
    against the signature-estimated Jaccard (`verify`); clusters are connected components, and a
    cluster's id is the smallest record id in it. Kept records are the top `keep_per_cluster` by
    `rank_by` (descending; ties: input order). Writes `templates.jsonl` (largest clusters with their
    skeleton and three examples) into the output and its figures into the manifest's `stage_stats`.
    """

    name: ClassVar[str] = "minhash_dedup"
    reads: ClassVar[tuple[str, ...]] = ("kind", "text", "messages", "meta")
    writes: ClassVar[tuple[str, ...]] = ("dup_cluster", "dup_cluster_size")
    drops_rows: ClassVar[bool] = True

    fields: Literal["prompt", "response", "all"] = param("all", "what is compared (pretrain records: text)")
    template: bool = param(False, "compare skeletons: typed placeholders, template n-grams found from the data")
    include_input: bool = param(True, "include the Alpaca input / Dolly context in the prompt")
    ngram: int = param(5, "n-gram size (shorter texts use one n-gram of all their units)")
    unit: Literal["word", "char", "auto"] = param("auto", "n-gram units; auto: characters for CJK text")
    num_perm: int = param(128, "MinHash permutations")
    threshold: float = param(0.8, "Jaccard similarity that makes two records duplicates")
    bands: int | None = param(None, "LSH bands (default: derived from threshold)")
    rows: int | None = param(None, "LSH rows per band (default: derived from threshold)")
    seed: int = param(1, "seed of the MinHash permutations")
    verify: bool = param(True, "check candidate pairs against the estimated Jaccard before clustering")
    scope: Literal["global", "source"] = param("global", "compare across all sources or within each")
    keep_per_cluster: int = param(1, "records kept per cluster")
    rank_by: str = param("", "column ranking records within a cluster (descending); default input order")
    top_templates: int = param(100, "clusters listed in templates.jsonl")

    def problems(self, where: str) -> list[str]:
        out = []
        out += below_minimum(where, self, ngram=1)
        if not 2 <= self.num_perm <= 1024:
            out.append(f"{where}.num_perm: must be between 2 and 1024, got {self.num_perm}")
        if not 0.0 < self.threshold <= 1.0:
            out.append(f"{where}.threshold: must be in (0, 1], got {self.threshold}")
        if (self.bands is None) != (self.rows is None):
            out.append(f"{where}.bands: give both bands and rows, or neither (derived from threshold)")
        elif self.bands is not None and self.rows is not None:
            if self.bands < 1 or self.rows < 1:
                out.append(f"{where}.bands: bands and rows must be >= 1")
            elif self.bands * self.rows > self.num_perm:
                out.append(f"{where}.bands: bands x rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return out + below_minimum(where, self, keep_per_cluster=1, top_templates=0)

    def steps(self) -> list[Step]:
        given = self.bands and self.rows
        bands, rows = (self.bands, self.rows) if given else lsh_params(self.threshold, self.num_perm, self.verify)
        shingle = _Shingle(
            self.fields, self.template, self.include_input, self.ngram, self.unit, self.num_perm, self.seed
        )
        cluster = _Cluster(
            self.template,
            self.ngram,
            self.num_perm,
            self.threshold,
            bands,
            rows,
            self.seed,
            self.verify,
            self.scope,
            self.keep_per_cluster,
            self.rank_by,
            self.top_templates,
            self.fields,
            self.include_input,
            self.unit,
        )
        return [shingle, cluster]


def unique_cluster_names(named: pl.DataFrame, data: pl.DataFrame) -> pl.DataFrame:
    """`named` (`_row`, `_label`, `dup_cluster`: the smallest id of each cluster, a record's own id when
    alone) with a name that two clusters share made unique. Ids are unique only within a source (two
    sources' `id_field` may both hold "11"), and identical records share theirs until the ledger adds
    `~2` suffixes; a shared name would merge unrelated clusters for the validation split, the report and
    `curate inspect --cluster`. The cluster whose representative (smallest id, then source, then input
    order) comes first keeps the plain name; the others get `@<source>` and, if that is shared still,
    `~2`, `~3`, ... after it."""
    labels = named.select("_label", "dup_cluster").unique("_label")
    shared = labels.filter(pl.col("dup_cluster").is_duplicated())
    if shared.is_empty():
        return named
    source = pl.col("source") if "source" in data.columns else pl.lit(None, pl.String).alias("source")
    members = named.select("_row", "_label", "dup_cluster").join(data.select("_row", "id", source), on="_row")
    representatives = (
        members.filter(pl.col("_label").is_in(shared["_label"].implode()) & (pl.col("id") == pl.col("dup_cluster")))
        .sort("source", "_row")
        .unique("_label", keep="first", maintain_order=True)
        .sort("dup_cluster", "source", "_row")
    )
    ranked = representatives.with_columns(pl.int_range(pl.len()).over("dup_cluster").alias("_rank"))
    renames = ranked.filter(pl.col("_rank") > 0).select(  # the first cluster of a shared name keeps it
        "_label", pl.concat_str("dup_cluster", pl.lit("@"), pl.col("source").fill_null("")).alias("_candidate")
    )
    names = labels["dup_cluster"].drop_nulls()
    clash = renames["_candidate"].is_duplicated() | renames["_candidate"].is_in(names.implode())
    new = renames.filter(~clash).rename({"_candidate": "_renamed"})
    if clash.any():  # rare: a source whose records share an id, or an id that is some `x@source` already
        taken = set(names.to_list()) | set(new["_renamed"].to_list())
        rows = renames.filter(clash).select("_label", "_candidate").rows()
        fixed = pl.DataFrame(
            {"_label": [label for label, _ in rows], "_renamed": [free_name(c, taken) for _, c in rows]},
            schema=new.schema,
        )
        new = pl.concat([new, fixed])
    return (
        named.join(new, on="_label", how="left", maintain_order="left")
        .with_columns(pl.coalesce("_renamed", "dup_cluster").alias("dup_cluster"))
        .drop("_renamed")
    )
