"""The four Rat Grimace Scale action units from face regions (the LBP route).

Each AU is read from its own region of the square face crop, placed by fixed proportions (the bundled detector
gives no keypoints): eyes for orbital tightening, snout and whisker pads for nose/cheek flattening, the top of
the crop for the ears, the lower half for the whiskers. A region is described by uniform LBP and
gradient-orientation histograms over a 3x3 grid, summed with those of the mirrored crop, so that a head turned
left and one turned right look alike. One calibrated RBF SVM per AU (LbpSvmClassifier on the region's features)
gives P(score = 0, 1, 2) from the region's first 128 principal components (not whitened: whitening lost kappa
in trials); the AU score is the expected value. Rows without a label for an AU are left out of that
AU's training only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import DatasetError
from ..types import ACTION_UNITS
from .features import align_grey, lbp_histograms, orientation_histograms
from .svm_arrays import SvmArrays

# (top, bottom, left, right) as fractions of the square face crop; full width, because a turned head moves the
# eyes and snout sideways.
REGIONS = {
    "orbital": (0.25, 0.65, 0.0, 1.0),
    "nose": (0.55, 1.0, 0.0, 1.0),
    "ears": (0.0, 0.45, 0.0, 1.0),
    "whiskers": (0.5, 1.0, 0.0, 1.0),
}


@dataclass(frozen=True)
class RegionSettings:
    size: int = 96  # the aligned grey crop the regions are cut from
    grid: int = 3  # LBP cells per side of a region
    radii: tuple[int, ...] = (1, 2, 3)
    orientation_grid: int = 6  # gradient-orientation cells per side of a region

    def to_card(self) -> dict:
        return {**asdict(self), "radii": list(self.radii), "regions": REGIONS, "mirror": "summed"}

    @classmethod
    def from_card(cls, card: dict) -> RegionSettings:
        from .base import card_int

        return cls(size=card_int(card["size"], 16, 512, "action_units.features.size"),
                   grid=card_int(card["grid"], 1, 16, "action_units.features.grid"),
                   radii=tuple(card_int(r, 1, 8, "action_units.features.radii") for r in card["radii"]),
                   orientation_grid=card_int(card["orientation_grid"], 1, 32, "action_units.features.orientation_grid"))


def region_features(crops: list[np.ndarray], settings: RegionSettings = RegionSettings()) -> np.ndarray:
    """Face crops -> (N, 4, D) features, one row per action unit (ACTION_UNITS order)."""
    grey = align_grey(list(crops), settings.size)
    mirrored = grey[:, :, ::-1]
    s = settings.size
    out = []
    for name in ACTION_UNITS:
        top, bottom, left, right = REGIONS[name]
        rows, cols = slice(int(top * s), int(bottom * s)), slice(int(left * s), int(right * s))
        feats = 0
        for img in (grey, mirrored):
            region = np.ascontiguousarray(img[:, rows, cols])
            feats = feats + np.hstack([lbp_histograms(region, settings.radii, settings.grid),
                                       orientation_histograms(region, settings.orientation_grid)])
        out.append(feats)
    return np.stack(out, axis=1).astype(np.float32)


COMPONENTS = 128


def labelled(aus: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows with action unit J scored and their scores; refused (DatasetError) when fewer than two different
    scores are there to learn from."""
    known = np.isfinite(aus[:, j])
    y = aus[known, j].astype(np.int64)
    if len(np.unique(y)) < 2:
        raise DatasetError(f"action unit {ACTION_UNITS[j]!r} needs at least two different scores among the labelled "
                           f"training images, it has {sorted(set(y.tolist())) or 'none'}")
    return known, y


class AuScorer:
    """fit(region features, AU labels with NaN, groups=subjects) / predict_scores -> (N, 4) expected scores."""

    def __init__(self, n_jobs: int | None = None, components: int = COMPONENTS):
        self.n_jobs = n_jobs
        self.components = components

    def fit(self, feats: np.ndarray, aus: np.ndarray, groups=None) -> AuScorer:
        from .svm import LbpSvmClassifier  # training only: a saved model scores in numpy, without scikit-learn

        self.estimators_ = []
        for j in range(len(ACTION_UNITS)):
            known, y = labelled(aus, j)
            g = None if groups is None else np.asarray(groups)[known]
            self.estimators_.append(LbpSvmClassifier(n_jobs=self.n_jobs, components=self.components).fit(
                feats[known, j], y, groups=g))
        return self

    def predict_scores(self, feats: np.ndarray) -> np.ndarray:
        return scores_from(feats, [e.arrays_ for e in self.estimators_])


def scores_from(feats: np.ndarray, svms: list[SvmArrays]) -> np.ndarray:
    """(N, 4, D) region features and one SVM per AU -> (N, 4) expected AU scores."""
    return np.stack([svm.predict_proba(feats[:, j]) @ svm.classes.astype(np.float64)
                     for j, svm in enumerate(svms)], axis=1)
