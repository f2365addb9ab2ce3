"""The live command: watch one source or several, with the terminal view and, with --serve, the live page."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Optional

import typer
from rich.live import Live

from ..errors import ConfigError, SourceError
from ..models import DEFAULT_CLASSIFIER, DEFAULT_DETECTOR
from ..pipeline import Observer, RunResult
from ..sinks.files import alert_record, recorded_start
from .app import (ANIMAL_NAMES_HELP, ANIMALS_HELP, DETECTOR_HELP, MODEL_HELP, Alerts, app, caveat, friendly_errors,
                  out, print_camera, settings)
from .run import load_models
from .views import LiveView, sources_table


@app.command()
@friendly_errors
def watch(
    camera: Optional[list[int]] = typer.Option(None, help="Camera index (0 = first camera); repeat for several."),
    video: Optional[list[Path]] = typer.Option(None, help="A video file, processed like a live feed; repeatable."),
    url: Optional[list[str]] = typer.Option(None, help="A stream URL (rtsp://, http://); repeatable."),
    name: Optional[list[str]] = typer.Option(None, help="Names of the sources, in the order cameras, URLs, videos "
                                                        "(default: camera0, the URL's host and path, the file name)."),
    out_dir: Path = typer.Option(Path("runs/watch"), "--out", "-o", help="Run folder (one source: written into "
                                                                          "directly; several: OUT/<name>/ each)."),
    model: str = typer.Option(DEFAULT_CLASSIFIER, "--model", "-m", help=MODEL_HELP),
    detector: str = typer.Option(DEFAULT_DETECTOR, help=DETECTOR_HELP),
    duration: Optional[float] = typer.Option(None, help="Stop after this many seconds."),
    realtime: bool = typer.Option(False, help="With --video: pace the file at its frame rate, like a camera "
                                              "(always, beside other sources)."),
    speed: float = typer.Option(1.0, help="With --realtime: seconds of video per second (a demo at 10x)."),
    window: float = typer.Option(10.0, help="Selection window in seconds (must divide a minute)."),
    per_window: int = typer.Option(3, help="Face frames scored per window at most."),
    overwrite: bool = typer.Option(False, help="Replace an earlier run in --out."),
    resume: bool = typer.Option(False, help="Continue the run in --out after a crash or a stop: its minutes stay, "
                                            "the time in between becomes source_lost minutes."),
    serve: Optional[str] = typer.Option(None, help="Also serve the live page on [HOST:]PORT (127.0.0.1 unless a "
                                                   "host is given); the address with its access token is printed."),
    on_alert: Optional[str] = typer.Option(None, help="Command run for each alert raised, beside the analysis (never holding its \
frames): the alert as JSON on stdin; killed after 30 s."),
    give_up: float = typer.Option(300.0, help="Seconds to keep retrying a lost camera or stream before ending the run."),
    animals: int = typer.Option(1, help=ANIMALS_HELP),
    animal_names: str = typer.Option("", help=ANIMAL_NAMES_HELP),
):
    """Live pain timeline from cameras, streams or files, with a terminal view and, with --serve, a live page in
    the browser (frames with face boxes, scored crops, the timeline, alerts); Ctrl-C or SIGTERM (a service stop)
    stops cleanly: the partial minute is written and the run marked interrupted.

    [bold]Example:[/] rat-monitor watch --camera 0 --out runs/cage3
    (after a crash or a stop: the same with --resume; several cages: --camera 0 --camera 1 --serve 8080)
    (without a camera: rat-monitor watch --video sample_videos/albino_onset.mp4 --realtime --out runs/try)
    """
    from ..sources import CaptureSource
    from ..web import parse_address

    run_settings = settings(window, per_window, duration, animals, animal_names)
    run_settings.check()
    if not (math.isfinite(give_up) and give_up >= 0):
        raise ConfigError("--give-up must be a number of seconds, 0 or more")
    if not (math.isfinite(speed) and 0.01 <= speed <= 1000):
        raise ConfigError("--speed must be between 0.01 and 1000")
    specs = source_specs(camera or [], url or [], video or [], name or [])
    if not specs:
        raise ConfigError("give a source: --camera N, --url URL or --video FILE")
    if resume and (video or overwrite):
        raise ConfigError("--resume continues a live run (--camera or --url), without --overwrite; "
                          "for a file use analyze --resume")
    try:
        address = parse_address(serve) if serve is not None else None
    except ValueError as exc:
        raise ConfigError(f"--serve: {exc}") from None
    det, clf = load_models(model, detector)
    single = len(specs) == 1
    sources: dict[str, CaptureSource] = {}
    try:
        for spec_name, kind, value in specs:
            run_dir = out_dir if single else out_dir / spec_name
            # beside other sources a file is paced like a camera: read flat out it would starve them
            sources[spec_name] = CaptureSource(
                **{kind: value}, realtime=realtime or not single, speed=speed, give_up_s=give_up,
                start_epoch=recorded_start(run_dir) if resume else None)
        with Alerts(on_alert) as alerts:
            if single:
                _watch_one(specs[0][0], sources[specs[0][0]], out_dir, det, clf, run_settings, overwrite, resume,
                           alerts, give_up, address)
            else:
                _watch_many(sources, out_dir, det, clf, run_settings, overwrite, resume, alerts, give_up, address)
    finally:
        for source in sources.values():
            source.close()


def source_specs(cameras: list[int], urls: list[str], videos: list[Path], names: list[str]) -> list[tuple]:
    """(name, kind, value) per source, in the order cameras, URLs, videos; names given or derived, made unique."""
    import re

    from ..names import RULE as NAME_RULE
    from ..names import is_safe_name

    specs = [("camera", c) for c in cameras] + [("url", u) for u in urls] + [("video", v) for v in videos]
    if len(names) > len(specs):
        raise ConfigError(f"{len(names)} --name for {len(specs)} source(s)")
    out, seen = [], set()
    for k, (kind, value) in enumerate(specs):
        if k < len(names):
            label = names[k]
            if not is_safe_name(label, 60):
                raise ConfigError(f"--name {label!r}: use {NAME_RULE} (it names a folder)")
        else:
            raw = (f"camera{value}" if kind == "camera" else Path(value).stem if kind == "video"
                   else re.sub(r"^\w+://", "", str(value)))
            label = re.sub(r"[^A-Za-z0-9_.-]+", "_", raw).strip("_.")[:60] or kind
        base, n = label, 2
        while label in seen:
            label, n = f"{base}-{n}", n + 1
        seen.add(label)
        out.append((label, kind, value))
    return out


def _close_server(server, seconds: float) -> None:
    """Stops the live page's server and says what it cost."""
    if server is None:
        return
    server.close()
    share = 100 * server.cpu_s / seconds if seconds > 0 else 0.0
    out.print(f"live page: {server.requests} requests answered with {server.cpu_s:.1f} s of CPU ({share:.1f}% of one "
              "core over the run; the pictures' drawing is the 'view' stage in run.json)", highlight=False)


def _serve_board(board, address):
    """The live page's server, started, and its address printed; None without --serve."""
    if address is None:
        return None
    from ..live.server import LiveServer

    server = LiveServer(board, *address).start()
    out.print(f"live page: {server.url()}\n(the token in the address is the key: share it only with the people who "
              "should look)", highlight=False, soft_wrap=True)
    return server


def _watch_one(name, source, out_dir, det, clf, run_settings, overwrite, resume, alerts, give_up, address) -> None:
    """One source: the terminal shows its minutes as they close (and the live page, with --serve)."""
    from ..live.board import LiveBoard
    from ..pipeline import FanOut
    from ..runs import watch_source

    board = LiveBoard(caveat(det, clf).splitlines())
    server = _serve_board(board, address)
    view = LiveView(caveat(det, clf), lambda row: alerts.raised(alert_record(row, "raised")), clf.action_units)
    observer = FanOut(view.observer, board.add(name, source, clf.action_units) if server else None)
    started = time.monotonic()
    try:
        with Live(view.render(), console=out, refresh_per_second=4, transient=False) as live:
            view.live = live
            result = watch_source(source, out_dir, det, clf, run_settings, overwrite, observer, resume)
            view.live = None
            live.update(view.render())  # its last lines say when most faces were refused
    finally:
        _close_server(server, time.monotonic() - started)
    out.line()
    t = result.totals
    stopped = "stopped (Ctrl-C or SIGTERM); " if t.interrupted else ""
    out.print(f"{stopped}{t.frames} frames, {t.minutes} minute(s), {t.scored_frames} scored, {t.dropped_frames} "
              f"dropped → {out_dir}/timeline.csv", highlight=False)
    print_camera(result.camera)
    if source.given_up_at_s is not None:
        raise SourceError(f"the source was {_given_up(result, source, give_up)} ({out_dir}/timeline.csv)")


def _given_up(result: RunResult, source, give_up: float) -> str:
    """What a given-up source left in its timeline, as it is: source_lost rows only where whole minutes had no
    frame (a loss inside a minute that has frames leaves none; run.json's outages_s has every loss)."""
    lost = sum(r.status == "source_lost" for r in result.rows)
    rows = (f"{lost} minute(s) without frames are source_lost rows" if lost else
            "no minute went without frames, so no source_lost row; the outage is in run.json (outages_s)")
    return (f"lost and given up after {give_up:g} s of retrying; the timeline ends at {source.given_up_at_s:.0f} s; "
            f"{rows}")


def _watch_many(sources, out_dir, det, clf, run_settings, overwrite, resume, alerts, give_up, address) -> None:
    """Several sources: a row each in the terminal (and a card each on the live page, with --serve)."""
    from ..live.board import LiveBoard
    from ..pipeline import FanOut
    from ..runs import watch_sources

    class Alerts(Observer):
        def __init__(self, where: str):
            self.where = where

        def minute(self, row):
            if row.alert_event == "raised":
                alerts.raised(alert_record(row, "raised"), where=f"{self.where} ")

    board = LiveBoard(caveat(det, clf).splitlines())
    runs = {n: (src, out_dir / n, FanOut(board.add(n, src, clf.action_units), Alerts(n))) for n, src in sources.items()}
    server = _serve_board(board, address)
    note = caveat(det, clf)
    started = time.monotonic()
    try:
        with Live(sources_table(board, note), console=out, refresh_per_second=2, transient=False,
                  get_renderable=lambda: sources_table(board, note)):
            results = watch_sources(runs, det, clf, run_settings, overwrite, resume)
    finally:
        out.line()
        _close_server(server, time.monotonic() - started)
    problems = []
    for n in sources:
        result = results.get(n)
        if not isinstance(result, RunResult):  # never silently: a source whose run did not finish is a failure
            problems.append(f"{n}: its run ended without finishing ({type(result).__name__}: {result}); the rows "
                            "written so far are kept")
            continue
        t = result.totals
        stopped = "stopped; " if t.interrupted else ""
        out.print(f"{n}: {stopped}{t.frames} frames, {t.minutes} minute(s), {t.scored_frames} scored, "
                  f"{t.dropped_frames} dropped → {out_dir / n}/timeline.csv", highlight=False)
        print_camera(result.camera)
        if sources[n].given_up_at_s is not None:
            problems.append(f"{n}: {_given_up(result, sources[n], give_up)}")
    if problems:
        raise SourceError("; ".join(problems))
