"""Face-crop datasets: a CSV manifest (path,subject,label[,orbital,nose,ears,whiskers]) or folders
ROOT/<subject>/<label>/*, and subject-grouped splits (no animal ever in both train and test)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from ..tables import read_rows
from ..imaging import IMAGE_EXTS, read_image
from ..types import ACTION_UNITS

LABELS = {"0": 0, "1": 1, "2": 2, "none": 0, "no_pain": 0, "nopain": 0, "no pain": 0, "moderate": 1, "severe": 2}
AU_COLUMNS = ACTION_UNITS


class ImageFiles(Sequence):
    """Image files as a sequence of pictures read on access (a slice gives a list); an unreadable one is a
    DatasetError naming it."""

    def __init__(self, paths: list[Path]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        img, why = read_image(self.paths[index])
        if img is None:
            raise DatasetError(f"cannot read image {self.paths[index]}: {why}")
        return img


@dataclass
class Dataset:
    paths: list[Path]
    subjects: np.ndarray  # (N,) str
    labels: np.ndarray  # (N,) int 0 none, 1 moderate, 2 severe
    aus: np.ndarray | None  # (N, 4) float, NaN where not labelled; None when the dataset has no AU columns
    source: str

    def __len__(self) -> int:
        return len(self.paths)

    def targets(self, task: str) -> np.ndarray:
        """Binary: 0 no pain, 1 pain (moderate + severe). 3class: the labels as they are. A task whose classes are
        not all present cannot be learnt or evaluated: a DatasetError that says which are missing."""
        y = (self.labels > 0).astype(np.int64) if task == "binary" else self.labels.copy()
        names = ("no pain", "pain") if task == "binary" else ("none", "moderate", "severe")
        missing = [n for k, n in enumerate(names) if not (y == k).any()]
        if missing:
            raise DatasetError(f"{self.source}: no crop labelled {' or '.join(missing)} among {len(y)}; a {task} "
                               "model needs every class labelled on some crops")
        return y

    @property
    def has_aus(self) -> bool:
        """At least one AU label anywhere (missing ones are NaN and are left out of the AU losses)."""
        return self.aus is not None and bool(np.isfinite(self.aus).any())

    def images(self) -> ImageFiles:
        """The crops, read from disk when asked for (never all held at once: 100,000 crops held as pixels took
        more than 24 GB)."""
        return ImageFiles(self.paths)

    def summary(self) -> dict:
        counts = np.bincount(self.labels, minlength=3)
        return {"source": self.source, "images": len(self), "subjects": sorted(set(self.subjects.tolist())),
                "none": int(counts[0]), "moderate": int(counts[1]), "severe": int(counts[2])}

    def grouping_problem(self) -> str | None:
        """In words, why folds by this dataset's subject column would not be folds by animal, or None. A column
        holding one id per image (a file name, a frame number) makes leave-one-subject-out a split by image:
        the same animal in training and test, and figures that overstate what the model does on a new animal."""
        n_images, n_subjects = len(self), len(set(self.subjects.tolist()))
        if n_subjects < 3:
            return (f"only {n_subjects} animal(s): leave-one-subject-out has {n_subjects} fold(s), and its figures "
                    "say little about a new animal; label crops of more animals")
        if n_images >= 10 and n_subjects > 0.5 * n_images:
            return (f"the subject column names {n_subjects} animals for {n_images} crops (nearly one per crop): if "
                    "these are not animal ids, folds are by image, not by animal, and overstate accuracy; put each "
                    "animal's id in the subject column (curate --subject / --subject-from)")
        return None

    @cached_property
    def repeated_rows(self) -> list[list[int]]:
        """Groups of rows whose files hold the same bytes; hashed once per dataset (a learning curve evaluates
        many subsets of one)."""
        by_content: dict[str, list[int]] = {}
        for i, path in enumerate(self.paths):
            try:
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            except OSError:
                continue  # an unreadable file is reported where it is read
            by_content.setdefault(digest, []).append(i)
        return [rows for rows in by_content.values() if len(rows) > 1]

    def check_no_repeats(self) -> None:
        """Refuses (DatasetError) a dataset in which one image (the same bytes) is listed more than once: under two
        animals, a held-out animal is scored on an image the model was trained on (a fold at 1.000 that means
        nothing); under one, it is counted twice."""
        repeats = self.repeated_rows
        if not repeats:
            return
        across = [rows for rows in repeats if len(set(self.subjects[rows].tolist())) > 1]
        shown = "; ".join(" = ".join(f"{Path(self.paths[i]).name} ({self.subjects[i]})" for i in rows[:3])
                          for rows in (across or repeats)[:3])
        why = ("under different animals, so a held-out animal would be scored on images the model was trained on"
               if across else "so they would be counted more than once")
        raise DatasetError(f"{self.source}: {len(repeats)} image(s) are listed more than once, {why} ({shown}"
                           f"{'; ...' if len(repeats) > 3 else ''}); keep one row per image")

    def describe(self) -> str:
        """One line for people: how many crops, of how many animals, per label."""
        s = self.summary()
        return (f"{s['images']} crops of {len(s['subjects'])} animal(s) from {s['source']}: {s['none']} no pain, "
                f"{s['moderate']} moderate, {s['severe']} severe")


def _label(value: str, where: str) -> int:
    key = value.strip().lower()
    if key not in LABELS:
        raise DatasetError(f"{where}: unknown label {value!r} (use 0/1/2 or none/moderate/severe)")
    return LABELS[key]


def read_manifest(path: Path) -> Dataset:
    path = Path(path)
    rows = read_rows(path, DatasetError)  # also as a spreadsheet saves it: BOM, CRLF, ';' separators
    header = rows[0].keys() if rows else []
    missing = [c for c in ("path", "subject", "label") if c not in header]
    if not rows:
        raise DatasetError(f"{path} has no rows")
    if missing:
        raise DatasetError(f"{path} lacks column(s) {', '.join(missing)} (needs path,subject,label)")
    has_aus = any(c in header for c in AU_COLUMNS)  # an AU column left out counts as unlabelled
    paths, subjects, labels, aus = [], [], [], []
    for i, row in enumerate(rows, start=2):
        where = f"{path}:{i}"
        p = (path.parent / row["path"]).resolve() if not Path(row["path"]).is_absolute() else Path(row["path"])
        if not p.is_file():
            raise DatasetError(f"{where}: image {row['path']} " + ("is not a regular file" if p.exists() else "not found"))
        if not row["subject"].strip():
            raise DatasetError(f"{where}: empty subject")
        paths.append(p)
        subjects.append(row["subject"].strip())
        labels.append(_label(row["label"] or "", where))
        if has_aus:
            vals = []
            for c in AU_COLUMNS:
                v = (row.get(c) or "").strip()
                if v == "":
                    vals.append(np.nan)
                elif v in ("0", "1", "2"):
                    vals.append(float(v))
                else:
                    raise DatasetError(f"{where}: {c} must be 0, 1, 2 or empty, got {v!r}")
            aus.append(vals)
    return Dataset(paths, np.array(subjects), np.array(labels, np.int64),
                   np.array(aus, np.float64) if has_aus else None, str(path))


def read_folders(root: Path) -> Dataset:
    """ROOT/<subject>/<label>/*.jpg, label folder names as in LABELS."""
    root = Path(root)
    paths, subjects, labels = [], [], []
    for subject_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for label_dir in sorted(p for p in subject_dir.iterdir() if p.is_dir()):
            label = _label(label_dir.name, str(label_dir))
            for img in sorted(p for p in label_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS):
                paths.append(img)
                subjects.append(subject_dir.name)
                labels.append(label)
    if not paths:
        raise DatasetError(f"no images found in {root} (expected ROOT/<subject>/<label>/*.jpg or a manifest.csv)")
    return Dataset(paths, np.array(subjects), np.array(labels, np.int64), None, str(root))


def load_dataset(path: str | Path) -> Dataset:
    """A manifest CSV, a folder holding manifest.csv, or a ROOT/<subject>/<label>/ folder tree."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"no such dataset: {path}")
    if path.is_file():
        return read_manifest(path)
    if (path / "manifest.csv").is_file():
        return read_manifest(path / "manifest.csv")
    return read_folders(path)


def loso_splits(subjects: np.ndarray) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Leave-one-subject-out: (held-out subject, train indices, test indices); never shares an animal."""
    unique = sorted(set(subjects.tolist()))
    if len(unique) < 2:
        raise DatasetError(f"leave-one-subject-out needs at least 2 subjects, the dataset has {len(unique)}")
    for s in unique:
        test = np.flatnonzero(subjects == s)
        train = np.flatnonzero(subjects != s)
        if set(subjects[train]) & set(subjects[test]):  # impossible by construction; a guard against edits
            raise DatasetError("subject leakage between train and test")
        yield s, train, test
