"""The rat-monitor command line, the only layer that prints, draws progress, and maps errors to exit codes:
app.py (the app, consoles, errors), views.py (tables and the live view) and one module per group of commands."""

from . import run, watch, learn, detector, data, label  # noqa: F401 - importing them registers their commands on the app
from .app import app

__all__ = ["app"]
