"""Several sources in one watch, and the live page: its API (token, sources, timeline, snapshot) and the page in
Chromium (face boxes on the picture, a minute row when a minute closes, the alert banner, a stream that stops
shows 'reconnecting' and recovers)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import rendered
from helpers import free_port, read_rows, serve_stream

RM = [sys.executable, "-m", "rat_monitor.cli"]
CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def painful(tmp_path_factory):
    return rendered("painful", tmp_path_factory)


def get(port, token, path, raw=False):
    url = f"http://127.0.0.1:{port}{path}" + (f"?token={token}" if token else "")
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = r.read()
            return r.status, body if raw else json.loads(body)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def start_watch(args, tmp_path):
    """`watch ... --serve PORT` in a process; returns it, the port and the token it printed."""
    port = free_port()
    proc = subprocess.Popen(RM + ["watch", *args, "--out", str(tmp_path / "room"), "--serve", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stdout:
        if "live page:" in line:
            return proc, port, line.split("token=")[1].strip()
    raise AssertionError(proc.stderr.read())


def stop_watch(proc) -> None:
    """Ctrl-C for a watch process: it ends cleanly (exit 0) within a minute."""
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr.read()


def wait_for(check, timeout=60.0, every=0.25):
    end = time.time() + timeout
    while time.time() < end:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not within {timeout} s")


def test_two_sources_one_process_a_run_folder_each_and_the_api(painful, short_video, tmp_path):
    proc, port, token = start_watch(["--video", str(painful), "--video", str(short_video), "--realtime",
                                     "--speed", "20", "--name", "cage1", "--name", "cage2"], tmp_path)
    try:
        assert get(port, None, "/api/sources")[0] == 401
        status, sources = get(port, token, "/api/sources")
        assert status == 200 and [s["name"] for s in sources] == ["cage1", "cage2"]
        assert {"state", "fps", "dropped", "minute", "alert"} <= set(sources[0])
        # how far each model was checked, one line per model, on every source
        assert [line.split(":")[0] for line in sources[0]["models"]] == ["Model 'rat-face-detector'",
                                                                         "Model 'lbp-svm-synthetic'"]
        get(port, token, "/api/sources/cage1/snapshot.jpg", raw=True)  # somebody looks: pictures are drawn
        status, jpeg = wait_for(lambda: (lambda r: r if r[0] == 200 else None)(
            get(port, token, "/api/sources/cage1/snapshot.jpg", raw=True)))  # 204 until the first is drawn
        picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert picture is not None and picture.shape[1] <= 640
        green = (picture[..., 1] > 150) & (picture[..., 0] < 90) & (picture[..., 2] < 90)
        assert green.sum() > 40  # the tracked face box is drawn on the picture
        rows = wait_for(lambda: get(port, token, "/api/sources/cage1/timeline")[1], timeout=60)
        assert rows[0]["minute"] == "0" and rows[0]["frames"] == "300"
        assert get(port, token, "/api/sources/nope/timeline")[0] == 404
        proc.wait(timeout=120)  # both files end: the watch ends by itself
    finally:
        proc.kill()
    assert proc.returncode == 0, proc.stderr.read()
    assert len(read_rows(tmp_path / "room" / "cage1" / "timeline.csv")) == 3
    assert len(read_rows(tmp_path / "room" / "cage2" / "timeline.csv")) == 1
    info = json.loads((tmp_path / "room" / "cage2" / "run.json").read_text())
    assert info["complete"] and info["totals"]["frames"] == 600


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make test installs it)")
def test_the_live_page_in_chromium(painful, short_video, tmp_path):
    from playwright.sync_api import sync_playwright

    stream_port = free_port()
    stream = serve_stream(short_video, stream_port, loop=True)
    time.sleep(0.5)
    proc, port, token = start_watch(["--url", f"http://127.0.0.1:{stream_port}/live.ts", "--video", str(painful),
                                     "--realtime", "--speed", "12", "--name", "stream", "--name", "painful",
                                     "--give-up", "120"], tmp_path)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            errors = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{port}/?token={token}")
            page.wait_for_selector("body[data-ready='1']")
            painful_card = page.locator("[data-source=painful]")
            page.wait_for_function("document.querySelector('[data-source=painful] img.snap').naturalWidth > 0")
            assert not page.locator("[data-source=painful] [data-testid=no-snapshot]").is_visible()
            # two sources share a 1280-px window side by side
            boxes = [page.locator(f"[data-source={n}]").bounding_box() for n in ("stream", "painful")]
            assert abs(boxes[0]["y"] - boxes[1]["y"]) < 2 and sum(b["width"] for b in boxes) > 0.9 * 1280 - 40
            # the real-time stream's first minute is still open: its table says when the first row comes
            page.wait_for_function("document.querySelector('[data-source=stream] tbody').textContent"
                                   ".includes('the first row comes when minute 0 closes')", timeout=20000)
            page.wait_for_function("document.querySelectorAll('[data-source=painful] tbody tr td').length >= 9",
                                   timeout=60000)  # a minute row appears as minute 0 closes
            page.wait_for_selector("[data-testid=alert-banner]:visible", timeout=60000)
            assert "painful" in page.locator("[data-testid=alert-banner]").inner_text()
            assert "ALERT" in painful_card.locator("tbody").inner_text()
            assert "synthetic faces only" in painful_card.locator("[data-testid=models]").inner_text()
            page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
            stream_state = "document.querySelector('[data-source=stream] [data-testid=state]').textContent"
            page.wait_for_function(f"{stream_state} === 'live'")
            stream.kill()
            stream.wait()
            page.wait_for_function(f"{stream_state} === 'reconnecting'", timeout=60000)
            stream = serve_stream(short_video, stream_port, loop=True)
            page.wait_for_function(f"{stream_state} === 'live'", timeout=60000)
            browser.close()
        assert not errors, errors
        stop_watch(proc)
    finally:
        proc.kill()
        stream.kill()
    assert (tmp_path / "room" / "stream" / "run.json").exists() and (tmp_path / "room" / "painful" / "alerts.jsonl").exists()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make test installs it)")
def test_the_live_page_shows_a_timeline_per_animal(two_rats, tmp_path):
    """Two rats in one cage: a plot per animal, titled with its name, minute rows that say whose they are, and
    face boxes labelled with the animal (or '?' while not sure)."""
    from playwright.sync_api import sync_playwright

    proc, port, token = start_watch(["--video", str(two_rats), "--realtime", "--speed", "8", "--name", "pair",
                                     "--animals", "2", "--animal-names", "rat 7,rat <9>"], tmp_path)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{port}/?token={token}")
            page.wait_for_selector("body[data-ready='1']")
            page.wait_for_function("document.querySelectorAll('[data-source=pair] canvas').length === 2",
                                   timeout=60000)  # minute 0 closed, for both animals
            card = page.locator("[data-source=pair]")
            assert card.locator("[data-testid=plots] h3").all_inner_texts() == ["rat 7", "rat <9>"]  # text, not markup
            table = card.locator("table").inner_text()
            assert "animal" in table and "rat 7" in table and "rat <9>" in table
            browser.close()
        assert not errors, errors
        stop_watch(proc)
    finally:
        proc.kill()
    rows = read_rows(tmp_path / "room" / "timeline.csv")
    assert [r["animal"] for r in rows[:2]] == ["rat 7", "rat <9>"]


def test_source_names_given_derived_and_made_unique():
    from rat_monitor.cli.watch import source_specs
    from rat_monitor.errors import ConfigError

    specs = source_specs([0, 1], ["rtsp://10.0.0.7:554/cam"], [Path("a/day1.mp4"), Path("b/day1.mp4")], ["cage1"])
    assert [s[0] for s in specs] == ["cage1", "camera1", "10.0.0.7_554_cam", "day1", "day1-2"]
    with pytest.raises(ConfigError):
        source_specs([0], [], [], ["../etc"])


def test_ctrl_c_while_a_stream_reconnects_ends_every_run_promptly_and_keeps_it(painful, short_video, tmp_path):
    """A stream that is down when the user presses Ctrl-C: the watch stops within seconds (not after --give-up),
    and both runs are closed as stopped ones, their run.json written."""
    stream_port = free_port()
    stream = serve_stream(short_video, stream_port, loop=True)
    time.sleep(0.5)
    proc, port, token = start_watch(["--url", f"http://127.0.0.1:{stream_port}/live.ts", "--video", str(painful),
                                     "--speed", "0.5", "--name", "stream", "--name", "cage", "--give-up", "600"],
                                    tmp_path)
    try:
        state = lambda name: {s["name"]: s["state"] for s in get(port, token, "/api/sources")[1]}[name]  # noqa: E731
        wait_for(lambda: state("stream") == "live" and get(port, token, "/api/sources")[1][0]["fps"] > 0)
        stream.kill()
        stream.wait()
        wait_for(lambda: state("stream") == "reconnecting")
        proc.send_signal(signal.SIGINT)
        started = time.time()
        proc.wait(timeout=30)
        took = time.time() - started
    finally:
        proc.kill()
        stream.kill()
    assert proc.returncode == 0, proc.stderr.read()
    assert took < 20
    for name in ("stream", "cage"):
        info = json.loads((tmp_path / "room" / name / "run.json").read_text())
        assert info["totals"]["interrupted"] and info["totals"]["frames"] > 0
        assert info["complete"] is False  # stopped, not ended: never both


def test_no_page_puts_data_into_markup():
    """Anything that reaches a page is text: innerHTML takes only the pages' own constant templates (the live
    page's rows and crops, and the scoring page's agreement table, are built with textContent)."""
    import re
    from importlib import resources

    for package in ("rat_monitor.live", "rat_monitor.label"):
        for page in resources.files(package).joinpath("static").iterdir():
            if not page.name.endswith(".html"):
                continue
            text = page.read_text()
            for statement in re.findall(r"innerHTML\s*=\s*(.*?);\n", text, flags=re.S):
                placeholders = set(re.findall(r"\$\{(\w+)\}", statement))
                assert not re.search(r"\$\{(?!\w+\})", statement), (page.name, statement[:80])  # ${a.b}: data
                assert placeholders <= {"key", "label", "v"}, (page.name, placeholders)  # the AU names, 0-2
