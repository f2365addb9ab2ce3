"""Dataset readers (CSV manifest, folder layout) and subject-grouped splits."""

from .datasets import AU_COLUMNS, Dataset, load_dataset, loso_splits

__all__ = ["AU_COLUMNS", "Dataset", "load_dataset", "loso_splits"]
