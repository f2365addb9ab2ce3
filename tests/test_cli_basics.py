"""Everyday CLI habits: --version, short options, one meaning per option name."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from rat_monitor import __version__
from rat_monitor.cli import app
from helpers import run_python

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"rat-monitor {__version__}"


def test_flags_read_as_flags_in_help():
    """A flag takes no value: --help must not show it with a type as if it did."""
    for command in ([], ["analyze"], ["watch"], ["predict"]):
        help_text = runner.invoke(app, [*command, "--help"], terminal_width=200).output
        assert "--help" in help_text and "<bool>" not in help_text, command
    assert "<path>" in runner.invoke(app, ["predict", "--help"], terminal_width=200).output  # values keep theirs


def short(letter: str, help_text: str) -> bool:
    """The short option -LETTER is listed (not merely the '-o' inside '--out')."""
    return re.search(rf"(?<![-\w])-{letter}\b", help_text) is not None


def test_short_options_and_one_meaning_for_model():
    for command in (["analyze"], ["watch"], ["demo"], ["report"], ["curate"], ["synth"], ["train"], ["predict"],
                    ["detector", "train"]):
        help_text = runner.invoke(app, [*command, "--help"], terminal_width=200).output
        assert short("o", help_text) and "--out" in help_text, command
    for command in (["analyze"], ["watch"], ["predict"]):  # --model / -m: a model name or folder
        assert short("m", runner.invoke(app, [*command, "--help"], terminal_width=200).output)
    for command in (["train"], ["evaluate"]):  # what to train is a kind, not a model
        help_text = runner.invoke(app, [*command, "--help"], terminal_width=200).output
        assert "--kind" in help_text and "--model" not in help_text
    assert short("q", runner.invoke(app, ["analyze", "--help"], terminal_width=200).output)
    assert not short("o", runner.invoke(app, ["models", "--help"], terminal_width=200).output)  # the check can fail


def test_messages_name_the_real_problem(tmp_path):
    missing = runner.invoke(app, ["detector", "evaluate", "--video", str(tmp_path / "missing.mp4")])
    assert missing.exit_code == 3 and "no such video file" in missing.output
    short = runner.invoke(app, ["synth", "--minutes", "0.05", "--size", "160x96", "--fps", "10", "--schedule", "onset",
                                "--out", str(tmp_path / "v.mp4")])
    assert short.exit_code == 0 and "will not be in it" in short.output


def test_train_prints_words_not_dicts(tmp_path):
    from rat_monitor.synth import write_dataset

    data = write_dataset(tmp_path / "ds", subjects=2, per_subject=20, seed=3)
    result = runner.invoke(app, ["train", "--data", str(data), "-o", str(tmp_path / "m")], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "{" not in result.output and "40 crops of 2 animal(s)" in result.output
    assert "warning: only 2 animal(s)" in result.output  # LOSO over 2 animals says little: said in words


def test_a_subject_column_with_one_id_per_crop_is_called_out():
    """Folds by a column of per-image ids would be folds by image: train and evaluate warn in words."""
    import numpy as np

    from rat_monitor.data.datasets import Dataset

    n = 40
    by_image = Dataset([Path(f"{i}.jpg") for i in range(n)], np.array([f"img{i}" for i in range(n)]),
                       np.arange(n) % 2, None, "m.csv")
    assert "folds are by image, not by animal" in by_image.grouping_problem()
    by_animal = Dataset(by_image.paths, np.array([f"rat{i % 5}" for i in range(n)]), by_image.labels, None, "m.csv")
    assert by_animal.grouping_problem() is None


def test_live_view_fits_80_columns_and_says_when_the_first_row_comes():
    from rich.console import Console

    from rat_monitor.cli.views import LiveView
    from rat_monitor.types import AU_FIELDS, MinuteSummary

    view = LiveView("Model 'x': trained on synthetic rat faces only", lambda row: None, action_units=True)
    view.t_s = 18.0
    console = Console(width=80, record=True, color_system=None)
    console.print(view.render(80))
    first = console.export_text()
    assert "first row appears when minute 0 closes, in 42 s" in first
    row = MinuteSummary(minute=0, start_s=0.0, end_s=60.0, frames=1800, face_frames=1700, scored_frames=18,
                        pain_prob=0.82, pain_prob_smoothed=0.8, pain_level="pain", alert=1,
                        action_units=dict(zip(AU_FIELDS, (1.2, 1.0, 1.4, 0.9, 1.12))))
    view.rows.append(row)
    console = Console(width=80, record=True, color_system=None)
    console.print(view.render(80))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "P(pain)" in text and "0.82" in text and "ALERT" in text and "RGS" in text


def test_a_library_warning_is_one_line_never_its_source():
    """A warning raised inside a command (scikit-learn's, PyTorch's) reaches the terminal as one 'warning:' line
    with its message, not the library's file path, line number and source line."""
    code = ("import warnings, typer\n"
            "from rat_monitor.cli.app import friendly_errors\n"
            "@friendly_errors\n"
            "def command():\n"
            "    from sklearn.exceptions import ConvergenceWarning\n"
            "    warnings.warn('Liblinear failed to converge, increase the number of iterations.', ConvergenceWarning)\n"
            "typer.run(command)\n")
    result = run_python(code, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["warning: Liblinear failed to converge, increase the number of iterations."], result.stderr
