"""Files people open and save in a spreadsheet: a manifest or a timeline saved with a byte-order mark, Windows line
ends, ';' separators and decimal commas reads as the same table; a timeline cut or edited into something else is
refused with its line, never a traceback."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from rat_monitor.data import load_dataset
from rat_monitor.errors import ConfigError
from rat_monitor.sinks import RunWriter, prepare_run_dir
from rat_monitor.sinks.files import prepare_resume, read_timeline
from rat_monitor.types import MinuteSummary


def as_excel_saves_it(src, dst) -> None:
    """The same table with a BOM, CRLF line ends, ';' separators and decimal commas (a European Excel)."""
    with open(src, newline="") as f:
        rows = list(csv.reader(f))
    lines = [";".join(cell.replace(".", ",") if _is_decimal(cell) else cell for cell in row) for row in rows]
    dst.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))


def _is_decimal(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return "." in cell


def test_a_manifest_saved_by_a_spreadsheet_reads_the_same(tmp_path):
    (tmp_path / "img").mkdir()
    rows = [["path", "subject", "label", "orbital", "nose", "ears", "whiskers"]]
    for i in range(6):
        cv2.imwrite(str(tmp_path / "img" / f"{i}.png"), np.full((20, 20, 3), 40 * i, np.uint8))
        rows.append([f"img/{i}.png", f"rat{i % 2}", str(i % 3), str(i % 3), "", "1", "0"])
    plain = tmp_path / "manifest.csv"
    with open(plain, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    excel = tmp_path / "manifest_excel.csv"
    as_excel_saves_it(plain, excel)
    a, b = load_dataset(plain), load_dataset(excel)
    assert [p.name for p in a.paths] == [p.name for p in b.paths]
    assert list(a.subjects) == list(b.subjects) and list(a.labels) == list(b.labels)
    assert np.array_equal(a.aus, b.aus, equal_nan=True)


@pytest.fixture
def run_dir(tmp_path):
    folder = prepare_run_dir(tmp_path / "run")
    with RunWriter(folder) as writer:
        for minute, p in enumerate((0.125, 0.75, 0.5)):
            writer.minute(MinuteSummary(minute=minute, start_s=60.0 * minute, end_s=60.0 * (minute + 1), frames=600,
                                        face_frames=500, scored_frames=18, pain_prob=p, pain_level="pain",
                                        pain_prob_smoothed=p, pain_prob_low=p / 2, pain_prob_high=(1 + p) / 2))
    return folder


def test_a_timeline_saved_by_a_spreadsheet_reads_the_same_and_resumes(run_dir):
    original = read_timeline(run_dir / "timeline.csv")
    as_excel_saves_it(run_dir / "timeline.csv", run_dir / "excel.csv")
    assert read_timeline(run_dir / "excel.csv") == original
    (run_dir / "excel.csv").replace(run_dir / "timeline.csv")
    earlier, resume_s = prepare_resume(run_dir, action_units=False)
    assert [m.pain_prob for m in earlier] == [0.125, 0.75, 0.5] and resume_s == 180.0


def test_a_timeline_cut_mid_row_is_refused_with_its_line(run_dir):
    text = (run_dir / "timeline.csv").read_text()
    (run_dir / "timeline.csv").write_text(text[: text.rindex("\n", 0, len(text) - 1) + 12])  # last row cut short
    with pytest.raises(ConfigError, match=r"timeline.csv:4: .*cut short or edited"):
        read_timeline(run_dir / "timeline.csv")
