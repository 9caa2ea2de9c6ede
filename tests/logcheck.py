"""``with expect_log("pattern"):`` -- the block logs a matching message on the ``udtc`` logger."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

from udtc.logs import get_logger


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def expect_log(match: str = "") -> Iterator[list[str]]:
    logger = get_logger("udtc")
    handler = _Records()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert any(re.search(match, m) for m in handler.messages), f"no udtc log message matches {match!r}: {handler.messages}"
