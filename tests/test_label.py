"""The labelling loop: a project picked from a video, the JSON API (token, validation, atomic saves), the pages
driven in a real Chromium (draw a box, reload, no face, score a crop), kill -9 of the server, exports and a
fine-tuning round."""

from __future__ import annotations

import http.client
import json
import re
import time
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rat_monitor.cli import app
from rat_monitor.label.project import Project
from rat_monitor.label.server import LabelServer
from helpers import free_port

runner = CliRunner()
RM = [sys.executable, "-m", "rat_monitor.cli"]
CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def made(short_video, tmp_path_factory) -> Path:
    """A project with 6 frames picked from the short video, made once (copied per test that changes it)."""
    root = tmp_path_factory.mktemp("label") / "project"
    result = runner.invoke(app, ["label", str(short_video), "--project", str(root), "--subject", "rat3",
                                 "--frames", "6", "--no-serve"])
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def project(made, tmp_path) -> Project:
    copy = tmp_path / "project"
    shutil.copytree(made, copy)
    return Project.open(copy)


@pytest.fixture
def server(project):
    srv = LabelServer(project, port=0).start()
    yield srv
    srv.close()


def call(srv, method, path, body=None, token=True, raw=None, headers=None):
    """(status, JSON answer) of one API request."""
    url = f"http://127.0.0.1:{srv.port}{path}"
    if token:
        url += ("&" if "?" in url else "?") + f"token={srv.token}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_picking_covers_the_video_and_adding_again_changes_nothing(made, short_video, tmp_path):
    frames = Project.open(made).frames()
    assert len(frames) == 6 and all(f["subject"] == "rat3" and f["status"] == "unlabelled" for f in frames)
    times = sorted(f["t_s"] for f in frames)
    assert times[-1] - times[0] > 15  # spread over the 40-s video, not the first seconds
    assert sum(bool(f["proposals"]) for f in frames) >= 4  # the detector's boxes are there as proposals
    assert not any(f["boxes"] for f in frames)  # and none of them is a label
    copy = tmp_path / "p"
    shutil.copytree(made, copy)
    project = Project.open(copy)
    first = frames[0]["id"]
    project.save_frame(first, {"boxes": [[10, 10, 60, 60]], "status": "labelled"})
    again = runner.invoke(app, ["label", str(short_video), "--project", str(copy), "--subject", "rat3",
                                "--frames", "6", "--no-serve"])
    assert again.exit_code == 0, again.output
    assert project.frame(first)["boxes"] == [[10.0, 10.0, 60.0, 60.0]]  # what was labelled stays
    assert len(project.frames()) == 12  # asked again: six new frames, never the same six
    assert re.search(r"^short\.mp4: 6 frames added \(rat3; 12 in the project", again.output, re.M), again.output


def test_picks_spread_over_a_still_real_clip(real_mouse_video):
    """The real 6-s head-fixed mouse clip looks alike throughout but for the stimulus in its second half: the 12
    picks come from every part of it, not from its last seconds (11 of 12 did, with k-means over the clip)."""
    from rat_monitor.detect import load_detector
    from rat_monitor.label.pick import pick
    from rat_monitor.models import DEFAULT_DETECTOR

    picked = pick(real_mouse_video, 12, load_detector(DEFAULT_DETECTOR))
    times = [p.t_s for p in picked]
    assert len(picked) == 12 and len(set(p.index for p in picked)) == 12
    assert sum(t >= 3.0 for t in times) <= 7 and min(times) < 1.0 and max(times) > 4.5, times


def test_api_needs_the_token_and_refuses_bad_requests_without_changing_anything(server, project):
    assert call(server, "GET", "/api/frames", token=False)[0] == 401
    status, frames = call(server, "GET", "/api/frames", token=False,
                          headers={"Authorization": f"Bearer {server.token}"})
    assert status == 200 and {"id", "image", "boxes", "status"} <= set(frames[0])
    fid = frames[0]["id"]
    before = project.frame(fid)
    w = before["width"]
    for body, raw, code in [
        ({"boxes": [[0, 0, w + 50, 20]], "status": "labelled"}, None, 400),  # outside the image
        ({"boxes": [[50, 50, 10, 10]], "status": "labelled"}, None, 400),  # inverted
        ({"boxes": [[1, 2, 3]], "status": "labelled"}, None, 400),  # not a box
        ({"boxes": [], "status": "labelled"}, None, 400),  # labelled without a box: that is no_face
        ({"boxes": [], "status": "maybe"}, None, 400),
        (None, b"{not json", 400),
    ]:
        status, answer = call(server, "PUT", f"/api/frames/{fid}", body, raw=raw)
        assert status == code and answer["error"] and "\n" not in answer["error"], (body, answer)
    # a body over 1 MB is refused from its Content-Length, unread: the answer comes before the body is sent (a
    # client still sending 2 MB would find the connection closed under it)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("PUT", f"/api/frames/{fid}?token={server.token}")
    conn.putheader("Content-Length", str((1 << 20) + 1))
    conn.endheaders()
    answer = conn.getresponse()
    assert answer.status == 413 and "\n" not in json.loads(answer.read())["error"]
    conn.close()
    assert project.frame(fid) == before  # nothing changed
    assert call(server, "GET", "/api/frames/nope")[0] == 404
    assert call(server, "GET", "/frames/..%2F..%2Fproject.json")[0] in (400, 404)
    assert call(server, "GET", "/api/frames/../project.json")[0] == 400
    status, saved = call(server, "PUT", f"/api/frames/{fid}", {"boxes": [[20, 30, 80, 90]], "status": "labelled"})
    assert status == 200 and saved["boxes"] == [[20.0, 30.0, 80.0, 90.0]]
    assert call(server, "GET", "/api/progress")[1]["labelled"] == 1


def test_raters_who_agree_on_one_value_get_their_agreement_not_a_dash(server, project):
    """Two raters give every crop the same scores, all 0: kappa is undefined (no variation), so the page shows
    the exact agreement (100 %) and says why there is no kappa."""
    fids = [f["id"] for f in project.frames()]
    for k, fid in enumerate(fids[:3]):
        call(server, "PUT", f"/api/frames/{fid}", {"boxes": [[10 + k, 10, 90, 90]], "status": "labelled"})
    for rater in ("ann", "bob"):
        for crop in call(server, "GET", f"/api/crops?rater={rater}")[1]:
            body = {"orbital": 0, "nose": 0, "ears": 0, "whiskers": 0, "level": "none"}
            assert call(server, "PUT", f"/api/scores/{crop['id']}?rater={rater}", body)[0] == 200
    status, agreement = call(server, "GET", "/api/agreement")
    assert status == 200
    for name in ("orbital", "nose", "ears", "whiskers", "level"):
        a = agreement[name]
        assert a["qwk"] is None and a["agreement"] == 1.0 and a["crops"] == 3 and "undefined" in a["why_no_kappa"]
    assert agreement["rgs"]["icc_2_1"] is None  # undefined too: never NaN in the JSON


def test_two_raters_scores_and_their_agreement(server, project):
    fids = [f["id"] for f in project.frames()]
    for k, fid in enumerate(fids[:4]):
        call(server, "PUT", f"/api/frames/{fid}", {"boxes": [[10 + k, 10, 90, 90]], "status": "labelled"})
    status, queue_a = call(server, "GET", "/api/crops?rater=ann")
    assert status == 200 and len(queue_a) == 4 and set(queue_a[0]) == {"id", "score"}  # blind: no video or time
    order = lambda rater: tuple(c["id"] for c in call(server, "GET", f"/api/crops?rater={rater}")[1])  # noqa: E731
    assert order("ann") == tuple(c["id"] for c in queue_a)  # the same order on every reload
    # each rater's own order: two of 4! orders agree by chance (1 in 24), six raters all alike almost never
    assert len({order(r) for r in ("ann", "bob", "cy", "dee", "eve", "fay")}) > 1
    for k, crop in enumerate(queue_a):
        for rater, shift in (("ann", 0), ("bob", k % 2)):
            body = {"orbital": k % 3, "nose": (k + shift) % 3, "ears": 1, "whiskers": min(2, k), "level":
                    ("none", "moderate", "severe")[k % 3]}
            assert call(server, "PUT", f"/api/scores/{crop['id']}?rater={rater}", body)[0] == 200
    assert call(server, "PUT", f"/api/scores/{queue_a[0]['id']}?rater=ann", {"orbital": 3})[0] == 400
    assert call(server, "PUT", f"/api/scores/{queue_a[0]['id']}?rater=", {"not_scorable": True})[0] == 400
    before = call(server, "GET", "/api/crops?rater=ann")[1][0]["score"]
    for value in ("no", 1, "true"):  # a score is what the page sends: "no" never marks a crop not scorable
        assert call(server, "PUT", f"/api/scores/{queue_a[0]['id']}?rater=ann", {"not_scorable": value})[0] == 400
    assert call(server, "GET", "/api/crops?rater=ann")[1][0]["score"] == before
    agreement = call(server, "GET", "/api/agreement")[1]
    assert agreement["raters"] == ["ann", "bob"] and agreement["orbital"]["qwk"] == pytest.approx(1.0)
    assert agreement["nose"]["qwk"] < 1.0 and agreement["rgs"]["crops"] == 4


def test_export_feeds_detector_and_classifier_training(server, project, tmp_path):
    from rat_monitor.data import load_dataset
    from rat_monitor.detect.train import yolo_samples

    fids = [f["id"] for f in project.frames()]
    call(server, "PUT", f"/api/frames/{fids[0]}", {"boxes": [[20, 30, 80, 90]], "status": "labelled"})
    call(server, "PUT", f"/api/frames/{fids[1]}", {"boxes": [], "status": "no_face"})
    crop = call(server, "GET", "/api/crops?rater=ann")[1][0]["id"]
    call(server, "PUT", f"/api/scores/{crop}?rater=ann",
         {"orbital": 2, "nose": 1, "ears": 2, "whiskers": 1, "level": "severe"})
    result = runner.invoke(app, ["label", "export", str(project.root), "--yolo", str(tmp_path / "yolo"),
                                 "--manifest", str(tmp_path / "scores.csv")])
    assert result.exit_code == 0, result.output
    samples = yolo_samples(tmp_path / "yolo")
    assert sorted(len(s.boxes) for s in samples) == [0, 1]  # the no-face frame is a negative
    box = next(s.boxes[0] for s in samples if len(s.boxes))
    assert box == pytest.approx([20, 30, 80, 90], abs=0.1)
    data = load_dataset(tmp_path / "scores.csv")
    assert list(data.subjects) == ["rat3"] and list(data.labels) == [2] and list(data.aus[0]) == [2, 1, 2, 1]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make test installs it)")
def test_the_pages_in_chromium_draw_reload_no_face_and_score(server, project):
    from playwright.sync_api import sync_playwright

    url = f"http://127.0.0.1:{server.port}/?token={server.token}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        first = project.frames()[0]
        # turn the proposals down one by one (each stays a proposal, never a label, until answered), then draw
        # a box with the mouse
        while page.evaluate("frame.proposals.length"):
            page.evaluate("selected = frame.boxes.length")  # the first proposal
            page.keyboard.press("Delete")
            page.wait_for_function("document.querySelector('[data-testid=save-status]').textContent === 'saved'")
            page.evaluate("document.querySelector('[data-testid=save-status]').textContent = ''")
            record = project.frame(first["id"])
            assert record["status"] == "unlabelled" and record["boxes"] == [] and record["rejected"]
        canvas = page.locator("canvas").bounding_box()
        scale = canvas["width"] / first["width"]
        x0, y0 = canvas["x"] + 40 * scale, canvas["y"] + 30 * scale
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x0 + 60 * scale, y0 + 50 * scale, steps=5)
        page.mouse.up()
        page.wait_for_function("document.querySelector('[data-testid=save-status]').textContent === 'saved'")
        box = project.frame(first["id"])["boxes"]
        assert project.frame(first["id"])["status"] == "labelled"
        assert box == [pytest.approx([40, 30, 100, 80], abs=2)]
        page.reload()
        page.goto(f"{url}&frame={first['id']}")
        page.wait_for_selector("body[data-ready='1']")
        assert page.evaluate("frame.boxes") == [pytest.approx([40, 30, 100, 80], abs=2)]  # still there
        page.keyboard.press("ArrowRight")
        page.wait_for_function(f"frame.id !== '{first['id']}'")
        second = page.evaluate("frame.id")
        page.keyboard.press("n")
        page.wait_for_function(f"frame.id !== '{second}'")
        assert project.frame(second)["status"] == "no_face" and project.frame(second)["boxes"] == []
        # the scoring page: a rater scores the crop of the box just drawn
        page.goto(f"http://127.0.0.1:{server.port}/score?token={server.token}")
        page.fill("[data-testid=rater]", "ann")
        page.click("#begin")
        page.wait_for_selector("body[data-ready='1']")
        for au, value in (("orbital", 2), ("nose", 1), ("ears", 1), ("whiskers", 0)):
            page.check(f"input[name={au}][value='{value}']")
        page.check("input[name=level][value=moderate]")
        page.click("#save")
        page.wait_for_function("document.querySelector('[data-testid=save-status]').textContent === 'saved'")
        crop = project.crop_ids()[0]
        saved = json.loads((project.scores_dir / "ann" / f"{crop}.json").read_text())
        assert (saved["orbital"], saved["nose"], saved["ears"], saved["whiskers"], saved["level"]) == \
            (2, 1, 1, 0, "moderate")
        # a second rater scores by keyboard alone: 0/1/2 set the highlighted item and move on, Enter saves
        page.evaluate("localStorage.clear()")
        page.reload()
        page.fill("[data-testid=rater]", "bob")
        page.click("#begin")
        page.wait_for_selector("body[data-ready='1']")
        assert page.locator("fieldset.current legend").inner_text() == "orbital tightening"
        for key in ("1", "0", "1", "0", "2", "Enter"):
            page.keyboard.press(key)
        page.wait_for_function("document.querySelector('[data-testid=save-status]').textContent === 'saved'")
        saved = json.loads((project.scores_dir / "bob" / f"{crop}.json").read_text())
        assert (saved["orbital"], saved["nose"], saved["ears"], saved["whiskers"], saved["level"]) == \
            (1, 0, 1, 0, "severe")
        browser.close()
    assert not errors


def test_kill_9_of_the_server_loses_nothing_acknowledged(made, tmp_path):
    root = tmp_path / "p"
    shutil.copytree(made, root)
    fids = Project.open(root).frame_ids()

    def start():
        port = free_port()
        proc = subprocess.Popen(RM + ["label", "--project", str(root), "--port", str(port)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in proc.stdout:
            if line.startswith("boxes page:"):
                token = line.split("token=")[1].strip()
                break
        return proc, type("S", (), {"port": port, "token": token})

    proc, srv = start()
    try:
        assert call(srv, "PUT", f"/api/frames/{fids[0]}", {"boxes": [[5, 5, 50, 50]], "status": "labelled"})[0] == 200
        # one writer per project: a second server (or label train) on it is refused in one line, changing nothing
        for second in (["label", "--project", str(root), "--port", str(free_port())], ["label", "train", str(root)]):
            refused = subprocess.run(RM + second, capture_output=True, text=True, timeout=60)
            assert refused.returncode == 2 and "open in another rat-monitor label" in refused.stderr, refused.stderr
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc, srv = start()
        assert call(srv, "GET", f"/api/frames/{fids[0]}")[1]["boxes"] == [[5.0, 5.0, 50.0, 50.0]]
        assert call(srv, "PUT", f"/api/frames/{fids[1]}", {"boxes": [], "status": "no_face"})[0] == 200
        assert call(srv, "GET", "/api/progress")[1]["done"] == 2
    finally:
        proc.kill()
        proc.wait()
    assert not list(root.rglob("*.tmp"))  # no half-written file left behind


def test_a_training_round_fine_tunes_the_detector_and_refills_the_boxes(project, tmp_path):
    from rat_monitor.label.loop import train_round

    frames = project.frames()
    for f in frames[:3]:  # accept the proposals of three frames, as a person would after checking them
        if f["proposals"]:
            project.save_frame(f["id"], {"boxes": f["proposals"], "status": "labelled"})
        else:
            project.save_frame(f["id"], {"boxes": [], "status": "no_face"})
    done = train_round(project, epochs=1)
    assert (done["trained"] / "model.onnx").exists() and done["trained"].name == "detector-1"
    assert done["frames"]["frames"] == 3 and done["refilled"] == 3  # the three frames left were given new boxes
    assert all(project.frame(f["id"])["proposals_from"] == "detector-1" for f in frames[3:])
    assert "skipped" in done["classifier"]  # no scores yet: said, not faked
    again = train_round(project, epochs=1)  # nothing changed: nothing is trained again
    assert "unchanged" in again and len(project.detectors()) == 1
    for f in frames[3:5]:  # two more decided: one of them is held out (the video has 4 now), one learnt from
        project.save_frame(f["id"], {"boxes": [], "status": "no_face"})
    again = train_round(project, epochs=1, classifier=False)
    card = json.loads((again["trained"] / "card.json").read_text())
    assert len(card["training"]["held_out_frames"]) == 1 and len(card["training"]["frames"]) == 4
    assert not set(card["training"]["held_out_frames"]) & set(card["training"]["ancestors_frames"])
    assert again["from"] == done["trained"] and again["trained"].name == "detector-2"  # the loop goes on


def test_a_self_training_round_learns_from_the_projects_video_too(project):
    """label train --self-train: the fine-tune also learns the video's own sure faces, says how many, and is
    held to the same held-out check as any fine-tune."""
    from rat_monitor.models import read_card

    frames = sorted(project.frames(), key=lambda f: f["t_s"])
    for f in frames[:4]:
        project.save_frame(f["id"], {"boxes": f["proposals"] or [[10, 10, 80, 80]], "status": "labelled"})
    result = runner.invoke(app, ["label", "train", str(project.root), "--epochs", "1", "--no-classifier",
                                 "--self-train"])
    assert result.exit_code == 0, result.output
    card = read_card(project.root / "models" / "detector-1")
    rounds = card["training"]["self_training"]
    assert rounds and rounds[0]["faces"] > 0 and "self-training round 1:" in result.output
    assert len(card["training"]["frames"]) == 3 and "held_out" in card["metrics"]  # the same held-out check
    assert "self-trained" in card["caveat"]  # the card says what it learnt from


def test_a_training_round_is_checked_on_held_out_frames_and_says_so(project, tmp_path):
    """Four labelled frames of one video: one of them is held out of the fine-tune, the new detector (and the
    one it started from) is measured on it, and the card and the command's output say so, and say that one face
    is not enough for a figure."""
    from rat_monitor.models import read_card

    frames = sorted(project.frames(), key=lambda f: f["t_s"])
    for f in frames[:4]:
        project.save_frame(f["id"], {"boxes": f["proposals"] or [[10, 10, 80, 80]], "status": "labelled"})
    result = runner.invoke(app, ["label", "train", str(project.root), "--epochs", "1", "--no-classifier"])
    assert result.exit_code == 0, result.output
    assert "not enough held-out faces yet (1 in 1 frame(s)" in result.output, result.output
    card = read_card(project.root / "models" / "detector-1")
    held = card["training"]["held_out_frames"]
    assert len(held) == 1 and held[0] in [f["id"] for f in frames[:4]]
    assert held[0] not in card["training"]["frames"] and len(card["training"]["frames"]) == 3
    assert {"held_out", "held_out_rat-face-detector"} <= set(card["metrics"])
    assert card["metrics"]["held_out"]["frames"] == 1 and "not enough held-out faces" in card["caveat"]
    assert card["validation"]["status"] == "not checked" and not card["synthetic"]
    shown = Project.open(project.root).progress()["detector"]  # what the boxes page says of it
    assert shown["name"] == "detector-1" and shown["verdict"].startswith("not enough held-out faces")


def test_crops_from_a_blind_curation_join_the_scoring_queue_with_their_animal(short_video, tmp_path):
    curated = tmp_path / "to_label"
    made = runner.invoke(app, ["curate", str(short_video), "--subject", "rat3", "--out", str(curated), "--blind",
                               "--every", "20s", "--per-window", "1"])
    assert made.exit_code == 0, made.output
    result = runner.invoke(app, ["label", "--project", str(tmp_path / "p"), "--crops", str(curated), "--no-serve"])
    assert result.exit_code == 0, result.output
    project = Project.open(tmp_path / "p")
    crops = [project.crop(c) for c in project.crop_ids()]
    assert len(crops) == 2 and {c["subject"] for c in crops} == {"rat3"}  # the animal came from key.csv
    assert [q["score"] for q in project.blind_queue("ann")] == [None, None]


def test_several_people_saving_at_once_each_get_an_answer(server, project):
    """Two clients saving the same frame and two raters saving scores, at once: every request is answered
    (a race while the crops were synced dropped about 7% of them), and project and crops agree after."""
    import threading

    fids = [f["id"] for f in project.frames()]
    w, h = project.frame(fids[0])["width"], project.frame(fids[0])["height"]
    statuses, errors = [], []

    def client(k: int) -> None:
        for i in range(15):
            try:
                box = [5 + i + k, 5, 60 + i + k, 60]
                statuses.append(call(server, "PUT", f"/api/frames/{fids[i % 2]}", {"boxes": [box], "status": "labelled"})[0])
            except Exception as exc:  # noqa: BLE001 - a dropped connection is the failure looked for
                errors.append(repr(exc))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and statuses == [200] * 45, (errors, statuses)
    assert w > 60 and h > 60
    labelled = [project.frame(f) for f in fids[:2]]
    crops = [project.crop(c) for c in project.crop_ids()]
    assert sorted(c["box"] for c in crops) == sorted(f["boxes"][0] for f in labelled)  # one crop per box, no orphan


def test_a_crash_between_a_frame_and_its_crops_is_mended_when_the_project_opens(project):
    fid = project.frames()[0]["id"]
    project.save_frame(fid, {"boxes": [[10, 10, 70, 70]], "status": "labelled"})
    for path in project.crops_dir.iterdir():  # as if killed after the frame's record, before its crop
        path.unlink()
    reopened = Project.open(project.root)
    assert len(reopened.crop_ids()) == 1 and reopened.crop_image(reopened.crop_ids()[0]).exists()
    # killed after a frame's new boxes were written, before the old box's crop went: mended on open too
    record = json.loads((project.frames_dir / f"{fid}.json").read_text())
    record["boxes"] = [[20, 20, 80, 80]]
    (project.frames_dir / f"{fid}.json").write_text(json.dumps(record))
    old = reopened.crop_ids()
    reopened = Project.open(project.root)
    assert len(reopened.crop_ids()) == 1 and reopened.crop_ids() != old
    assert reopened.crop(reopened.crop_ids()[0])["box"] == [20, 20, 80, 80]
    # a save touches its own frame's crops only: it never reads every crop record of the project
    reopened._crop_records = lambda *a, **k: pytest.fail("a save read every crop record")
    reopened.save_frame(fid, {"boxes": [[30, 30, 90, 90], [5, 5, 40, 40]], "status": "labelled"})
    assert len(reopened.crop_ids()) == 2
    broken = project.frames()[1]["id"]
    (project.frames_dir / f"{broken}.json").write_text('{"id": "cut sh')  # a record cut short
    reopened = Project.open(project.root)  # the project still opens
    with pytest.raises(Exception, match="damaged"):
        reopened.frame(broken)


def test_malformed_requests_get_a_4xx_never_a_dropped_connection(server, project):
    import http.client
    import socket

    fid = project.frames()[0]["id"]
    too_many = {"boxes": [[1, 1, 20, 20]] * 1000, "status": "labelled"}
    assert call(server, "PUT", f"/api/frames/{fid}", too_many)[0] == 400
    huge = b'{"boxes": [[1, 1, 1' + b"0" * 400 + b', 20]], "status": "labelled"}'
    assert call(server, "PUT", f"/api/frames/{fid}", raw=huge)[0] == 400
    deep = b"[" * 100_000 + b"]" * 100_000
    assert call(server, "PUT", f"/api/frames/{fid}", raw=deep)[0] in (400, 413)
    assert call(server, "PATCH", f"/api/frames/{fid}", {})[0] == 405
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(f"PUT /api/frames/{fid}?token={server.token} HTTP/1.1\r\nHost: x\r\n".encode()
                 + "Content-Length: ١٢\r\n\r\n".encode())  # Arabic-Indic digits: isdigit() says yes
    answer = http.client.HTTPResponse(sock)
    answer.begin()
    assert answer.status == 400 and answer.read()  # refused by the HTTP layer (h11) before any page code
    sock.close()
    (project.frames_dir / f"{fid}.jpg").unlink()
    status, body = call(server, "GET", f"/frames/{fid}.jpg")
    assert status in (404, 500) and "error" in body
    # a save that needs the missing picture (a new box's crop) is refused, and nothing of it was written
    before = project.frame(fid)
    status, body = call(server, "PUT", f"/api/frames/{fid}", {"boxes": [[3, 3, 40, 40]], "status": "labelled"})
    assert status == 500 and "picture" in body["error"] and project.frame(fid) == before
    assert call(server, "GET", "/api/progress")[0] == 200  # still answering


def test_an_idle_connection_is_closed(project, monkeypatch):
    import socket

    from rat_monitor import web

    monkeypatch.setattr(web, "REQUEST_DEADLINE_S", 1)
    srv = LabelServer(project, port=0).start()
    try:
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        t0 = time.time()
        assert sock.recv(100) == b"" and time.time() - t0 < 5  # closed by the server, nothing sent
        sock.close()
    finally:
        srv.close()


def test_a_trickling_client_is_cut_off_and_a_burst_of_connections_is_answered_at_once(project, monkeypatch):
    """A client sending one byte every half second never finishes its request: it is cut off at the deadline
    while others are answered; 30 connections opened at once are all answered promptly (a listen backlog of 5
    stalled every sixth by a second)."""
    import socket
    from concurrent.futures import ThreadPoolExecutor

    from rat_monitor import web

    monkeypatch.setattr(web, "REQUEST_DEADLINE_S", 2)
    srv = LabelServer(project, port=0).start()
    try:
        slow = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        t0 = time.time()
        cut_off = False
        for byte in f"GET /api/progress?token={srv.token} HTTP/1.1\r\nHost: x\r\n".encode():
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                cut_off = True
                break
            assert call(srv, "GET", "/api/progress")[0] == 200  # the others are answered meanwhile
            time.sleep(0.5)
            if time.time() - t0 > 6:
                break
        slow.settimeout(5)
        try:
            cut_off = cut_off or slow.recv(100) == b""
        except OSError:
            cut_off = True
        assert cut_off and time.time() - t0 < 8
        slow.close()
        t0 = time.time()
        with ThreadPoolExecutor(30) as pool:
            codes = list(pool.map(lambda _: call(srv, "GET", "/api/progress")[0], range(30)))
        assert codes == [200] * 30 and time.time() - t0 < 3, time.time() - t0
    finally:
        srv.close()


def _two_camera_project(root: Path, per_video: int) -> Project:
    """A project of two videos (cameras) with PER_VIDEO decided frames each, one face box per frame."""
    import numpy as np

    project = Project.open(root, create=True)
    image = np.full((120, 160, 3), 90, np.uint8)
    for video in ("cam_a.mp4", "cam_b.mp4"):
        for k in range(per_video):
            fid = project.add_frame(root / video, "rat1", 10 * k, float(k), image, np.zeros((0, 4)), "test")
            project.save_frame(fid, {"boxes": [[10 + k, 10, 60 + k, 60]], "status": "labelled"})
    return project


def test_held_out_frames_come_from_every_camera_and_never_from_what_a_detector_learnt(tmp_path):
    """Two cameras: each is learnt and each is checked (holding a whole camera out measured one camera on the
    other's training); a frame once held out stays held out; a frame a detector learnt from is never held out."""
    from rat_monitor.label.loop import split_held_out

    project = _two_camera_project(tmp_path / "p", 8)
    train, held, how = split_held_out(project)
    video_of = {f["id"]: Path(f["video"]).name for f in project.frames()}
    assert {video_of[i] for i in held} == {"cam_a.mp4", "cam_b.mp4"} == {video_of[i] for i in train}
    assert len(held) == 4 and not set(train) & set(held) and "within each video" in how
    learnt = {held[0]}  # as if an earlier detector (an ancestor) had learnt from it: never held out
    project.save_frame(project.frames()[0]["id"], {"boxes": [[20, 20, 70, 70]], "status": "labelled"})
    train2, held2, _ = split_held_out(project, never_held=learnt)
    assert held[0] in train2 and set(held[1:]) <= set(held2)  # the other held-out frames stay held out


def test_a_proposal_is_a_label_only_once_accepted_and_a_turned_down_one_teaches(server, project, tmp_path):
    """Two proposals on a frame; turning one down leaves the other a proposal (it was saved as a face before),
    and the frame undecided with no crop; accepting takes what is shown; turned-down proposals are kept."""
    fid = project.frames()[0]["id"]
    record = json.loads((project.frames_dir / f"{fid}.json").read_text())
    record.update(proposals=[[10.0, 10.0, 60.0, 60.0], [80.0, 20.0, 130.0, 70.0]], boxes=[], status="unlabelled")
    (project.frames_dir / f"{fid}.json").write_text(json.dumps(record))
    status, saved = call(server, "PUT", f"/api/frames/{fid}",
                         {"boxes": [], "status": "unlabelled", "proposals": [[80.0, 20.0, 130.0, 70.0]]})
    assert status == 200 and saved["status"] == "unlabelled" and saved["boxes"] == []
    assert saved["proposals"] == [[80.0, 20.0, 130.0, 70.0]] and saved["rejected"] == 1
    assert project.crop_ids() == [] and call(server, "GET", "/api/progress")[1]["done"] == 0
    assert call(server, "PUT", f"/api/frames/{fid}", {"boxes": [], "status": "unlabelled",
                                                      "proposals": [[1, 1, 50, 50]]})[0] == 400  # never added
    status, saved = call(server, "PUT", f"/api/frames/{fid}", {"boxes": [[80, 20, 130, 70]], "status": "labelled",
                                                              "proposals": []})
    assert status == 200 and saved["status"] == "labelled" and len(project.crop_ids()) == 1
    assert project.frame(fid)["rejected"] == [[10.0, 10.0, 60.0, 60.0]]
    # the fine-tune reads it as a "not a face" box of that frame, beside the face
    from rat_monitor.detect.train import yolo_samples
    from rat_monitor.label.export import export_yolo

    assert export_yolo(project, tmp_path / "yolo", [fid])["turned_down"] == 1
    sample, = yolo_samples(tmp_path / "yolo")
    assert np.allclose(sample.boxes, [[80, 20, 130, 70]], atol=0.01)
    assert np.allclose(sample.negatives, [[10, 10, 60, 60]], atol=0.01)


def test_reopening_with_a_detector_refills_the_undecided_frames_and_train_trains_only_what_asked(project):
    result = runner.invoke(app, ["label", "--project", str(project.root), "--detector", "rat-face-detector",
                                 "--no-serve", "--frames", "2"])
    assert result.exit_code == 0, result.output
    assert "undecided frames now show the proposals of rat-face-detector" in result.output
    first = project.frames()[0]["id"]
    project.save_frame(first, {"boxes": [[10, 10, 70, 70]], "status": "labelled"})
    result = runner.invoke(app, ["label", "train", str(project.root), "--no-detector"])
    assert result.exit_code == 0, result.output
    assert "classifier: not trained: no crop is scored yet" in result.output and not project.detectors()


def test_the_page_fine_tunes_in_the_background_and_stays_responsive(project):
    """Two decided frames start a background round (auto every 2); while it runs the server answers at once;
    when it ends the undecided frames carry the new detector's proposals and the state says how it was checked."""
    from rat_monitor.label.background import BackgroundTrainer

    trainer = BackgroundTrainer(project, epochs=3, auto_every=2)
    srv = LabelServer(project, port=0, trainer=trainer).start()
    try:
        fids = [f["id"] for f in project.frames()]
        assert call(srv, "GET", "/api/train")[1]["running"] is False
        call(srv, "PUT", f"/api/frames/{fids[0]}", {"boxes": [[20, 30, 80, 90]], "status": "labelled"})
        call(srv, "PUT", f"/api/frames/{fids[1]}", {"boxes": [], "status": "no_face"})
        assert call(srv, "GET", "/api/train")[1]["running"] is True
        assert call(srv, "POST", "/api/train")[0] == 409  # one round at a time
        slowest = 0.0
        while call(srv, "GET", "/api/train")[1]["running"]:
            t0 = time.perf_counter()
            assert call(srv, "GET", "/api/progress")[0] == 200
            slowest = max(slowest, time.perf_counter() - t0)
            time.sleep(0.2)
        assert slowest < 1.0, slowest  # the page stays responsive while the detector trains
        state = call(srv, "GET", "/api/train")[1]
        assert state["error"] is None and state["last"]["detector"] == "detector-1", state
        assert "held-out" in state["last"]["verdict"]  # two frames: none held out yet, and it says so
        assert all(project.frame(f)["proposals_from"] == "detector-1" for f in fids[2:])
        assert call(srv, "GET", "/api/progress")[1]["detector"]["name"] == "detector-1"
    finally:
        trainer.wait(120)
        srv.close()


PROJECT_DAMAGES = {  # what a crash, a hand edit or a planted file leaves in a labelling project
    "frame_cut": lambda p, fid, cid: (p.frames_dir / f"{fid}.json").write_text('{"id": "cut sh'),
    "frame_list": lambda p, fid, cid: (p.frames_dir / f"{fid}.json").write_text("[1, 2]"),
    "frame_nan_box": lambda p, fid, cid: (p.frames_dir / f"{fid}.json").write_text(json.dumps(
        {**json.loads((p.frames_dir / f"{fid}.json").read_text()), "boxes": [[float("nan"), 1, 2, 3]]})),
    "picture_missing": lambda p, fid, cid: (p.frames_dir / f"{fid}.jpg").unlink(),
    "score_cut": lambda p, fid, cid: (p.scores_dir / "ann" / f"{cid}.json").write_text('{"orbi'),
    "score_text": lambda p, fid, cid: (p.scores_dir / "ann" / f"{cid}.json").write_text(
        '{"not_scorable": false, "orbital": "no", "nose": 1, "ears": 1, "whiskers": 1, "level": "none"}'),
}


@pytest.mark.parametrize("damage", sorted(PROJECT_DAMAGES))
def test_a_damaged_record_is_left_out_and_named_and_the_project_still_opens_and_exports(project, tmp_path, damage):
    """Every record a project reads back is untrusted: one cut short, edited or planted, or a frame whose
    picture is gone, is named on one line and left out; the rest of the project opens, serves and exports."""
    ids = project.frame_ids()
    for fid in ids[:2]:
        project.save_frame(fid, {"boxes": [[10, 10, 70, 70]], "status": "labelled"})
    for cid in project.crop_ids():
        project.save_score("ann", cid, {"orbital": 1, "nose": 1, "ears": 0, "whiskers": 0, "level": "none",
                                        "not_scorable": False})
    PROJECT_DAMAGES[damage](project, ids[0], project.crop_ids()[0])
    opened = runner.invoke(app, ["label", "--project", str(project.root), "--no-serve"])
    assert opened.exit_code == 0 and "Traceback" not in opened.output, opened.output
    assert [line for line in opened.output.splitlines() if "left out:" in line], opened.output
    yolo, manifest = tmp_path / "yolo", tmp_path / "m.csv"
    exported = runner.invoke(app, ["label", "export", str(project.root), "--yolo", str(yolo),
                                   "--manifest", str(manifest)])
    assert exported.exit_code == 0 and "left out:" in exported.output, exported.output
    frames_out = len(list((yolo / "images").iterdir()))
    scored_out = len(manifest.read_text().splitlines()) - 1
    assert (frames_out, scored_out) == ((2, 1) if damage.startswith("score") else (1, 2))
    srv = LabelServer(Project.open(project.root), port=0).start()
    try:
        status, listing = call(srv, "GET", "/api/frames")
        assert status == 200 and len(listing) == len(ids) - damage.startswith("frame")
    finally:
        srv.close()


def test_a_one_animal_pilot_is_offered_and_marked_not_validated_everywhere(project):
    """Scores of one animal cannot validate a pain model by animal: label train says so and what a pilot can do;
    with --pilot it trains one whose card, and so every run and report, says NOT validated by animal and why."""
    from rat_monitor.models import read_card, validation_status

    for k, fid in enumerate(project.frame_ids()[:6]):
        project.save_frame(fid, {"boxes": [[10 + k, 10, 80 + k, 80], [100, 20, 170, 90]], "status": "labelled"})
    for k, cid in enumerate(project.crop_ids()):
        project.save_score("ann", cid, {"orbital": k % 2, "nose": k % 3, "ears": (k + 1) % 2, "whiskers": k % 3,
                                        "level": ("none", "moderate")[k % 2], "not_scorable": False})
    refused = runner.invoke(app, ["label", "train", str(project.root), "--no-detector"])
    assert refused.exit_code == 0, refused.output
    assert "of 1 animal(s)" in refused.output and "--pilot" in refused.output
    assert not list((project.root / "models").glob("classifier-*"))
    pilot = runner.invoke(app, ["label", "train", str(project.root), "--no-detector", "--pilot"])
    assert pilot.exit_code == 0, pilot.output
    assert "a pilot, NOT validated by animal" in " ".join(pilot.output.split())
    card = read_card(project.root / "models" / "classifier-1")
    status = validation_status(card)
    assert status["level"] == "not-checked" and "of 1 animal(s)" in status["line"], status
