"""python -m rat_monitor.cli"""

from . import app

app()
