"""Model folders: card.json + weights in formats that cannot run code when loaded (safetensors, ONNX).

Every weight file is listed in the card with its sha256 and checked before it is opened; a mismatch, a
missing file or a file that is not what the card says is refused with a ModelError.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from pathlib import Path

from .errors import ModelError

DEFAULT_DETECTOR = "rat-face-detector"
DEFAULT_CLASSIFIER = "lbp-svm-synthetic"
DETECTOR_CAVEAT = ("trained on synthetic rat faces only; calibrate it to your camera with a few labelled frames "
                   "(rat-monitor label VIDEO --project DIR)")


def mixed_detector_caveat(synthetic: int, real: int) -> str:
    """The caveat of a detector trained on rendered frames beside a few real ones of other labs' cameras."""
    return (f"trained mostly on synthetic rat faces ({synthetic} rendered frames) beside {real} real annotated frames "
            "of other labs' cameras, none of yours; calibrate it to your camera with a few labelled frames "
            "(rat-monitor label VIDEO --project DIR)")
SYNTHETIC_CAVEAT = ("trained on synthetic rat faces only: a demonstration, not a validated pain model; "
                    "train on RatsPain or your own labelled frames for real use")


def validation_status(card: dict) -> dict:
    """How far a model was checked, read from what the code that trained it wrote in its card, as one plain line
    for every screen that shows its output. level: 'by-animal' (a pain classifier with leave-one-animal-out
    figures on real data), 'held-out' (a detector checked on held-out labelled frames of its camera),
    'synthetic' (trained on synthetic data only) or 'not-checked'."""
    caveat = str(card.get("caveat") or "")
    if card.get("kind") == "face-detector":
        checked = (card.get("validation") or {}).get("status") == "held-out frames"
        if checked:
            return {"level": "held-out", "line": f"detector checked on held-out frames of its camera: {caveat}"}
        level = "synthetic" if card.get("synthetic") else "not-checked"
        return {"level": level, "line": f"detector not checked on your camera: {caveat or 'no held-out figure'}"}
    metrics = card.get("metrics") if isinstance(card.get("metrics"), dict) else {}
    dataset = (card.get("training") or {}).get("dataset") or {}
    if metrics.get("protocol") == "leave-one-subject-out":
        f1 = metrics.get("macro_f1")
        basis = (f"leave-one-animal-out macro-F1 {f1:.2f}" if isinstance(f1, (int, float)) else "leave-one-animal-out"
                 ) + f" over {len(dataset.get('subjects') or [])} animals, {dataset.get('images', '?')} crops"
        if card.get("synthetic"):
            return {"level": "synthetic", "line": f"pain model trained and validated on synthetic faces only ({basis}):"
                                                  " a demonstration, not a validated pain model"}
        return {"level": "by-animal", "line": f"pain model validated by animal ({basis})"}
    why = ((card.get("validation") or {}).get("why") or (card.get("training") or {}).get("not_validated_because")
           or "trained without leave-one-animal-out evaluation")
    return {"level": "synthetic" if card.get("synthetic") else "not-checked",
            "line": f"pain model NOT validated by animal: {why}; its scores are unconfirmed"}


def models_dir() -> Path:
    """Bundled models: $RAT_MONITOR_MODELS, else models/ at the project root."""
    env = os.environ.get("RAT_MONITOR_MODELS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "models"


def package_file(module: str, relative: str) -> Path | None:
    """A file that an installed package ships (found where the package lies, the package never imported), or
    None when the package or the file is not there."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    return path if path.is_file() else None


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_mode() -> int:
    """The mode a new file gets under the process's umask (0644 under the usual 022), as open() would give it."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file beside PATH, then rename: a crash leaves the old file or the new one. The file
    follows the umask like any other (the private temporary file would otherwise stay 0600)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_card(model_dir: Path, card: dict, files: list[str]) -> dict:
    """Adds the sha256 of each weight file to the card and writes card.json."""
    model_dir = Path(model_dir)
    card = dict(card)
    card["files"] = {name: sha256(model_dir / name) for name in files}
    for name in files:  # some writers (safetensors) make private files: colleagues must be able to read models
        os.chmod(model_dir / name, file_mode())
    atomic_write_text(model_dir / "card.json", json.dumps(card, indent=2) + "\n")
    return card


def record_figures(folder: Path, name: str, figures: dict) -> dict:
    """Writes measured figures into the model's card under metrics[NAME] (the weights and their sha256 are
    untouched), so a card's figures come from the evaluation code, never from a hand edit."""
    card = read_card(folder)
    card.setdefault("metrics", {})[name] = {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}
    return write_card(folder, card, list(card.get("files", {})))


def resolve(name_or_path: str | Path, kind: str) -> Path:
    """A bundled model name or a folder path -> the model folder, checked to be of KIND."""
    p = Path(name_or_path)
    folder = p if (p.is_dir() or p.suffix or os.sep in str(name_or_path)) else models_dir() / str(name_or_path)
    if not folder.is_dir():
        known = ", ".join(sorted(c["name"] for c in list_models() if c.get("kind") == kind)) or "none"
        raise ModelError(f"unknown model {name_or_path!r} (bundled: {known}; or give a model folder)")
    card = read_card(folder)
    if card.get("kind") != kind:
        raise ModelError(f"{folder} is a {card.get('kind', '?')} model, not a {kind}")
    return folder


def read_card(folder: Path) -> dict:
    path = Path(folder) / "card.json"
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{folder} has no card.json: not a rat-monitor model folder") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from None
    if not isinstance(card, dict) or "kind" not in card:
        raise ModelError(f"{path} is not a model card")
    _check_own_files(Path(folder), card.get("files", {}))
    return card


def _check_own_files(folder: Path, files) -> None:
    """A model folder names only files of its own: a card received from someone else that lists '../x', an
    absolute path, or a link out of the folder is refused before anything (--record's chmod and hash) touches it."""
    if not isinstance(files, dict):
        raise ModelError(f"{folder}/card.json: 'files' is not a table of file names and sha256")
    for name in files:
        inside = isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name and "\\" not in name
        target = folder / name if inside else None
        if not inside or (target.is_symlink() and target.resolve().parent != folder.resolve()):
            raise ModelError(f"{folder}/card.json names {name!r}, which is not a file of the model folder; "
                             "refusing a model that reaches outside its folder")


def verified_file(folder: Path, name: str) -> Path:
    """The path of weight file NAME after checking it against the sha256 in the card."""
    folder = Path(folder)
    card = read_card(folder)
    files = card.get("files")
    expected = files.get(name) if isinstance(files, dict) else None
    path = folder / name
    if expected is None:
        raise ModelError(f"{folder}/card.json does not list {name} with its sha256; refusing to load it")
    if not path.exists():
        raise ModelError(f"{path} is missing")
    actual = sha256(path)
    if actual != expected:
        raise ModelError(f"{path} does not match its card (sha256 {actual[:12]}… != {expected[:12]}…): "
                         "corrupt or tampered, refusing to load it")
    return path


def list_models() -> list[dict]:
    root = models_dir()
    out = []
    if root.is_dir():
        for folder in sorted(p for p in root.iterdir() if (p / "card.json").exists()):
            try:
                card = read_card(folder)
            except ModelError:
                continue
            card.setdefault("name", folder.name)
            card["path"] = str(folder)
            out.append(card)
    return out
