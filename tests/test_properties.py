"""Property-based tests (hypothesis): whatever frame times, settings, spreadsheets or model cards come in, the
timeline stays sane and bad input is a one-line error of the project's own kinds, never a traceback."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from rat_monitor.classify import load_classifier
from rat_monitor.errors import ConfigError, RatMonitorError
from rat_monitor.pipeline import Settings
from rat_monitor.select import SelectionSettings
from rat_monitor.tables import read_rows
from rat_monitor.timeline import Timeline

finite_times = st.floats(min_value=0, max_value=900, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(times=st.lists(finite_times, min_size=1, max_size=300), live=st.booleans(),
       extra=st.floats(min_value=0, max_value=300))
def test_every_timeline_row_is_sane(times, live, extra):
    """Frame times in order with gaps, repeats and jumps (a live source given up `extra` s after the last
    frame): minutes consecutive from the first, start < end, every frame counted exactly once."""
    times = sorted(times)
    tl = Timeline(live=live)
    rows = []
    for t in times:
        rows += tl.add_frame(t, True)
    rows += tl.finish(end_s=times[-1] + 0.1 + extra)
    assert [r.minute for r in rows] == list(range(rows[0].minute, rows[0].minute + len(rows)))
    assert all(r.start_s < r.end_s for r in rows)
    assert sum(r.frames for r in rows) == len(times)
    assert all(r.status in ("ok", "source_lost", "no_frames") for r in rows)


@settings(max_examples=200, deadline=None)
@given(window=st.floats(allow_nan=True, allow_infinity=True), per_window=st.integers(-5, 50),
       duration=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)))
def test_settings_are_valid_or_a_config_error(window, per_window, duration):
    s = Settings(selection=SelectionSettings(window_s=window, per_window=per_window), duration_s=duration)
    try:
        s.check()
    except ConfigError:
        return
    assert 60.0 / window == round(60.0 / window) and per_window >= 1
    assert duration is None or (np.isfinite(duration) and duration > 0)


cell = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=12).filter(
    lambda s: s == s.strip() and not any(c in s for c in ';,"\t'))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(cell, cell), min_size=1, max_size=8), bom=st.booleans(), crlf=st.booleans(),
       sep=st.sampled_from([",", ";", "\t"]))
def test_spreadsheet_variants_read_as_the_same_table(tmp_path, rows, bom, crlf, sep):
    """What Excel and LibreOffice save (BOM, CRLF, ';' or tab separators) reads back as what was written."""
    end = "\r\n" if crlf else "\n"
    text = ("\ufeff" if bom else "") + end.join([sep.join(["path", "subject"])] + [sep.join(r) for r in rows]) + end
    path = tmp_path / "sheet.csv"
    path.write_text(text, encoding="utf-8", newline="")
    got = read_rows(path)
    assert [(r["path"], r["subject"]) for r in got] == rows


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                        max_size=3), max_leaves=6)


@pytest.fixture(scope="module")
def model_copy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "m"
    shutil.copytree(ROOT / "models" / "lbp-svm-synthetic", folder)
    return folder


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["task", "model", "classes", "features", "familiarity", "action_units", "files",
                              "hyperparameters", "kind"]), value=json_values)
def test_any_card_field_value_loads_or_is_a_model_error(model_copy, field, value):
    card_path = model_copy / "card.json"
    original = card_path.read_text()
    card = json.loads(original)
    card[field] = value
    card_path.write_text(json.dumps(card))
    try:
        load_classifier(model_copy)
    except RatMonitorError:
        pass
    finally:
        card_path.write_text(original)


@settings(max_examples=300, deadline=None)
@given(name=st.text(alphabet=st.sampled_from("ab1._-/\\ <>\x00"), max_size=8) | st.sampled_from([".", "..", ".x"]))
def test_a_name_that_names_a_folder_stays_inside_it(name, tmp_path_factory):
    """A rater name or a live source's --name becomes a folder: whatever is accepted resolves to a folder directly
    inside its parent, and '.', '..' and hidden names are refused (they wrote scores at the project root, or
    scores that were never counted)."""
    from rat_monitor.cli.watch import source_specs
    from rat_monitor.label.project import LabelError, Project

    root = tmp_path_factory.mktemp("names")
    project = Project.open(root / "p", create=True)
    try:
        project.blind_queue(name)
        accepted = True
    except LabelError:
        accepted = False
    try:
        source_specs([0], [], [], [name])
        accepted_source = True
    except ConfigError:
        accepted_source = False
    assert accepted == accepted_source
    if accepted:
        assert (root / "p" / "scores" / name).resolve().parent == (root / "p" / "scores").resolve()
        assert not name.startswith(".")
    assert name not in (".", "..") or not accepted
