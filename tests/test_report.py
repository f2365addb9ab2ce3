"""The welfare report: self-contained HTML, summary numbers, PNG plot, and a real headless Chromium render."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from rat_monitor.cli import app

runner = CliRunner()
ARTEFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def report(short_video, two_minute_video, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    for v in (short_video, two_minute_video):
        result = runner.invoke(app, ["analyze", str(v), "--out", str(runs), "--quiet"])
        assert result.exit_code == 0, result.output
    out = runs / "report.html"
    result = runner.invoke(app, ["report", str(runs / "short"), str(runs / "two_min"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_report_is_self_contained_with_summary_and_plot(report):
    page = report.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', page)  # no CDN, nothing fetched: works offline
    assert page.count("data:image/png;base64,") == 2 and "data:image/jpeg;base64," in page
    assert "Synthetic model" in page and "short" in page and "two_min" in page
    # the summary row of two_min: 2 minutes, both observed
    row = re.search(r"<tr><td>two_min</td><td>(\d+)</td><td>(\d+)</td>", page)
    assert row and row.groups() == ("2", "2")
    png = cv2.imread(str(report.with_suffix(".png")))
    assert png is not None and png.shape[0] > 300


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed (make test installs it)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    ARTEFACTS.mkdir(exist_ok=True)
    shot = ARTEFACTS / "report.png"
    proc = subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'a'}", "--enable-logging=stderr",
                           "--v=0", "--window-size=1200,2200", f"--screenshot={shot}", report.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "CONSOLE" not in proc.stderr and "Uncaught" not in proc.stderr  # no console errors or messages
    img = cv2.imread(str(shot))
    assert img is not None and img.std() > 20  # something is drawn
    dom = subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'b'}",
                          "--virtual-time-budget=5000", "--dump-dom", report.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    decoded = re.search(r'data-decoded="(\d+)/(\d+)"', dom)
    assert decoded and decoded.group(1) == decoded.group(2) and int(decoded.group(2)) > 10
    assert re.search(r'<div id="self-check" class="caveat" hidden="" data-decoded', dom)  # a whole report: no warning
    assert re.search(r"<tr><td>two_min</td><td>2</td><td>2</td>", dom)  # the summary numbers are on the page
    assert np.count_nonzero(img.min(axis=2) < 100) > 1000  # plot lines and text are visible


def test_report_fits_a_1280_px_window_and_prints_on_a4(report, tmp_path):
    """The summary table (classifier column included) fits a 1280-px window without a scrollbar, and the page
    prints to PDF (A4, as committees print it)."""
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", "<script>window.addEventListener('load', function () {"
                     "var t = document.getElementById('summary'); document.title = 'fit ' + "
                     "Math.round(t.getBoundingClientRect().right) + ' ' + document.documentElement.clientWidth;"
                     "});</script></body>"))
    dom = subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'c'}", "--window-size=1280,900",
                          "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    right, width = (int(v) for v in re.search(r"<title>fit (\d+) (\d+)</title>", dom).groups())
    assert right <= width, (right, width)
    pdf = tmp_path / "report.pdf"
    subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'd'}", "--no-pdf-header-footer",
                    f"--print-to-pdf={pdf}", report.as_uri()], capture_output=True, text=True, timeout=120)
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 50_000
    sizes = re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data)
    assert sizes and all(abs(float(w) - 595.3) < 2 and abs(float(h) - 841.9) < 2 for w, h in sizes)  # A4 portrait


def test_a_run_with_no_scored_minute_is_unknown_with_why_never_no_pain():
    from rat_monitor.sinks import report as rep

    timeline = [{"minute": "0", "start_s": "0", "end_s": "60", "frames": "900", "face_frames": "400",
                 "pain_prob": "", "pain_level": "unknown", "alert": "0", "status": "unfamiliar"},
                {"minute": "1", "start_s": "60", "end_s": "66", "frames": "90", "face_frames": "0",
                 "pain_prob": "", "pain_level": "unknown", "alert": "0", "status": "ok"}]
    got = rep.attention(rep.RunData(Path("."), "r", timeline, [], {}))
    assert got["known_minutes"] == 0 and not got["needs_attention"]
    assert got["unknown_why"] == ("in 1 minute(s) the faces seen were all refused as unlike the classifier's training "
                                  "faces; in 1 minute(s) no face was found")
    assert rep._start_label(timeline[1]) == "1:00" and rep._start_label({"start_time": "2026-11-29T14:05:00+00:00",
                                                                        "start_s": "0"}) == "14:05:00"
    assert list(rep._spans(timeline)) == [1.0, 0.1]  # the 6-s minute is drawn 6 s wide


def test_report_takes_the_folder_analyze_wrote_and_never_overwrites_silently(report, tmp_path):
    runs = report.parent  # analyze's --out: one run folder per video (and report.html beside them)
    out = tmp_path / "all.html"
    result = runner.invoke(app, ["report", str(runs), "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "short" in page and "two_min" in page
    again = runner.invoke(app, ["report", str(runs), "--out", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert runner.invoke(app, ["report", str(runs), "--out", str(out), "--overwrite"]).exit_code == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = runner.invoke(app, ["report", str(empty), "--out", str(tmp_path / "x.html")])
    assert bad.exit_code == 2 and "run folder" in bad.output


def test_report_concludes_first(report):
    """The top of the report says which runs need attention, when (alert episodes, worst minutes), how much was
    unknown, and the rules in words; runs most concerning first."""
    page = report.read_text()
    top = page[page.index('id="attention"'):page.index("<h2>Summary</h2>")]
    assert "pain minute(s); worst: minute" in top and "P(pain) " in top and "% of its minutes unknown" in top
    assert "0.50 or more" in top and "0.70 or more for 3 known minutes" in top and "below 0.50" in top
    # the bundled model scores action units: the RGS rule is named with its source
    assert "RGS score (mean of its scored frames) is above 0.67" in top and "Oliver et al. 2014" in top
    assert page.count("Model 'lbp-svm-synthetic':") == 1 and page.count("Model 'rat-face-detector':") == 1
    order = re.findall(r'id="attention-\d+"><strong>(\w+)</strong>', top)
    assert sorted(order) == ["short", "two_min"]
    sections = re.findall(r'<section id="run-\d+">\s*<h2>(\w+)</h2>', page)
    assert sections == order  # the sections follow the same order


def test_thumbnails_of_a_long_run_cover_every_alert_minute(monkeypatch):
    from rat_monitor.sinks import report as rep

    monkeypatch.setattr(rep, "MAX_THUMBNAILS", 20)
    timeline = [{"minute": str(m), "alert": "1" if m in (50, 51) else "0"} for m in range(60)]
    frames = [{"t_s": f"{m * 60 + k * 10}", "crop": "x"} for m in range(60) for k in range(3)]
    run = rep.RunData(Path("."), "long", timeline, frames, {})
    chosen = rep._spread(run, frames)
    minutes = [int(float(f["t_s"]) // 60) for f in chosen]
    assert len(chosen) == 20 and minutes.count(50) == 3 and minutes.count(51) == 3
    assert minutes == sorted(minutes) and min(minutes) == 0 and max(minutes) == 59  # spread, not the first ones


def test_alert_episodes_name_the_rules_that_held_them_on():
    from rat_monitor.sinks import report as rep

    rule = {"p_pain": ["", "", "p_pain", "p_pain+rgs", ""], "rgs": ["", "rgs", "rgs", "", ""]}
    timeline = [{"minute": str(m), "start_time": "", "end_s": str(60.0 * (m + 1)), "start_s": str(60.0 * m),
                 "pain_prob": "0.9", "pain_level": "pain", "alert": "1" if rule["p_pain"][m] else "0",
                 "alert_rule": rule["p_pain"][m], "rgs": "1.0"} for m in range(5)]
    got = rep.attention(rep.RunData(Path("."), "r", timeline, [], {}))
    assert got["episodes"] == ["minute 2 to minute 4 (P(pain) rule and RGS rule)"]
    older = [{k: v for k, v in r.items() if k != "alert_rule"} for r in timeline]  # a run made before the rule
    assert rep.attention(rep.RunData(Path("."), "r", older, [], {}))["episodes"] == ["minute 2 to minute 4"]


def test_clock_time_from_start_time_and_one_aligned_time_axis(report, short_video, two_minute_video, tmp_path):
    """analyze --start-time gives a file without a recorded time its clock time; the report then puts runs on
    one axis, and --align counts it from a given moment (e.g. the end of surgery)."""
    runs = tmp_path / "runs"
    for video, start in ((short_video, "2026-11-29T14:05:00"), (two_minute_video, "2026-11-29T14:07:00")):
        result = runner.invoke(app, ["analyze", str(video), "--out", str(runs), "-q", "--start-time", start])
        assert result.exit_code == 0, result.output
    rows = (runs / "two_min" / "timeline.csv").read_text().splitlines()
    assert rows[1].split(",")[3].startswith("2026-11-29T14:07:00") and rows[2].split(",")[3].startswith("2026-11-29T14:08")
    out = tmp_path / "aligned.html"
    result = runner.invoke(app, ["report", str(runs), "--out", str(out), "--align", "2026-11-29T14:00"])
    assert result.exit_code == 0, result.output
    assert "Time axis of the plots: minutes after 2026-11-29 14:00." in out.read_text()
    shared = runner.invoke(app, ["report", str(runs), "--out", str(tmp_path / "shared.html")])
    page = (tmp_path / "shared.html").read_text()
    assert "minutes after 2026-11-29 14:05 (earliest start)" in page
    # one time base: the crops' captions give clock time, as the table does
    captions = re.findall(r"<figcaption>(\S+) P=", page)
    assert captions and all(re.fullmatch(r"14:(0[5-9]|1\d):\d\d", c) for c in captions), captions[:5]
    # runs without clock time cannot be aligned to one: said in one line, nothing written
    refused = runner.invoke(app, ["report", str(report.parent / "short"), "--out", str(tmp_path / "no.html"),
                                  "--align", "2026-11-29T14:00"])
    assert refused.exit_code == 2 and "--start-time" in refused.output and not (tmp_path / "no.html").exists()
    assert shared.exit_code == 0
    bad = runner.invoke(app, ["analyze", str(short_video), "--out", str(tmp_path / "x"), "--start-time", "noon"])
    assert bad.exit_code == 2 and "ISO 8601" in bad.output


def test_names_and_titles_reach_the_report_as_text_never_markup(report, tmp_path):
    """A --title (or a video's name) with markup is shown as written, never run in the reader's browser."""
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", str(report.parent / "short"), "--out", str(out), "--title", hostile])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    assert "<img src=x" not in page


def test_a_pain_model_not_validated_by_animal_is_said_first_and_beside_every_no_pain(report, tmp_path):
    """A lab's classifier trained without leave-one-animal-out figures (e.g. 45 crops of 2 animals) must not get
    a more authoritative-looking report than the synthetic demo model: the first screen says how far each model
    was checked, the run's conclusion starts with it, and every "none" minute and alert is marked."""
    import json

    from rat_monitor.models import validation_status

    run = tmp_path / "lab_run"
    shutil.copytree(report.parent / "two_min", run)
    info = json.loads((run / "run.json").read_text())
    card = {"kind": "pain-classifier", "synthetic": False, "caveat": "", "metrics": {},
            "training": {"dataset": {"subjects": ["a", "b"], "images": 45}}}
    info["models"]["classifier"].update(name="my-lab", synthetic=False, caveat="", status=validation_status(card))
    (run / "run.json").write_text(json.dumps(info))
    out = tmp_path / "r.html"
    assert runner.invoke(app, ["report", str(run), "--out", str(out)]).exit_code == 0
    page = out.read_text()
    top = page[:page.index("<h2>Summary</h2>")]
    assert "Model 'my-lab': pain model NOT validated by animal" in top
    conclusion = re.search(r'id="attention-1"><strong>lab_run</strong>:\s*(.*?)</p>', top, re.S).group(1)
    assert conclusion.lstrip().startswith('<span class="unvalidated">The pain model was not validated by animal')
    timeline = page[page.index('<table class="timeline">'):]
    timeline = timeline[:timeline.index("</table>")]
    marked = timeline.count('<small class="unvalidated">unvalidated</small>')
    nones = len(re.findall(r"<td>none", timeline))
    alerts = timeline.count(">ALERT")
    assert nones + alerts > 0 and marked == nones + alerts


def test_validation_status_reads_how_far_a_model_was_checked_from_its_card():
    from rat_monitor.models import DEFAULT_CLASSIFIER, DEFAULT_DETECTOR, read_card, resolve, validation_status

    bundled = validation_status(read_card(resolve(DEFAULT_CLASSIFIER, "pain-classifier")))
    assert bundled["level"] == "synthetic" and "synthetic faces only" in bundled["line"] and "6 animals" in bundled["line"]
    lab = {"kind": "pain-classifier", "metrics": {"protocol": "leave-one-subject-out", "macro_f1": 0.81},
           "training": {"dataset": {"subjects": ["a", "b", "c"], "images": 300}}}
    assert validation_status(lab) == {"level": "by-animal", "line": "pain model validated by animal "
                                      "(leave-one-animal-out macro-F1 0.81 over 3 animals, 300 crops)"}
    assert validation_status({**lab, "metrics": {}})["level"] == "not-checked"
    detector = validation_status(read_card(resolve(DEFAULT_DETECTOR, "face-detector")))
    assert detector["level"] == "not-checked" and "not checked on your camera" in detector["line"]
    tuned = {"kind": "face-detector", "caveat": "fine-tuned on 4 labelled frames of one project; found 5 of 6",
             "validation": {"status": "held-out frames", "held_out_faces": 6}}
    assert validation_status(tuned)["level"] == "held-out"


def _edit_csv(path: Path, edit) -> None:
    import csv

    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    edit(rows)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def _set_cell(column: str, value: str):
    def edit(rows):
        rows[1][rows[0].index(column)] = value
    return edit


def _drop_column(column: str):
    def edit(rows):
        i = rows[0].index(column)
        for r in rows:
            del r[i]
    return edit


DAMAGES = {  # what a crash, a hand edit or a planted file leaves in a run folder
    "no_column": lambda run, outside: _edit_csv(run / "timeline.csv", _drop_column("face_frames")),
    "nan_prob": lambda run, outside: _edit_csv(run / "timeline.csv", _set_cell("pain_prob", "nan")),
    "inf_frames": lambda run, outside: _edit_csv(run / "timeline.csv", _set_cell("frames", "inf")),
    "text_number": lambda run, outside: _edit_csv(run / "frames.csv", _set_cell("t_s", "soon")),
    "cut_row": lambda run, outside: (run / "timeline.csv").write_text(
        (run / "timeline.csv").read_text().rsplit("\n", 2)[0][:-40] + "\n"),
    "json_list": lambda run, outside: (run / "run.json").write_text("[1, 2]"),
    "json_cut": lambda run, outside: (run / "run.json").write_text((run / "run.json").read_text()[:50]),
    "alerts_cut": lambda run, outside: (run / "alerts.jsonl").write_text('{"event": "raised", "min'),
    "linked_timeline": lambda run, outside: ((run / "timeline.csv").rename(outside / "timeline.csv"),
                                             (run / "timeline.csv").symlink_to(outside / "timeline.csv")),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_run_folder_is_named_and_the_others_are_reported(report, tmp_path, damage):
    """Every file the report reads back is untrusted: a run folder cut short, edited or planted is named on one
    line and in the report, never a traceback and never a 'nan' shown as a value; the good runs are reported."""
    runs = tmp_path / "runs"
    shutil.copytree(report.parent / "two_min", runs / "good")
    shutil.copytree(report.parent / "two_min", runs / "bad")
    outside = tmp_path / "outside"
    outside.mkdir()
    DAMAGES[damage](runs / "bad", outside)
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", str(runs), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "not in the report" in result.output
    assert len([line for line in result.output.splitlines() if "not in the report" in line]) == 1
    page = out.read_text()
    assert 'id="damaged-runs"' in page and str(runs / "bad") in page
    assert "<strong>good</strong>" in page and "<strong>bad</strong>" not in page
    alone = runner.invoke(app, ["report", str(runs / "bad"), "--out", str(tmp_path / "alone.html")])
    assert alone.exit_code == 2 and "Traceback" not in alone.output and "no run folder could be read" in alone.output


def test_crop_cells_never_open_a_file_outside_the_run_folder(report, tmp_path):
    """A crop cell naming a path elsewhere, or a crop that is a link, is never read into the report."""
    import base64

    def embedded(page: Path) -> list[str]:
        return re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page.read_text())

    run = tmp_path / "run"
    shutil.copytree(report.parent / "two_min", run)
    assert runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "before.html")]).exit_code == 0
    before = len(embedded(tmp_path / "before.html"))
    secret = tmp_path / "secret.png"
    cv2.imwrite(str(secret), np.full((40, 40, 3), (0, 0, 255), np.uint8))  # pure red: visible if embedded
    crops = sorted((run / "crops").iterdir())
    crops[0].unlink()
    crops[0].symlink_to(secret)

    def plant(rows):
        row = next(r for r in rows[1:] if r[rows[0].index("crop")] not in ("", f"crops/{crops[0].name}"))
        row[rows[0].index("crop")] = "../secret.png"
    _edit_csv(run / "frames.csv", plant)
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(embedded(out)) == before - 2  # the planted two are left out, every other crop is shown
    for data in embedded(out):
        img = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
        assert not (img[..., 2].mean() > 200 and img[..., :2].mean() < 40), "a file outside the run was embedded"


def test_a_year_long_timeline_and_many_runs_make_a_bounded_report(report, tmp_path):
    """A run of 50,000 minutes (a month) is drawn as means of a few minutes per point and its table lists the
    minutes that matter, saying so (10^6 minutes took 47 s here; before, 10^5 took 152 s and a page of 35 MB);
    with more runs than fit one picture, the PNG beside the report holds the most concerning ones and says so."""
    import csv
    import time

    long_run = tmp_path / "runs" / "month"
    shutil.copytree(report.parent / "short", long_run)
    with open(long_run / "timeline.csv", newline="") as f:
        header, first = list(csv.reader(f))[:2]
    col = {name: i for i, name in enumerate(header)}
    with open(long_run / "timeline.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(header)
        for minute in range(50_000):
            row = list(first)
            row[col["minute"]], row[col["start_s"]], row[col["end_s"]] = str(minute), f"{60 * minute}", f"{60 * minute + 60}"
            row[col["start_time"]] = ""
            if minute % 997 == 0:
                row[col["pain_level"]], row[col["alert"]] = "pain", "1"
            out.writerow(row)
    for k in range(9):
        shutil.copytree(report.parent / "short", tmp_path / "runs" / f"cage{k}")
    out_html = tmp_path / "r.html"
    began = time.monotonic()
    result = runner.invoke(app, ["report", str(tmp_path / "runs"), "--out", str(out_html)])
    took = time.monotonic() - began
    assert result.exit_code == 0, result.output
    assert "the 8 most concerning of 10 runs" in " ".join(result.output.split())
    page = out_html.read_text()
    note = re.search(r'id="table-note-\d+">(.*?)</p>', page, re.S).group(1)
    assert "51 of the run&#39;s 50000 minutes are listed: those with an alert or a pain level" in " ".join(note.split())
    assert page.count("<tr>") < 51 + 10 * 20 + 50  # the month's table is its 51 marked minutes, not 50,000 rows
    assert took < 120, took


def test_a_dark_crop_is_shown_larger_and_brightened_for_viewing_its_file_unchanged(report, tmp_path):
    """Audit crops of a dark rat were too dark to judge the eyes: the report shows them larger and brightened
    (saying so on hover); the crop file, what was scored, stays as it was."""
    import base64

    run = tmp_path / "dark"
    shutil.copytree(report.parent / "two_min", run)
    crops = sorted((run / "crops").glob("*.jpg"))
    for crop in crops:
        img = cv2.imread(str(crop))
        cv2.imwrite(str(crop), (img * 0.15).astype(np.uint8))  # a black rat under dim light
    before = {c.name: c.read_bytes() for c in crops}
    out = tmp_path / "r.html"
    assert runner.invoke(app, ["report", str(run), "--out", str(out)]).exit_code == 0
    page = out.read_text()
    shown = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)
    # the crops' own hover text, not the paragraph above them that explains it
    assert shown and page.count("brightened for viewing (the crop scored is as in crops/)") == len(shown)
    for data in shown:
        img = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
        assert img.shape[:2] == (144, 144)
        assert img.mean() > 80  # the dark crops' own mean is about 20
    assert {c.name: c.read_bytes() for c in crops} == before
