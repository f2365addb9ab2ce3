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
