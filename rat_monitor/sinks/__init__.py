"""Where results go: the run folder files (CSV, JSON); the terminal views live in the CLI."""

from .files import FRAME_COLUMNS, TIMELINE_COLUMNS, RunWriter, prepare_run_dir

__all__ = ["FRAME_COLUMNS", "TIMELINE_COLUMNS", "RunWriter", "prepare_run_dir"]
