"""`fasttext_classifier`: score records with any fastText classifier (default: the bundled reasoning model)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import polars as pl

from curate.classify.model import bundled_model, load_classifier, model_labels, score_texts
from curate.classify.text import Field, classifier_text, field_text
from curate.errors import CurateError
from curate.params import below_minimum, param
from curate.record import INTERNAL_COLUMNS, RECORD_COLUMNS
from curate.stages.base import Context, MapStep, Stage

#: Models up to this size are loaded while the config is checked, to check `label` early.
CHECK_AT_CONFIG_BYTES = 100_000_000
COLUMN = re.compile(r"[a-z][a-z0-9_]*")


@dataclass
class FasttextClassifier(Stage, MapStep):
    """Score records with a fastText classifier. Reads `text`/`messages`; writes `column`
    (default `fasttext_<label>`); drops no rows.

    The score is the model's probability of `label` (0 to 1) for the record's `field`: `response` (the
    assistant turns), `prompt` (system and user turns) or `all` (the training text); pretrain records
    always give their `text`. The text is prepared as in `curate train-classifier` (cut to `max_chars`,
    lower case, digits as 0, punctuation split, one line). Records with no text in the field (an
    instruction record without an assistant turn) get a null score. The default model is the bundled
    reasoning classifier `reasoning_v1` (labels `reasoning`, `other`; see curate/models/README.md).
    """

    name: ClassVar[str] = "fasttext_classifier"
    reads: ClassVar[tuple[str, ...]] = ("text", "messages", "kind")
    drops_rows: ClassVar[bool] = False

    model: str = param("", "path of a fastText classifier, .bin or .ftz (default: bundled reasoning_v1.ftz)")
    label: str = param("reasoning", "the label whose probability is written")
    column: str = param("", "output column (default fasttext_<label>)")
    field: Field = param("response", "what the model reads: response, prompt or all (pretrain: text)")
    max_chars: int = param(2000, "characters of each record the model reads")

    @property
    def writes(self) -> tuple[str, ...]:  # type: ignore[override]
        """The one column it adds, named by `column` (or `label`): always current, even after edits."""
        return (self.output_column,)

    @property
    def output_column(self) -> str:
        return self.column or f"fasttext_{self.label.lower().replace('-', '_')}"

    @property
    def model_path(self) -> str:
        return self.model or str(bundled_model())

    def problems(self, where: str) -> list[str]:
        out = below_minimum(where, self, max_chars=1)
        col = self.output_column
        if col in RECORD_COLUMNS or col in INTERNAL_COLUMNS or not COLUMN.fullmatch(col):
            out.append(
                f"{where}.column: {col!r} must be a new column name matching [a-z][a-z0-9_]* "
                f"(not one of {', '.join(RECORD_COLUMNS)})"
            )
        path = Path(self.model_path)
        if not path.is_file():
            out.append(f"{where}.model: file not found: {self.model_path}")
        elif path.stat().st_size <= CHECK_AT_CONFIG_BYTES:
            try:
                labels = model_labels(load_classifier(path))
            except CurateError as exc:
                return [*out, f"{where}.model: {exc}"]
            if self.label not in labels:
                out.append(f"{where}.label: the model has no label {self.label!r}; its labels: {', '.join(labels)}")
        return out

    def bind(self, base: Path) -> None:
        """A relative `model` path is relative to the config file's folder."""
        if self.model:
            path = Path(self.model).expanduser()
            self.model = str(path if path.is_absolute() else base / path)

    def fingerprint(self) -> str:
        """Parameters plus the model file's size and modification time (a retrained model is new)."""
        path = Path(self.model_path)
        if not path.is_file():
            return super().fingerprint()
        stat = path.stat()
        return f"{super().fingerprint()}:{stat.st_size}:{stat.st_mtime_ns}"

    def apply(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        model = load_classifier(self.model_path)  # once per process; FatalError naming the labels if wrong
        texts = [classifier_text(t, self.max_chars) for t in df.select(field_text(self.field)).to_series()]
        return df.with_columns(pl.Series(self.output_column, score_texts(model, texts, self.label), pl.Float64))
