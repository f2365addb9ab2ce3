"""Whether the face detector knows the camera a run watched: a detector that knows a camera is sure of the face on
most of its checks (the bundled one on its synthetic samples: 79-95 % of checks at 0.6 or more); on a camera it
does not know, it finds a few unsure boxes on paws, holders and fixtures (the real mouse clip: 5 %). A run then
says so, names the detector, and gives the command that calibrates the camera, instead of a face% that reads
like coverage."""

from __future__ import annotations

CONFIDENT_SCORE = 0.6  # a detection this sure is a face the detector knows
KNOWN_SHARE = 0.2  # of the detector's checks with such a face; below it the camera is called unknown
MIN_CHECKS = 10  # fewer checks than this say nothing either way


def camera_check(detector_runs: int, confident_runs: int, detector: dict, video: str = "VIDEO") -> dict:
    """What the run's detector checks say of the camera: {known (True, False, or None when too few checks),
    confident_share, detector, line (one sentence for people, empty when the camera is known)}."""
    share = confident_runs / detector_runs if detector_runs else 0.0
    name = detector.get("name", "?")
    known = None if detector_runs < MIN_CHECKS else share >= KNOWN_SHARE
    line = ""
    if known is False:
        line = (f"the face detector '{name}' was sure of a face on only {100 * share:.0f}% of its {detector_runs} "
                f"checks: it does not know this camera (or no rat faced it), so unknown minutes and any face% say "
                f"little; calibrate it with a few labelled frames: rat-monitor label {video} --project "
                f"my_camera/, then rat-monitor label train my_camera/, and analyze with --detector "
                f"my_camera/models/detector-N")
    return {"known": known, "confident_share": round(share, 3), "checks": detector_runs, "detector": name,
            "calibrated": bool(detector.get("fine_tuned_from")) and not detector.get("synthetic", True),
            "line": line}
