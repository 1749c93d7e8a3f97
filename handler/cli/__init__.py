"""``python -m handler`` and ``tmpwarden``: package, inspect, sample, invoke.

Off-Lambda tools (the progress bar, sample artifacts, the local sandbox); nothing here is
imported by the Lambda path (:mod:`handler.app` and what it imports).
"""

from handler.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
