"""Pain classifiers: LBP+SVM and ResNet-18, their training, evaluation and safe loading."""

from .base import TASKS, PainClassifier, load_classifier

__all__ = ["TASKS", "PainClassifier", "load_classifier"]
