"""fastText text classifiers: the shared text preprocessing, scoring, metrics and training
(`curate train-classifier`, `curate.train_classifier`). The stage that applies a model is
`curate.stages.FasttextClassifier`."""

from curate.classify.model import bundled_model, model_labels, score_texts
from curate.classify.text import FIELDS, classifier_text, field_text
from curate.classify.train import TrainResult, train_classifier

__all__ = [
    "FIELDS",
    "TrainResult",
    "bundled_model",
    "classifier_text",
    "field_text",
    "model_labels",
    "score_texts",
    "train_classifier",
]
