"""Benchmarks: run with `make bench` (pytest -m slow). Each prints its figures and writes them to
bench/results/<name>.json with the machine's core count."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import pytest

RESULTS = Path(__file__).parent / "results"


@pytest.fixture
def record():
    def _record(name: str, figures: dict) -> dict:
        RESULTS.mkdir(exist_ok=True)
        data = {"benchmark": name, "cores": os.cpu_count(), "machine": platform.machine(),
                "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M"), **figures}
        (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2))
        print(f"\n{name}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
        return data

    return _record
