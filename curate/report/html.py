"""The report page: one self-contained HTML file (inline CSS and SVG, no scripts, no network).

Each section is rendered only when its data exists (a stage that did not run has no section). Every
value goes through `markup.h`, which escapes it; long tables show the `TOP` rows and fold the rest into
a <details> element, so the page stays small for 100 sources and millions of records.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from curate.report import svg
from curate.report.data import OTHERS, TOP, Histogram, ReportData
from curate.report.markup import Child, Markup, h

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1000px;padding:1em 1.5em;
color:#222}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #4e79a7;padding-bottom:.2em;margin-top:2em}
h3{margin:1.2em 0 .4em}nav a{margin-right:1em}.meta{color:#666}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}th,td{padding:3px 8px;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr.others td{font-style:italic;color:#555}details{margin:.4em 0}summary{cursor:pointer;color:#4e79a7}
svg.chart{display:block;margin:.5em 0;font-size:11px}svg text.v{fill:#555}svg .axis{stroke:#888}
svg .grid{stroke:#eee}pre{white-space:pre-wrap;word-break:break-word;background:#f6f6f6;padding:.4em .6em;
margin:.2em 0;font-size:12px;max-height:12em;overflow:auto}.grid2{display:grid;grid-template-columns:1fr 1fr;gap:1em}
"""
EXAMPLE_CHARS = 400


def pct(x: float) -> str:
    return f"{x:.1%}"


def num(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:,.4g}" if abs(x) < 1000 else f"{x:,.0f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def table(header: Sequence[str], rows: Sequence[Sequence[Child]], numeric: set[int] | None = None) -> Markup:
    """A table; columns in `numeric` (default: all but the first) are right-aligned."""
    numeric = set(range(1, len(header))) if numeric is None else numeric

    def cells(row: Sequence[Child], tag: str) -> list[Markup]:
        return [h(tag, value, class_="n" if i in numeric else None) for i, value in enumerate(row)]

    body = [h("tr", cells(r, "td"), class_="others" if str(r[0]).startswith(OTHERS) else None) for r in rows]
    return h("table", h("thead", h("tr", cells(header, "th"))), h("tbody", body))


def folded(
    header: Sequence[str], rows: Sequence[Sequence[Child]], what: str, top: int = TOP, numeric: set[int] | None = None
) -> Markup:
    """The first `top` rows, the rest in a <details>."""
    if len(rows) <= top:
        return table(header, rows, numeric)
    rest = h("details", h("summary", f"the other {len(rows) - top:,} {what}"), table(header, rows[top:], numeric))
    return Markup(table(header, rows[:top], numeric) + rest)


def section(key: str, title: str, *body: Child) -> tuple[str, str, Markup]:
    return key, title, h("section", h("h2", title), *body, id=key)


def overview(d: ReportData) -> tuple[str, str, Markup]:
    m = d.manifest
    sources = m.get("sources", {})
    order = sorted(sources, key=lambda s: -sources[s].get("records_in", 0))
    rows = [
        [
            name,
            num(s.get("records_in")),
            num(s.get("records_kept")),
            num(s.get("records_dropped")),
            num(s.get("records_quarantined")),
            num(s.get("records_out")),
            num(s.get("tokens_available")),
            num(s.get("tokens_out")),
        ]
        for name, s in ((n, sources[n]) for n in order)
    ]
    header = ["source", "records in", "kept", "dropped", "quarantined", "records out", "tokens kept", "tokens out"]
    chart = svg.paired_bar_chart(
        [(n, sources[n].get("records_in", 0), sources[n].get("records_out", 0)) for n in order[:TOP]],
        "records in and out per source",
        ("records in", "records out"),
    )
    t = m.get("totals", {})
    summary = h(
        "p",
        f"{num(t.get('records_in'))} records in → {num(t.get('records_out'))} out "
        f"({num(t.get('tokens_out'))} tokens); {num(t.get('records_quarantined'))} quarantined; "
        f"{len(sources)} sources.",
    )
    splits = m.get("splits") or {}
    split_line = (
        h(
            "p",
            "splits: "
            + "; ".join(
                f"{k} {num(v.get('records'))} records, {num(v.get('tokens'))} tokens" for k, v in splits.items()
            ),
        )
        if splits
        else None
    )
    return section("overview", "Overview", summary, split_line, chart, folded(header, rows, "sources"))


def funnel(d: ReportData) -> tuple[str, str, Markup]:
    rows = []
    for r in d.reasons:
        details = ", ".join(f"{k} {v:,}" for k, v in r["details"]) if r["n_details"] > 1 or r["details"] else ""
        if r["n_details"] > len(r["details"]) and r["details"]:
            details += f", … ({r['n_details']:,} distinct)"
        rows.append([r["stage"] or "–", r["status"], r["code"] or "–", num(r["n"]), num(r["sources"]), details])
    body: list[Child] = [svg.funnel(d.funnel, "records remaining after each stage")]
    if rows:
        body += [
            h("h3", "Why records were removed"),
            folded(["stage", "status", "reason", "records", "sources", "details"], rows, "reasons", numeric={3, 4}),
        ]
    return section("funnel", "Ledger funnel", *body)


def clusters(d: ReportData) -> tuple[str, str, Markup] | None:
    stats = d.manifest.get("stage_stats", {}).get("minhash_dedup")
    if d.cluster_sizes is None and not stats:
        return None
    body: list[Child] = []
    if stats:
        keys = ("records", "records_in_clusters", "clusters", "dropped", "template_ngrams")
        body.append(h("p", "; ".join(f"{k.replace('_', ' ')}: {num(stats[k])}" for k in keys if k in stats)))
    if d.cluster_sizes is not None:
        hist = d.cluster_sizes
        labels = [_size_label(hist.edges[i], hist.edges[i + 1]) for i in range(len(hist.counts))]
        body.append(h("h3", "Cluster sizes"))
        body.append(svg.bar_chart(list(zip(labels, hist.counts, strict=True)), "clusters by size (records)"))
    if d.templates:
        body.append(h("h3", f"Largest clusters ({len(d.templates)} of {d.templates_total:,}; all in templates.jsonl)"))
        for t in d.templates:
            sources = ", ".join(f"{s['source']} {s['records']:,}" for s in t["sources"] or [])
            examples = [h("pre", f"[{e['source']} {e['id']}] {_cut(e['text'] or '')}") for e in (t["examples"] or [])]
            head = f"{t['size']:,} records ({t['kept']:,} kept) · {sources} · "
            body.append(h("details", h("summary", head, h("code", _cut(t["skeleton"] or "", 160))), examples))
    return section("clusters", "Near-duplicate clusters", *body)


def _size_label(lo: float, hi: float) -> str:
    return f"{int(lo)}" if hi - lo <= 1 else f"{int(lo)}–{int(hi) - 1}"


def _cut(text: str, n: int = EXAMPLE_CHARS) -> str:
    return text if len(text) <= n else text[:n] + f" … ({len(text):,} chars)"


def _score_block(x: Histogram, title: str) -> list[Child]:
    fmt: Callable[[float], str] = (lambda v: f"{10**v:,.0f}") if x.log10 else svg._num
    lo = min(min(r[1] for r in x.by_source), x.edges[0]) if x.by_source else x.edges[0]
    hi = max(max(r[3] for r in x.by_source), x.edges[-1]) if x.by_source else x.edges[-1]
    rows = [[r[0], fmt(r[1]), fmt(r[2]), fmt(r[3]), fmt(r[4]), num(r[5])] for r in x.by_source]
    return [
        h("h3", title),
        svg.histogram(x.edges, x.counts, f"{x.column}: all output records", fmt),
        svg.ranges(
            [(r[0], r[1], r[2], r[3]) for r in x.by_source], lo, hi, f"{x.column} per source: p10–p90, median", fmt
        ),
        h(
            "details",
            h("summary", f"{x.column} per source"),
            table(["source", "p10", "median", "p90", "mean", "records"], rows),
        ),
    ]


def scores(d: ReportData) -> tuple[str, str, Markup] | None:
    body: list[Child] = []
    if d.tokens is not None:
        body += _score_block(d.tokens, "Tokens per record (log scale)")
    for x in d.histograms:
        body += _score_block(x, x.column)
    if d.cot:
        body.append(h("h3", f"Chain of thought: {pct(d.cot['overall'])} of output records"))
        shares = [(s, share) for s, share, _ in d.cot["sources"]]
        title = "CoT share per source" + (f" (the {TOP} largest)" if len(shares) > TOP else "")
        body.append(svg.bar_chart(shares[:TOP], title, pct, svg.COLORS[2]))
        if d.cot["styles"]:
            body.append(svg.bar_chart(d.cot["styles"], "CoT styles (records)"))
    if d.languages:
        body.append(h("h3", "Languages"))
        body.append(svg.bar_chart(d.languages["overall"], "output records per language", color=svg.COLORS[4]))
        rows = [[s, ", ".join(f"{lang} {pct(share)}" for lang, share in top)] for s, top in d.languages["sources"]]
        body.append(folded(["source", "top languages"], rows, "sources", numeric=set()))
    if not body:
        return None
    return section(
        "scores", "Scores and tags per source", h("p", "Computed over the output shards.", class_="meta"), *body
    )


DIVERSITY_KEYS = (
    "records",
    "mean_pairwise_distance",
    "distinct_1",
    "distinct_2",
    "cluster_entropy_norm",
    "clustered_share",
)


def diversity(d: ReportData) -> tuple[str, str, Markup] | None:
    div = d.manifest.get("diversity") or {}
    stats = d.manifest.get("stage_stats", {}).get("diversity") or {}
    if not div.get("mixture") and not div.get("sources") and not stats:
        return None
    body: list[Child] = []
    if div.get("mixture") or div.get("sources"):
        rows = (
            [["mixture", *[num((div.get("mixture") or {}).get(k)) for k in DIVERSITY_KEYS]]]
            if div.get("mixture")
            else []
        )
        sources = div.get("sources", {})
        rows += [[s, *[num(v.get(k)) for k in DIVERSITY_KEYS]] for s, v in sources.items()]
        body += [h("h3", "The output mixture (sample)"), folded(["", *DIVERSITY_KEYS], rows, "sources")]
        bars = [(s, float(v.get("mean_pairwise_distance") or 0)) for s, v in sources.items()]
        body.append(svg.bar_chart(sorted(bars, key=lambda r: -r[1])[:TOP], "mean pairwise distance per source"))
    if stats.get("sources"):
        keys = ("records", "diversity_mean", "diversity_p10", "diversity_p50")
        rows = [[s, *[num(v.get(k)) for k in keys]] for s, v in stats["sources"].items()]
        if stats.get("overall"):
            rows.insert(0, ["all kept records", *[num(stats["overall"].get(k)) for k in keys]])
        body += [h("h3", "Per-record novelty (`diversity` column, kept records)"), folded(["", *keys], rows, "sources")]
    return section("diversity", "Diversity", *body)


def mixture(d: ReportData) -> tuple[str, str, Markup] | None:
    m = d.manifest
    mix = m.get("mixture")
    sources = m.get("sources", {})
    body: list[Child] = []
    total = sum(d.kind_tokens.values())
    if total:
        body.append(
            h(
                "p",
                f"Replay share (pretrain tokens): {pct(d.kind_tokens.get('pretrain', 0) / total)}; "
                + ", ".join(f"{k} {num(v)} tokens" for k, v in sorted(d.kind_tokens.items())),
            )
        )
    if mix:
        order = sorted(sources, key=lambda s: -sources[s].get("target_share", 0))
        body.append(
            h("p", f"total {num(mix.get('total_tokens'))} tokens; binding source: {mix.get('binding_source') or '–'}")
        )
        body.append(
            svg.paired_bar_chart(
                [(s, sources[s].get("target_share", 0), sources[s].get("realized_share", 0)) for s in order[:TOP]],
                "target and realized token share per source",
                ("target", "realized"),
                pct,
            )
        )
        rows = [
            [
                s,
                pct(v.get("target_share", 0)),
                pct(v.get("realized_share", 0)),
                num(v.get("epochs")),
                num(v.get("epochs_realized")),
                num(v.get("max_epochs")),
                num(v.get("tokens_out")),
            ]
            for s, v in ((s, sources[s]) for s in order)
        ]
        body.append(
            folded(
                ["source", "target", "realized", "epochs planned", "epochs used", "max epochs", "tokens out"],
                rows,
                "sources",
            )
        )
        body += groups(mix.get("groups"))
        if isinstance(mix.get("validation"), dict):
            rows = [[k, _value(v)] for k, v in _flatten(mix["validation"])]
            body += [h("h3", "Validation split"), folded(["figure", "value"], rows, "figures", 30, numeric=set())]
    if not body:
        return None
    return section("mixture", "Mixture", *body)


def groups(raw: Any) -> list[Child]:
    """Mixture groups, whatever their layout: a {name: {...}} table or a list of {name, ...} rows."""
    if not raw:
        return []
    if isinstance(raw, dict):
        items = list(raw.items())
    else:
        items = [(g.get("group", g.get("name", str(i))), g) for i, g in enumerate(raw) if isinstance(g, dict)]
    items = [(name, g) for name, g in items if isinstance(g, dict)]
    if not items:
        return []
    skip = ("group", "name")
    keys = sorted({k for _, g in items for k, v in g.items() if k not in skip and not isinstance(v, dict | list)})
    rows = [[name, *[num(g.get(k)) for k in keys]] for name, g in items]
    out: list[Child] = [h("h3", "Groups"), folded(["group", *keys], rows, "groups")]
    target = next((k for k in ("target_share", "weight", "target") if k in keys), None)
    realized = next((k for k in ("realized_share", "realized") if k in keys), None)
    if target and realized:
        pairs = [(name, float(g.get(target) or 0), float(g.get(realized) or 0)) for name, g in items][:TOP]
        out.insert(1, svg.paired_bar_chart(pairs, "target and realized share per group", ("target", "realized"), pct))
    return out


def shards(d: ReportData) -> tuple[str, str, Markup] | None:
    rows = d.manifest.get("shards") or []
    if not rows:
        return None
    summary: dict[tuple[str, str], list[int]] = {}
    for s in rows:
        agg = summary.setdefault((s.get("split", "train"), s["format"]), [0, 0, 0, 0])
        agg[0] += 1
        agg[1] += s.get("records", 0)
        agg[2] += s.get("tokens", 0)
        agg[3] += d.shard_sizes.get(s["path"], 0)
    table_rows = [
        [split, fmt, num(a[0]), num(a[1]), num(a[2]), f"{a[3] / 1e6:,.2f} MB"] for (split, fmt), a in summary.items()
    ]
    files = [
        [s["path"], s.get("split", "train"), num(s.get("records")), num(s.get("tokens")), s.get("sha256", "")[:16]]
        for s in rows
    ]
    body: list[Child] = [table(["split", "format", "files", "records", "tokens", "size"], table_rows, {2, 3, 4, 5})]
    shown = files[:200]
    more = h("p", f"… and {len(files) - 200:,} more in manifest.json") if len(files) > 200 else None
    body.append(
        h(
            "details",
            h("summary", f"{len(files):,} files"),
            table(["path", "split", "records", "tokens", "sha256"], shown, {2, 3}),
            more,
        )
    )
    return section("output", "Output shards and formats", *body)


def stage_stats(d: ReportData) -> tuple[str, str, Markup] | None:
    shown = {"minhash_dedup", "diversity"}
    rest = {k: v for k, v in (d.manifest.get("stage_stats") or {}).items() if k not in shown}
    if not rest:
        return None
    body: list[Child] = []
    for name, stats in sorted(rest.items()):
        rows = [[k, _value(v)] for k, v in _flatten(stats)]
        body += [h("h3", name), folded(["figure", "value"], rows, "figures", 30, numeric=set())]
    return section("stage_stats", "Other stage statistics", *body)


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _flatten(v, f"{prefix}{k}.")]
    return [(prefix.rstrip("."), value)]


def _value(v: Any) -> str:
    return num(v) if isinstance(v, int | float) else _cut(json.dumps(v, ensure_ascii=False), 200)


def warnings(d: ReportData) -> tuple[str, str, Markup] | None:
    items = d.manifest.get("warnings") or []
    if not items:
        return None
    shown = [h("li", _cut(w, 300)) for w in items[:50]]
    more = h("p", f"… and {len(items) - 50:,} more in manifest.json") if len(items) > 50 else None
    return section("warnings", f"Warnings ({len(items):,})", h("ul", shown), more)


SECTIONS = (overview, funnel, clusters, scores, diversity, mixture, stage_stats, shards, warnings)


def page(d: ReportData) -> str:
    """The whole report as an HTML document."""
    m = d.manifest
    parts = [s for s in (fn(d) for fn in SECTIONS) if s is not None]
    meta = f"curate {m.get('curate_version', '?')} · seed {m.get('seed')} · tokenizer {m.get('tokenizer')}"
    nav = h("nav", [h("a", title, href=f"#{key}") for key, title, _ in parts])
    doc = h(
        "html",
        h(
            "head",
            h("meta", charset="utf-8"),
            h("title", f"curate report: {m.get('pipeline', '')}"),
            h("style", Markup(CSS)),
        ),
        h(
            "body",
            h("h1", f"curate report: {m.get('pipeline', '')}"),
            h("p", meta, class_="meta"),
            nav,
            [p[2] for p in parts],
        ),
        lang="en",
    )
    return "<!doctype html>\n" + doc + "\n"
