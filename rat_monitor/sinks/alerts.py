"""--on-alert: hands each raised alert, as JSON on stdin, to a command the user chose (mail, pager, LED...)."""

from __future__ import annotations

import json
import subprocess

ALERT_COMMAND_TIMEOUT_S = 30


def run_alert_command(command: str, record: dict) -> str | None:
    """Runs COMMAND through the shell with the alert on stdin; returns a problem description, or None."""
    try:
        proc = subprocess.run(command, shell=True, input=json.dumps(record), text=True, capture_output=True,
                              timeout=ALERT_COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"--on-alert command did not finish within {ALERT_COMMAND_TIMEOUT_S} s"
    if proc.returncode != 0:
        return f"--on-alert command exited with {proc.returncode}: {proc.stderr.strip()[:200]}"
    return None
