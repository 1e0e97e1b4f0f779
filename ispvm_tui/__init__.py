"""ispvm: a terminal-first NOC console for small ISPs."""

__version__ = "0.1.0"
