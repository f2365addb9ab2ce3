"""Pain classifiers: LBP+SVM and ResNet-18 (one module per kind, listed in registry.py), their training,
evaluation and safe loading."""

from .base import TASKS, PainClassifier
from .registry import KINDS, load_classifier

__all__ = ["KINDS", "TASKS", "PainClassifier", "load_classifier"]
