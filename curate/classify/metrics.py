"""Binary classification figures computed with numpy: precision, recall, F1 at a threshold, ROC AUC."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random negative
    (ties count one half), from the Mann-Whitney rank sum. NaN when one class is absent."""
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata  # here: scipy.stats takes 0.2 s to import, and workers never need it

    ranks = rankdata(np.asarray(scores, dtype=float))
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass(frozen=True)
class Scores:
    """Held-out figures of a binary classifier."""

    n_positive: int
    n_negative: int
    threshold: float
    precision: float
    recall: float
    f1: float
    accuracy: float
    auc: float

    def line(self) -> str:
        return (
            f"precision {self.precision:.3f}  recall {self.recall:.3f}  F1 {self.f1:.3f}  "
            f"accuracy {self.accuracy:.3f}  ROC AUC {self.auc:.4f}  "
            f"(threshold {self.threshold}; {self.n_positive} positive, {self.n_negative} negative)"
        )


def binary_scores(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> Scores:
    """Precision, recall, F1 and accuracy of `score >= threshold`, and the ROC AUC of the scores."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    predicted = scores >= threshold
    tp = int((predicted & labels).sum())
    fp = int((predicted & ~labels).sum())
    fn = int((~predicted & labels).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = float((predicted == labels).mean()) if labels.size else float("nan")
    return Scores(
        int(labels.sum()), int((~labels).sum()), threshold, precision, recall, f1, accuracy, roc_auc(labels, scores)
    )
