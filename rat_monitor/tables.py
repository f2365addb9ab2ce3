"""Reading the CSV files people open in spreadsheets (manifests, timelines, label sheets): a UTF-8 byte-order mark,
Windows line ends, and ';' or tab separators with decimal commas (as Excel saves them in many locales) all read
as the same table."""

from __future__ import annotations

import csv
import io
from pathlib import Path

SEPARATORS = (",", ";", "\t")


def read_rows(path: Path, error: type[Exception] | None = None) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts keyed by the stripped header names (see read_table)."""
    return read_table(path, error)[1]


def read_table(path: Path, error: type[Exception] | None = None,
               whole_rows: bool = False) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows of a CSV file. The separator is the one the header line uses most; with ';' or
    tab, a decimal comma in a number becomes a point. whole_rows: a row with fewer cells than the header (a file
    cut short) is an error too. A file that cannot be read raises ERROR (one of the project's errors, worded here
    once) or, without one, the OSError, UnicodeDecodeError or csv.Error itself."""
    try:
        return _read_table(path, whole_rows)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        if error is None:
            raise
        raise error(f"cannot read {path} as a CSV table: {exc}") from None


def _read_table(path: Path, whole_rows: bool) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        text = f.read()
    first = text.split("\n", 1)[0]
    sep = max(SEPARATORS, key=first.count) if any(s in first for s in SEPARATORS) else ","
    header = [h.strip() for h in next(csv.reader(io.StringIO(first), delimiter=sep), [])]
    rows = []
    reader = csv.DictReader(io.StringIO(text), delimiter=sep)
    for row in reader:
        extra = row.pop(None, None)  # cells beyond the header's: a spreadsheet's empty trailing ones are harmless
        if extra and any(cell.strip() for cell in extra):
            raise csv.Error(f"line {reader.line_num} has more cells than the header")
        if whole_rows and None in row.values():
            raise csv.Error(f"line {reader.line_num} has fewer cells than the header (cut short)")
        clean = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        if sep != ",":
            clean = {k: _decimal_point(v) for k, v in clean.items()}
        rows.append(clean)
    return header, rows


def _decimal_point(value: str) -> str:
    """'0,25' -> '0.25' (a number written with a decimal comma); anything else as it is."""
    candidate = value.replace(",", ".", 1)
    try:
        float(candidate)
    except ValueError:
        return value
    return candidate if value.count(",") == 1 else value
