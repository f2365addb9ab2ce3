"""The typer app, the two consoles (results on stdout, progress and problems on stderr), the mapping of errors to
one line and an exit code, and the small pieces every command shares."""

from __future__ import annotations

import functools
import math
import signal
import sys
import threading
import warnings
from pathlib import Path

import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .. import __version__
from ..classify import KINDS
from ..classify.familiarity import unfamiliar_advice
from ..errors import ConfigError, RatMonitorError

def _no_type_for_flags(display_type_rich):
    """typer 0.29 labels every flag '<bool>' in --help (--help and --version too), as if it took a value; a flag
    takes none, so it gets no type label."""
    def display(self, ctx):
        return None if getattr(self, "is_flag", False) else display_type_rich(self, ctx)
    return display


typer.core.TyperOption.display_type_rich = _no_type_for_flags(typer.core.TyperOption.display_type_rich)

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Watch laboratory rats on video and report pain from facial expressions (Rat Grimace "
                       "Scale), minute by minute. Bundled models are trained on synthetic faces only.")


def _terminated(signum, frame):
    """SIGTERM (a service stop, `kill`, a scheduler's time limit) ends a run as Ctrl-C does: the partial minute
    is flushed, the run marked interrupted, the command exits 130."""
    raise KeyboardInterrupt


def _print_version(value: bool) -> None:
    if value:
        print(f"rat-monitor {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)


detector_app = typer.Typer(no_args_is_help=True, help="Train and evaluate the rat face detector.")
app.add_typer(detector_app, name="detector")

# Piped output (files, CI logs) gets a fixed width so tables are not cut to 80 columns.
out = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 120)
SAMPLES = Path(__file__).resolve().parents[2] / "sample_videos"

MODEL_HELP = "Pain classifier: a bundled model name (see `rat-monitor models`) or a model folder."
DETECTOR_HELP = "Face detector: a bundled model name or a model folder."
DEFAULT_KIND = next(iter(KINDS))
KIND_HELP = "Model kind to train: " + " | ".join(KINDS) + "."


# Every numeric option's sane range, by option name (one name has one meaning in every command): (lowest,
# highest, whether the lowest itself is allowed). Checked before a command does anything, so that nan, inf, 1e308,
# zero or a negative gets exit 2 and one line, never a silent "unlimited" or a crash later.
NUMBER_RULES: dict[str, tuple[float, float, bool]] = {
    "minutes": (0, 7 * 24 * 60, False), "fps": (0, 1000, False), "seed": (0, 2 ** 32 - 1, True),
    "subject": (1, 10_000, True), "crf": (0, 51, True), "subjects": (1, 10_000, True),
    "per_subject": (1, 1_000_000, True), "per_window": (1, 100, True), "frames": (1, 100_000, True),
    "port": (0, 65_535, True), "epochs": (1, 10_000, True), "synthetic": (0, 10_000_000, True),
    "repeat_yolo": (1, 1_000, True), "workers": (1, 256, True), "every": (1, 1_000_000, True),
    "window": (0, 60, False), "duration": (0, 1e8, False), "speed": (0, 1_000, False), "give_up": (0, 1e8, True),
    "camera": (0, 1_000, True), "train_every": (0, 100_000, True), "animals": (1, 6, True), "rats": (1, 3, True),
    "rounds": (1, 5, True),
}
# Options that contradict each other: (first, second, why), each counted as given when set away from its default.
CONFLICTS = (("overwrite", "resume", "--overwrite starts the run again, --resume continues it: give one"),
             ("subject", "subject_from", "--subject names one animal for every video, --subject-from reads it "
                                         "from each file name: give one"),
             ("workers", "scheduler", "--workers runs videos in processes here, --scheduler sends them to a Dask "
                                      "cluster: give one"),
             ("yolo", "paths", "--yolo DIR scores the faces labelled there: give no image paths with it"),
             ("yolo", "detect", "--yolo DIR cuts the labelled faces: --detect would find them again; give one"))


def _given(name: str, value) -> bool:
    return value > 1 if name == "workers" else bool(value)


def check_options(options: dict) -> None:
    """Numbers in range and no contradictory pair, before anything runs (ConfigError, exit 2)."""
    numbers = [(name, v) for name, value in options.items() if name in NUMBER_RULES
               for v in (value if isinstance(value, (list, tuple)) else [value])]
    for name, value in numbers:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high, low_ok = NUMBER_RULES[name]
            if not (math.isfinite(value) and (low <= value if low_ok else low < value) and value <= high):
                flag = "--" + name.replace("_", "-")
                lowest = f"{low:g} or more" if low_ok else f"more than {low:g}"
                raise ConfigError(f"{flag} must be a number {lowest} and at most {high:g}, not {value!r}")
    for first, second, why in CONFLICTS:
        if first in options and second in options and _given(first, options[first]) \
                and _given(second, options[second]):
            raise ConfigError(why)


def warn(text: str, label: str = "warning") -> None:
    """One warning line on stderr (the text is text, never markup)."""
    err.print(f"[yellow]{label}:[/] {escape(text)}", highlight=False, soft_wrap=True)


def _say_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A library's warning (scikit-learn's, PyTorch's) as one line on stderr: its message, never the library's
    file, line number and source line."""
    warn((str(message).strip().splitlines() or [category.__name__])[0])


def friendly_errors(fn):
    """One clear line and a non-zero exit for anything the user can fix; never a traceback. The command's
    options are checked first (check_options)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with warnings.catch_warnings():  # restores the default way of showing them when the command ends
                warnings.showwarning = _say_warning
                check_options(kwargs)
                return fn(*args, **kwargs)
        except RatMonitorError as exc:
            # the message is text, never markup: "rat-monitor[train]" must print as written
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except PermissionError as exc:
            err.print(f"[bold red]error:[/] permission denied: {escape(str(exc.filename))}", highlight=False,
                      soft_wrap=True)
            raise typer.Exit(ConfigError.exit_code) from None
        except OSError as exc:
            if exc.errno == 28:  # ENOSPC
                err.print("[bold red]error:[/] the disk is full; rows written so far are kept", highlight=False)
            else:
                where = f": {exc.filename}" if exc.filename else ""
                err.print(f"[bold red]error:[/] {escape(str(exc.strerror or exc))}{escape(where)}", highlight=False,
                          soft_wrap=True)
            raise typer.Exit(ConfigError.exit_code) from None

    return wrapper


def refuse_to_replace_model(out_dir: Path, overwrite: bool) -> None:
    """Training never replaces a model folder silently (checked before any data is read)."""
    if not overwrite and out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"{out_dir} already holds files (a model?); give --overwrite to replace it or another --out")


def progress_bars() -> Progress:
    """Progress on stderr, so stdout carries only results."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}", style="cyan"), TimeRemainingColumn(), console=err)


def caveat(*models) -> str:
    """How far each model of a run was checked, one plain line per model (models.validation_status)."""
    from ..models import validation_status

    return "\n".join(f"Model '{m.name}': {validation_status(m.card)['line']}" for m in models)


def print_refusal(refused: int, accepted: int, console: Console = out) -> None:
    """Says once, plainly, when most selected faces were refused as unfamiliar, and what to do."""
    advice = unfamiliar_advice(refused, accepted)
    if advice:
        console.print(f"[yellow]note:[/] {advice}", highlight=False, soft_wrap=True)


def print_camera(check: dict | None, console: Console = out) -> None:
    """Says when the detector does not know the camera (and how to calibrate it), or which calibrated detector
    a run used."""
    if not check:
        return
    if check.get("line"):
        console.print(f"[yellow]note:[/] {check['line']}", highlight=False, soft_wrap=True)
    elif check.get("calibrated"):
        console.print(f"camera: calibrated detector '{check['detector']}' (sure of a face on "
                      f"{100 * check['confident_share']:.0f}% of its checks)", highlight=False)


class Alerts:
    """Each alert raised: said on stderr (naming the video or source) and, with --on-alert, handed to the command,
    which runs beside the analysis (a slow command never holds its frames); its problems are said as warnings."""

    def __init__(self, command: str | None):
        from ..sinks.alerts import AlertCommand

        self.command = AlertCommand(command, warn) if command else None

    def raised(self, record: dict, where: str = "") -> None:
        from ..timeline import RULE_NAMES

        rgs = f", RGS {record['rgs']:.2f}" if record.get("rgs") is not None else ""
        rule = f" ({' and '.join(RULE_NAMES.get(k, k) for k in record['rule'].split('+'))} rule)" \
            if record.get("rule") else ""
        where += f"{record['animal']}, " if record.get("animal") else ""
        err.print(f"[bold red]ALERT[/]{rule} {escape(where)}minute {record['minute']}: smoothed P(pain) "
                  f"{record['pain_prob_smoothed']:.2f}{rgs}", highlight=False)
        if self.command:
            self.command.submit(record)

    def __enter__(self) -> Alerts:
        return self

    def __exit__(self, *exc) -> None:
        if self.command:
            self.command.close()


ANIMALS_HELP = ("Rats in view (1-6). From 2 on, each face is told to its animal (by how it looks and where it "
                "was), a face whose animal is not sure counts for none, and timeline.csv has a row per minute per "
                "animal.")
ANIMAL_NAMES_HELP = ("With --animals: the animals' names, comma-separated, from left to right as first seen "
                     "(e.g. 'rat 7,rat 9'); default 'animal 1', 'animal 2', ...")


def settings(window: float, per_window: int, duration: float | None, animals: int = 1, animal_names: str = ""):
    from ..pipeline import Settings
    from ..select import SelectionSettings

    names = [n.strip() for n in animal_names.split(",")] if animal_names.strip() else []
    return Settings(selection=SelectionSettings(window_s=window, per_window=per_window), duration_s=duration,
                    animals=animals, animal_names=names)


def clock_time(text: str, option: str) -> float:
    """An ISO 8601 date and time ('2026-11-29T14:05', local time unless it names a zone) as epoch seconds."""
    import datetime as dt

    try:
        written = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not a date and time like 2026-11-29T14:05 (ISO 8601, local time "
                          "unless a zone is given)") from None
    # Recordings lie between the first video cameras and the far future; a run's minutes must stay in the calendar.
    # The year is checked as written, before the time zone is applied (year 1 in a zone east of UTC overflowed
    # and was called "not a date").
    if not 1900 <= written.year <= 2999:
        raise ConfigError(f"{option} {text!r}: the year must be between 1900 and 2999")
    return written.astimezone().timestamp()
