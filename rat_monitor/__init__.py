"""rat-monitor: pain from rat facial expressions (Rat Grimace Scale), minute by minute."""

__version__ = "0.1.0"
