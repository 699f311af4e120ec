"""`train_classifier`: train a fastText supervised classifier on records from curate sources.

Each class is read from one or more sources (paths read with curate's ingest, or names of sources in a
mixture file), the `field` of each record is preprocessed with `classifier_text`, and 10% of each class
(seeded) is held out. The model is trained on the rest with `thread = 1` and the seed, which makes it
deterministic; it is scored on the held-out part, and with `quantize` compressed to a small `.ftz`
(and scored again, as written).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from curate.classify.metrics import Scores, binary_scores
from curate.classify.model import LABEL_PREFIX, score_texts
from curate.classify.text import FIELDS, Field, classifier_text, field_text
from curate.errors import ConfigError, FatalError

LABEL = re.compile(r"[A-Za-z0-9_-]+")


@dataclass
class TrainResult:
    """What `train_classifier` wrote and how well the model does on the held-out part."""

    model: Path
    label: str
    labels: list[str]
    train_counts: dict[str, int]
    heldout: Scores
    heldout_before_quantize: Scores | None = None
    sources: dict[str, int] = field(default_factory=dict)
    dropped_conflicts: int = 0
    size_bytes: int = 0


def _read(src: str, config, base_dir: Path) -> pl.DataFrame:
    """Records of one SRC: a source name in `config`, or a path / folder / glob."""
    from curate.api import read_source  # curate.api imports this module

    if config is not None:
        by_name = {s.name: s for s in config.sources}
        if src in by_name:
            s = by_name[src]
            if s.data is not None:
                raise ConfigError([f"source {src!r}: in-memory data cannot be read here; give a path"])
            if s.split:
                raise ConfigError(
                    [f"source {src!r}: split = {s.split!r} is not supported here; give the split's folder"]
                )
            return read_source(
                s.path,
                format=s.format,
                name=s.name,
                fields=s.fields or None,
                text_field=s.text_field,
                id_field=s.id_field,
                txt_mode=s.txt_mode,
                base_dir=config.base_dir,
            )
        if not any(c in src for c in "*?[") and not (base_dir / src).exists():
            names = ", ".join(by_name)
            raise ConfigError([f"{src!r} is neither a source of {config.file or 'the config'} ({names}) nor a path"])
    return read_source(src, name="train", base_dir=base_dir)


def _texts(sources: list[str], what: str, fld: Field, max_chars: int, config, base_dir: Path, counts: dict) -> list:
    if not sources:
        raise ConfigError(
            [f"--{what}: give at least one source (a path, folder, glob, or a source name with --config)"]
        )
    texts: list[str] = []
    for src in sources:
        records = _read(src, config, base_dir)
        found = [t for t in (classifier_text(x, max_chars) for x in records.select(field_text(fld)).to_series()) if t]
        if not found:
            raise ConfigError(
                [
                    f"--{what} {src}: no record with text in field {fld!r} ({records.height} records read); "
                    "check the path and format, or choose another --field"
                ]
            )
        counts[f"{what}:{src}"] = len(found)
        texts += found
    return list(dict.fromkeys(texts))  # exact duplicates once


def _split(n: int, holdout: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(n)
    k = min(n - 1, max(1, round(n * holdout)))
    return order[k:], order[:k]


def _fit(job: str) -> None:
    """Worker process: train (and with a `cutoff`, quantize) as the JSON file `job` says; writes model.bin
    (and model.ftz) into its folder. Run by `train_classifier` as `python -m curate.classify.train JOB`."""
    import fasttext

    spec = json.loads(Path(job).read_text(encoding="utf-8"))
    folder = Path(spec["folder"])
    model = fasttext.train_supervised(input=spec["train_file"], **spec["settings"])
    model.save_model(str(folder / "model.bin"))
    if spec["cutoff"] is not None:
        model.quantize(input=spec["train_file"], qnorm=True, cutoff=spec["cutoff"], retrain=True, thread=1, verbose=0)
        model.save_model(str(folder / "model.ftz"))


def _run_fit(folder: Path, train_file: Path, settings: dict, cutoff: int | None) -> None:
    """Train in a fresh process whose heap allocations are zero-filled (glibc `MALLOC_PERTURB_=255`):
    fastText 0.9.3 reads memory it never initialised (with `wordNgrams = 1`, and whenever its process
    has freed memory before), which makes training diverge ("Encountered NaN") at random. Zero-filled,
    the same input gives the same model every time."""
    job = folder / "job.json"
    spec = {"folder": str(folder), "train_file": str(train_file), "settings": settings, "cutoff": cutoff}
    job.write_text(json.dumps(spec), encoding="utf-8")
    package_root = str(Path(__file__).resolve().parents[2])  # so the child imports this same curate
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "MALLOC_PERTURB_": "255", "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, "-m", "curate.classify.train", str(job)], env=env, capture_output=True, text=True
    )
    if done.returncode:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit code {done.returncode}"
        hint = "; try a lower --lr" if "NaN" in last else ""
        raise FatalError(f"fastText training failed: {last}{hint}")


def train_classifier(
    positive: list[str],
    negative: list[str],
    out: str | Path,
    *,
    label: str = "positive",
    negative_label: str = "negative",
    field: Field = "response",
    config: str | Path | None = None,
    quantize: bool = False,
    seed: int = 0,
    epoch: int = 10,
    lr: float = 0.1,
    word_ngrams: int = 2,
    dim: int = 32,
    min_count: int = 2,
    bucket: int = 200_000,
    cutoff: int = 20_000,
    holdout: float = 0.1,
    max_chars: int = 2000,
    base_dir: str | Path | None = None,
) -> TrainResult:
    """Train a fastText classifier: `label` for records of the `positive` sources, `negative_label` for
    the `negative` ones. Sources are paths (file, folder, glob; format auto-detected) or, with `config`,
    names of that mixture file's sources. Writes `out` (with `quantize`: `out` with suffix `.ftz`).

    Texts found in both classes are left out of both. Raises ConfigError for bad input.

    >>> r = curate.train_classifier(["cot.jsonl"], ["plain.jsonl"], "m.bin", quantize=True)  # doctest: +SKIP
    >>> print(r.heldout.line())                                                              # doctest: +SKIP
    """
    import fasttext

    from curate.config import load_config

    problems = []
    for name, value in (("label", label), ("negative_label", negative_label)):
        if not LABEL.fullmatch(value):
            problems.append(f"{name}: {value!r} must match [A-Za-z0-9_-]+")
    if label == negative_label:
        problems.append(f"label and negative_label must differ, both are {label!r}")
    if field not in FIELDS:
        problems.append(f"field: must be one of {', '.join(FIELDS)}, got {field!r}")
    if not 0.0 < holdout < 1.0:
        problems.append(f"holdout: must be between 0 and 1, got {holdout}")
    for name, value in (
        ("epoch", epoch),
        ("word_ngrams", word_ngrams),
        ("dim", dim),
        ("min_count", min_count),
        ("bucket", bucket),
        ("max_chars", max_chars),
    ):
        if value < 1:
            problems.append(f"{name}: must be >= 1, got {value}")
    if lr <= 0:
        problems.append(f"lr: must be > 0, got {lr}")
    out = Path(out)
    if quantize:
        out = out.with_suffix(".ftz")
    if not out.parent.is_dir():
        problems.append(f"out: folder {out.parent} does not exist; create it first")
    if problems:
        raise ConfigError(problems)
    base = Path(base_dir or Path.cwd())
    cfg = load_config(config) if config else None

    counts: dict[str, int] = {}
    pos = _texts(positive, "positive", field, max_chars, cfg, base, counts)
    neg = _texts(negative, "negative", field, max_chars, cfg, base, counts)
    both = set(pos) & set(neg)
    pos = [t for t in pos if t not in both]
    neg = [t for t in neg if t not in both]
    for what, texts in (("positive", pos), ("negative", neg)):
        if len(texts) < 2:
            raise ConfigError([f"--{what}: {len(texts)} distinct text(s) left; each class needs at least 2"])

    rng = np.random.default_rng(seed)
    train, test = [], []
    for name, texts in ((label, pos), (negative_label, neg)):
        fit, held = _split(len(texts), holdout, rng)
        train += [f"{LABEL_PREFIX}{name} {texts[i]}" for i in fit]
        test += [(name == label, texts[i]) for i in held]
    train = [train[i] for i in rng.permutation(len(train))]  # fastText learns in file order

    settings = {
        "epoch": epoch, "lr": lr, "wordNgrams": word_ngrams, "dim": dim, "minCount": min_count, "bucket": bucket,
        "loss": "softmax", "thread": 1, "seed": seed, "verbose": 0,
    }  # fmt: skip
    truth = np.array([is_pos for is_pos, _ in test])
    texts = [t for _, t in test]
    with tempfile.TemporaryDirectory(prefix="curate-train-") as tmp:
        train_file = Path(tmp) / "train.txt"
        train_file.write_text("\n".join(train) + "\n", encoding="utf-8")
        _run_fit(Path(tmp), train_file, settings, cutoff if quantize else None)
        plain = fasttext.load_model(str(Path(tmp) / "model.bin"))
        before = binary_scores(truth, np.array(score_texts(plain, texts, label), dtype=float))
        written = Path(tmp) / ("model.ftz" if quantize else "model.bin")
        model = fasttext.load_model(str(written)) if quantize else plain
        heldout = binary_scores(truth, np.array(score_texts(model, texts, label), dtype=float)) if quantize else before
        shutil.copyfile(written, out)
    return TrainResult(
        model=out,
        label=label,
        labels=[label, negative_label],
        train_counts={label: len(pos) - int(truth.sum()), negative_label: len(neg) - int((~truth).sum())},
        heldout=heldout,
        heldout_before_quantize=before if quantize else None,
        sources=counts,
        dropped_conflicts=len(both),
        size_bytes=out.stat().st_size,
    )


if __name__ == "__main__":
    _fit(sys.argv[1])
