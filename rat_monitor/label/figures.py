"""What a detector's held-out figures say, in words: a figure on too few faces is not a check, and a learning
curve that stopped rising says so."""

from __future__ import annotations

MIN_HELD_OUT_FACES = 5  # a held-out figure on fewer faces is not a check, and is not shown as one


def verdict(figures: dict | None) -> str:
    """A held-out figure in words, or why it is not one yet."""
    if not figures:
        return "not checked: no held-out frame yet (label at least 4 frames of a video)"
    if figures["faces"] < MIN_HELD_OUT_FACES:
        return (f"not enough held-out faces yet ({figures['faces']} in {figures['frames']} frame(s); "
                f"{MIN_HELD_OUT_FACES} needed for a figure): label more frames")
    return (f"{figures['true_positives']} of {figures['faces']} held-out faces found, {figures['false_positives']} "
            f"false boxes on {figures['frames']} held-out frames (AP@0.5 {figures['ap50']:.2f})")


def not_worse(after: dict, before: dict) -> bool:
    """Whether a new detector's held-out figures AFTER are not worse than those of the one it started from:
    AP@0.5 first, then faces found less false boxes."""
    return (round(after["ap50"], 3), after["true_positives"] - after["false_positives"]) >= \
        (round(before["ap50"], 3), before["true_positives"] - before["false_positives"])


def write_check(model_dir, caveat: str, figures: dict | None) -> None:
    """A detector's card says what it was checked on (CAVEAT, in words) and whether that was a check at all."""
    from ..models import read_card, write_card

    card = read_card(model_dir)
    card["caveat"] = caveat
    card["validation"] = {"status": "held-out frames" if figures and figures["faces"] >= MIN_HELD_OUT_FACES
                          else "not checked", "held_out_faces": figures["faces"] if figures else 0}
    write_card(model_dir, card, list(card.get("files", {})))


def plateau(curve: list[dict]) -> str:
    """Whether more labels still help: the last three checked fine-tunes' held-out AP within 0.02 of each other
    says the curve has flattened ('' while it has not, or too few were checked)."""
    checked = [c for c in curve if c["ap50"] is not None]
    if len(checked) < 3:
        return ""
    a, b, c = (x["ap50"] for x in checked[-3:])
    if abs(c - b) <= 0.02 and abs(b - a) <= 0.02:
        return (f"the held-out AP stayed at {c:.2f} over the last three fine-tunes: more labels of the same "
                "footage no longer help much; label frames it gets wrong, or another camera")
    return ""
