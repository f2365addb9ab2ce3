"""Is a face crop like the faces a classifier was trained on? A model that has only seen synthetic rats, or one
lab's camera, must say "unknown" for a face unlike those, never score it.

The crop's features (the classifier's own: LBP histograms for LBP+SVM, the penultimate layer for ResNet-18)
are standardised and projected on the training faces' first principal components. The distance is the
Mahalanobis distance inside that subspace plus the residual outside it (both scaled to about 1 for a training
face): a real face next to synthetic ones is far off the subspace even when its projection looks ordinary.

Familiarity is an empirical p-value: the share of genuine faces of held-out training animals (never the animals
the statistics were fitted on) that lie at least as far. A crop is refused when it is below REFUSE_BELOW, so
about 2% of genuine in-distribution faces are refused by design.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ModelError

REFUSE_BELOW = 0.02
COMPONENTS = 64
FILE = "familiarity.safetensors"
METHOD = ("distance to the training faces in the classifier's feature space (Mahalanobis on the first principal "
          "components + residual off them); familiarity = share of held-out training animals' faces at least as "
          "far; refused below refuse_below")


@dataclass
class Familiarity:
    mean: np.ndarray  # (D,) standardisation
    scale: np.ndarray
    components: np.ndarray  # (k, D) principal axes of the standardised training features
    variances: np.ndarray  # (k,)
    residual: float  # mean squared residual off the subspace of the training faces
    calibration: np.ndarray  # sorted distances of held-out genuine faces
    refuse_below: float = REFUSE_BELOW

    def distance(self, feats: np.ndarray) -> np.ndarray:
        z = (np.asarray(feats, np.float64) - self.mean) / self.scale
        proj = z @ self.components.T
        inside = (proj ** 2 / self.variances).mean(axis=1)
        outside = np.maximum((z ** 2).sum(axis=1) - (proj ** 2).sum(axis=1), 0.0) / self.residual
        return inside + outside

    def score(self, feats: np.ndarray) -> np.ndarray:
        """(N, D) features -> (N,) familiarity in 0..1 (share of held-out genuine faces at least as far)."""
        d = self.distance(feats)
        farther = len(self.calibration) - np.searchsorted(self.calibration, d, side="left")
        return farther / len(self.calibration)

    def refused(self, familiarity: np.ndarray) -> np.ndarray:
        return np.asarray(familiarity) < self.refuse_below

    def to_tensors(self) -> dict[str, np.ndarray]:
        return {k: np.ascontiguousarray(v) for k, v in {
            "mean": self.mean, "scale": self.scale, "components": self.components.astype(np.float32),
            "variances": self.variances, "residual": np.array([self.residual]), "calibration": self.calibration,
            "refuse_below": np.array([self.refuse_below])}.items()}

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray]) -> Familiarity:
        try:
            fam = cls(mean=t["mean"], scale=t["scale"], components=t["components"].astype(np.float64),
                      variances=t["variances"], residual=float(t["residual"][0]), calibration=np.sort(t["calibration"]),
                      refuse_below=float(t["refuse_below"][0]))
        except KeyError as exc:
            raise ModelError(f"{FILE} lacks the array {exc}") from None
        d = len(fam.mean)
        if fam.scale.shape != (d,) or fam.components.shape[1:] != (d,) or len(fam.variances) != len(fam.components) \
                or not len(fam.calibration):
            raise ModelError(f"{FILE}: array shapes do not fit together")
        return fam

    def card(self, how: str) -> dict:
        return {"file": FILE, "method": METHOD, "components": int(len(self.components)),
                "refuse_below": self.refuse_below, "calibration": how, "calibration_faces": int(len(self.calibration))}


def _statistics(feats: np.ndarray, components: int):
    from sklearn.decomposition import PCA

    feats = np.asarray(feats, np.float64)
    mean = feats.mean(axis=0)
    scale = feats.std(axis=0)
    scale[scale < 1e-12] = 1.0
    z = (feats - mean) / scale
    # Few faces estimate few directions well: at most one component per five faces.
    k = max(1, min(components, len(feats) // 5, feats.shape[1]))
    pca = PCA(k, random_state=0).fit(z)
    # The PCA's own centre is ~0 after standardising; folding it in keeps inference one subtraction.
    mean = mean + pca.mean_ * scale
    z = (feats - mean) / scale
    proj = z @ pca.components_.T
    residual = float(np.maximum((z ** 2).sum(1) - (proj ** 2).sum(1), 0.0).mean())
    variances = np.maximum(pca.explained_variance_, 1e-3 * pca.explained_variance_[0] + 1e-12)  # no near-0 divisor
    return Familiarity(mean, scale, pca.components_.astype(np.float64), variances,
                       max(residual, 1e-12), np.zeros(1))


def fit_familiarity(train: np.ndarray, held_out: np.ndarray, components: int = COMPONENTS) -> Familiarity:
    """Statistics of the training faces, calibrated on genuine faces of animals not among them."""
    fam = _statistics(train, components)
    fam.calibration = np.sort(fam.distance(held_out))
    return fam


def fit_grouped(feats: np.ndarray, groups: np.ndarray, components: int = COMPONENTS,
                max_folds: int = 6) -> tuple[Familiarity, str] | tuple[None, str]:
    """For fixed features (LBP): statistics of all faces, calibrated on each animal (or group of animals) as seen
    from the others. Returns (None, why) with fewer than two animals: nothing to calibrate on."""
    from sklearn.model_selection import GroupKFold

    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        return None, "not fitted: needs faces of at least two animals to calibrate on held-out animals"
    folds = min(n_groups, max_folds)
    held = [_statistics(feats[a], components).distance(feats[b])
            for a, b in GroupKFold(n_splits=folds).split(feats, groups=groups)]
    fam = _statistics(feats, components)
    fam.calibration = np.sort(np.concatenate(held))
    return fam, f"{folds}-fold by animal over {n_groups} training animals"


def unfamiliar_advice(refused: int, accepted: int) -> str:
    """One plain sentence when most selected faces were refused, else ''."""
    if refused == 0 or refused <= accepted:
        return ""
    return (f"{refused} of {refused + accepted} selected face crops were refused as unlike the model's training faces "
            "and were not scored. Teach the tool this camera in the browser: rat-monitor label VIDEO --project "
            "my_camera/ (draw the faces on the boxes page, score them on the scoring page), then rat-monitor label "
            "train my_camera/ (the detector, and a pain classifier checked by animal once 3 animals are scored), "
            "and analyse with the --detector and --model it names.")
