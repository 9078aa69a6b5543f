"""One log format for every lab process: a line per event, `key=value` fields after the logger name."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str | int = logging.INFO) -> None:
    """Log to stderr at `level` (a logging constant or its name, e.g. "info"; unknown names mean INFO)."""
    if isinstance(level, str):
        level = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )
