"""The few-shot learning curve on every real setup the team has (scripts/few-shot-curve): the bundled detector
fine-tuned on k = 1, 2, 4, 8 labelled frames of one setup, as the labelling loop does, and self-trained from the
same labels (k = 0 too) on the setup's unlabelled frames, measured on that setup's other frames. About 35
minutes on this 2-core machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_few_shot_learning_curve(record, tmp_path):
    if not (ROOT.parent / "shared" / "real" / "reachbox").is_dir():
        pytest.skip("../shared/real is not present")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "few-shot-curve"), "--out", str(tmp_path),
                           "--self-train"],
                          capture_output=True, text=True, timeout=5400)
    assert done.returncode == 0, done.stderr[-2000:]
    print("\n" + done.stdout[done.stdout.index("| setup"):])
    rows = json.loads((tmp_path / "few_shot.json").read_text())
    record("few_shot", {"rows": rows})
    reach = [r for r in rows if r["setup"] == "reachbox" and r["k"] == 4]
    # the curve learns: four labelled frames rank the faces of the setup's other frames better than nothing did
    assert sum(r["ap50"] for r in reach) / len(reach) > sum(r["start_ap50"] for r in reach) / len(reach)
    # self-training is measured beside every fine-tune, from the same labels, on the same held-out frames
    assert all("self_ap50" in r for r in rows) and any(r["k"] == 0 for r in rows)
