"""Everyday CLI habits: --version, short options, one meaning per option name."""

from __future__ import annotations

from typer.testing import CliRunner

from rat_monitor import __version__
from rat_monitor.cli import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"rat-monitor {__version__}"


def test_short_options_and_one_meaning_for_model():
    for command in (["analyze"], ["watch"], ["demo"], ["report"], ["curate"], ["synth"], ["train"], ["predict"],
                    ["detector", "train"]):
        help_text = runner.invoke(app, [*command, "--help"], terminal_width=200).output
        assert "-o" in help_text and "--out" in help_text, command
    for command in (["analyze"], ["watch"], ["predict"]):  # --model / -m: a model name or folder
        assert "-m" in runner.invoke(app, [*command, "--help"], terminal_width=200).output
    for command in (["train"], ["evaluate"]):  # what to train is a kind, not a model
        help_text = runner.invoke(app, [*command, "--help"], terminal_width=200).output
        assert "--kind" in help_text and "--model" not in help_text
    assert "-q" in runner.invoke(app, ["analyze", "--help"], terminal_width=200).output
