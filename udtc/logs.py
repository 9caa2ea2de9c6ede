"""udtc's messages: one ``udtc`` logger, one line each on stderr, ``UDTC_VERBOSITY`` to choose how many.

``UDTC_VERBOSITY`` is ``debug``, ``info``, ``warning`` (the default) or ``error``; the CLI's
``--quiet`` / ``--verbose`` set the same level. Applications that configure ``logging`` themselves
can attach their own handlers to ``logging.getLogger("udtc")`` (udtc's own handler is the only one
it adds, and it does not propagate to the root logger, so nothing prints twice).
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["LEVELS", "get_logger", "progress_bar", "set_verbosity"]

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_ROOT = "udtc"


class _StderrHandler(logging.StreamHandler):
    """Writes to the *current* ``sys.stderr`` (which tests and notebooks replace)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


def _configure() -> logging.Logger:
    logger = logging.getLogger(_ROOT)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("udtc: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
        try:
            set_verbosity(os.environ.get("UDTC_VERBOSITY", "warning"))
        except ValueError as err:
            set_verbosity("warning")
            logger.warning("%s; using warning", err)
    return logger


def set_verbosity(level: str | int) -> None:
    """Show udtc's messages at ``level`` and above: ``"debug"``, ``"info"``, ``"warning"`` or ``"error"``."""
    if isinstance(level, str):
        if level.strip().lower() not in LEVELS:
            raise ValueError(f"UDTC_VERBOSITY / verbosity must be one of {', '.join(LEVELS)}, got {level!r}")
        level = LEVELS[level.strip().lower()]
    logging.getLogger(_ROOT).setLevel(level)


def get_logger(name: str) -> logging.Logger:
    """The logger of a udtc module (a child of the ``udtc`` logger)."""
    _configure()
    return logging.getLogger(name if name.startswith(_ROOT) else f"{_ROOT}.{name}")


def progress_bar(total: int, progress: bool | None, batch_size: int):
    """A tqdm bar over ``total`` texts, or None: hidden when ``progress`` is False, and by default when one batch
    holds everything."""
    if progress is False or (progress is None and total <= batch_size):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="classify", unit="text")
