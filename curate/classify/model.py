"""Loading fastText classifiers and scoring texts with them."""

from __future__ import annotations

from pathlib import Path

from curate.errors import FatalError
from curate.stages.language import load_fasttext

LABEL_PREFIX = "__label__"


def bundled_model() -> Path:
    """Path of the reasoning classifier shipped inside the package (`curate/models/reasoning_v1.ftz`)."""
    return Path(__file__).resolve().parent.parent / "models" / "reasoning_v1.ftz"


def model_labels(model) -> list[str]:
    """The labels a loaded fastText model predicts, without the `__label__` prefix."""
    return [label.removeprefix(LABEL_PREFIX) for label in model.f.getLabels("replace")[0]]


def load_classifier(path: str | Path):
    """Load a supervised fastText model once per process (FatalError when missing, unreadable, or not
    a classifier)."""
    model = load_fasttext(str(path))
    if not model.f.getLabels("replace")[0]:
        raise FatalError(
            f"{path} is not a fastText classifier (it has no labels); train one with `curate train-classifier`"
        )
    return model


def score_texts(model, texts: list[str], label: str) -> list[float | None]:
    """Probability of `label` for each preprocessed one-line text; None for an empty text.

    Uses the low-level `f.predict` with k = -1 (every label), which works with numpy 2.
    """
    if label not in model_labels(model):
        raise FatalError(f"the model has no label {label!r}; its labels: {', '.join(model_labels(model))}")
    wanted = LABEL_PREFIX + label
    out: list[float | None] = []
    for text in texts:
        if not text:
            out.append(None)
            continue
        probs = dict((name, prob) for prob, name in model.f.predict(text + "\n", -1, 0.0, "replace"))
        out.append(min(1.0, max(0.0, float(probs.get(wanted, 0.0)))))
    return out
