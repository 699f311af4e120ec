"""report.html: its sections exist exactly when their data does, every chart has data, all data is
escaped, and the page stays small for many sources and records."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

import curate
from curate.cli import main
from curate.report import svg
from curate.report.markup import Markup, h
from tests.conftest import write_jsonl
from tests.report_helpers import build_rich


class Page(HTMLParser):
    """Sections (by id), nav links, and each <svg class="chart"> with its data-points and marks."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.links: list[str] = []
        self.charts: list[dict] = []
        self.tags: list[str] = []
        self._chart: dict | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            self.sections.append(a["id"])
        elif tag == "a" and a.get("href", "").startswith("#"):
            self.links.append(a["href"][1:])
        elif tag == "svg" and a.get("class") == "chart":
            self._chart = {"points": int(a["data-points"]), "marks": 0, "title": a.get("aria-label"), "section": ""}
            self._chart["section"] = self.sections[-1] if self.sections else ""
            self.charts.append(self._chart)
        elif tag in ("rect", "circle") and self._chart is not None and "title" not in a:
            self._chart["marks"] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._chart = None


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def rich(tmp_path_factory):
    return build_rich(tmp_path_factory.mktemp("rich"))


def test_every_build_writes_a_report_with_all_sections_and_charts(rich):
    page = parse(rich.output / "report.html")
    assert page.sections == ["overview", "funnel", "clusters", "scores", "diversity", "mixture", "output"]
    assert page.links == page.sections
    titles = [c["title"] for c in page.charts]
    for expected in (
        "records in and out per source",
        "records remaining after each stage",
        "clusters by size (records)",
        "reasoning_depth: all output records",
        "fasttext_reasoning per source: p10–p90, median",
        "CoT share per source",
        "output records per language",
        "mean pairwise distance per source",
        "target and realized token share per source",
        "target and realized share per group",
    ):
        assert expected in titles
    for chart in page.charts:
        assert chart["points"] > 0, chart
        assert chart["marks"] >= chart["points"], chart


def test_report_figures_match_the_output(rich):
    html = (rich.output / "report.html").read_text(encoding="utf-8")
    m = rich.manifest
    assert f"{m['totals']['records_in']:,} records in → {m['totals']['records_out']:,} out" in html
    cot = pl.scan_parquet(rich.output / "shards" / "*.parquet").select(pl.col("cot").mean()).collect().item()
    assert f"Chain of thought: {cot:.1%} of output records" in html
    largest = json.loads((rich.output / "templates.jsonl").read_text().splitlines()[0])
    assert f"{largest['size']:,} records ({largest['kept']:,} kept)" in html
    assert "Validation split" in html  # the mixture's held-out split


def test_sections_of_stages_that_did_not_run_are_left_out(tmp_path, small_pipeline):
    result = curate.build(small_pipeline, base_dir=tmp_path)
    page = parse(result.output / "report.html")
    assert "clusters" not in page.sections
    assert "diversity" not in page.sections
    assert "mixture" in page.sections  # the replay share (pretrain tokens) is known without a mixture
    html = (result.output / "report.html").read_text(encoding="utf-8")
    for absent in ("reasoning_depth", "Chain of thought", "Languages", "target and realized"):
        assert absent not in html
    for chart in page.charts:
        assert chart["points"] > 0


def test_record_text_is_escaped(tmp_path):
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    write_jsonl(
        tmp_path / "a.jsonl", [{"text": f"{evil} template number {i} with shared words here"} for i in range(6)]
    )
    cfg = {
        "pipeline": {"name": "evil", "output": "out"},
        "sources": [{"name": "a", "path": "a.jsonl"}],
        "stages": [{"use": "minhash_dedup", "template": True, "keep_per_cluster": 1}],
    }
    result = curate.build(cfg, base_dir=tmp_path)
    html = (result.output / "report.html").read_text(encoding="utf-8")
    assert "templates" in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    page = parse(result.output / "report.html")
    assert "script" not in page.tags and "img" not in page.tags


def test_curate_report_regenerates_the_page(rich):
    path = rich.output / "report.html"
    before = path.read_bytes()
    path.unlink()
    result = CliRunner().invoke(main, ["report", str(rich.output)])
    assert result.exit_code == 0, result.output
    assert path.read_bytes() == before  # deterministic
    assert curate.report(rich.output) == path


def test_report_of_a_folder_that_is_not_an_output(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 1
    assert "not a curate output" in result.output


def fake_output(folder: Path, sources: int, records: int) -> Path:
    """An output folder with `sources` sources and `records` records (no build: the report reads files)."""
    rng = np.random.default_rng(0)
    names = [f"src{i:03d}" for i in range(sources)]
    source = np.array(names)[rng.integers(0, sources, records)]
    shards = folder / "shards"
    shards.mkdir(parents=True)
    frame = pl.DataFrame(
        {
            "id": [f"r{i}" for i in range(records)],
            "source": source,
            "kind": np.where(rng.random(records) < 0.3, "pretrain", "instruction"),
            "n_tokens": rng.integers(5, 5000, records),
            "reasoning_depth": rng.random(records),
            "cot": rng.random(records) < 0.4,
            "lang": np.array(["en", "de", "zh"])[rng.integers(0, 3, records)],
            "dup_cluster": [f"c{i % (records // 3)}" for i in range(records)],
        }
    )
    frame.write_parquet(shards / "train-00000.parquet")
    ledger = frame.select("id", "source").with_columns(
        pl.lit("x.jsonl").alias("file"),
        pl.int_range(pl.len()).alias("line"),
        pl.when(pl.col("id").str.ends_with("7")).then(pl.lit("dropped")).otherwise(pl.lit("kept")).alias("status"),
    )
    ledger = ledger.with_columns(
        pl.when(pl.col("status") == "dropped").then(pl.lit("filter")).alias("stage"),
        pl.when(pl.col("status") == "dropped").then(pl.concat_str(pl.lit("near_duplicate:"), "id")).alias("reason"),
        pl.lit(1).alias("times_sampled"),
    )
    ledger.write_parquet(folder / "ledger.parquet")
    per = frame.group_by("source").agg(pl.len(), pl.col("n_tokens").sum())
    manifest = {
        "pipeline": "big",
        "totals": {"records_in": records, "records_out": records, "tokens_out": int(frame["n_tokens"].sum())},
        "stages": [{"use": "filter"}],
        "sources": {
            r["source"]: {"records_in": r["len"], "records_out": r["len"], "tokens_out": r["n_tokens"]}
            for r in per.iter_rows(named=True)
        },
        "shards": [{"path": "shards/train-00000.parquet", "format": "parquet", "split": "train", "records": records}],
        "mixture": None,
        "warnings": [f"warning {i}" for i in range(500)],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    templates = [
        {
            "cluster": f"c{i}",
            "size": 3 + i,
            "kept": 1,
            "sources": {"src000": 3 + i},
            "skeleton": "s",
            "examples": [{"id": "r1", "source": "src000", "text": "x" * 5000}],
        }
        for i in range(500)
    ]
    (folder / "templates.jsonl").write_text("".join(json.dumps(t) + "\n" for t in templates))
    return folder


def test_report_stays_bounded_for_many_sources_and_records(tmp_path):
    out = fake_output(tmp_path / "big", sources=150, records=200_000)
    path = curate.report(out)
    size = path.stat().st_size
    assert size < 600_000, size
    page = parse(path)
    assert {"overview", "funnel", "clusters", "scores", "warnings"} <= set(page.sections)
    html = path.read_text(encoding="utf-8")
    assert "(others) 130 sources" in html  # per-source ranges: 20 largest, then the rest together
    assert "the other 130 sources" in html  # long tables fold into <details>
    assert "20 of 500" in html and "… and 450 more in manifest.json" in html
    for chart in page.charts:
        assert 0 < chart["points"] <= 40, chart


@given(st.lists(st.tuples(st.text(max_size=40), st.floats(0, 1e9)), min_size=1, max_size=30))
def test_bar_chart_has_one_bar_per_row_and_escapes_labels(rows):
    chart = svg.bar_chart(rows, "t<i>tle")
    page = Page()
    page.feed(chart)
    assert len(page.charts) == 1
    assert page.charts[0]["points"] == len(rows) == page.charts[0]["marks"]
    assert set(page.tags) <= {"svg", "title", "text", "rect"}


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=50))
def test_histogram_bars_are_the_nonzero_bins(counts):
    edges = [float(i) for i in range(len(counts) + 1)]
    chart = svg.histogram(edges, counts, "h")
    if sum(counts) == 0:
        assert chart == ""
        return
    page = Page()
    page.feed(chart)
    assert page.charts[0]["points"] == sum(1 for c in counts if c)
    assert page.charts[0]["marks"] == len(counts)


def test_markup_escapes_text_and_attributes_but_not_markup():
    assert h("td", "<b>&") == "<td>&lt;b&gt;&amp;</td>"
    assert h("a", "x", href='"><script>') == '<a href="&quot;&gt;&lt;script&gt;">x</a>'
    assert h("td", Markup("<b>ok</b>"), None, [1, "<"]) == "<td><b>ok</b>1&lt;</td>"
