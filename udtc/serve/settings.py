"""Settings of ``udtc serve`` and the check for its extra (no FastAPI import here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeSettings:
    """Limits and batching of one server (every field is a ``udtc serve`` flag).

    Attributes:
        max_batch: texts scored together in one round (requests are never split across rounds).
        max_wait_ms: how long the oldest queued request may wait for others to join its round.
        max_queue: requests waiting to be scored; one more gets 503 with ``Retry-After``.
        timeout_s: a request not answered within this many seconds gets 504.
        max_texts: texts in one request; more gets 413.
        max_pairs: (text, label) pairs in one request, each text times its labels; more gets 413 (the work of
            a request grows with them, and a round being scored is not stopped by a 504).
        max_body_bytes: bytes of one request body; more gets 413.
        api_key: when set, ``/classify`` and ``/pipeline/*`` need ``Authorization: Bearer KEY``
            or ``X-API-Key: KEY`` (else 401); ``/health``, ``/ready``, ``/metrics``, docs stay open.
    """

    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 256
    timeout_s: float = 30.0
    max_texts: int = 256
    max_pairs: int = 100_000
    max_body_bytes: int = 1_000_000
    api_key: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_queue", "max_texts", "max_pairs", "max_body_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key is empty; pass a non-empty key or none")


def require_serve_extra() -> None:
    """Raise a one-line ImportError naming the extra when FastAPI or uvicorn is missing."""
    import importlib.util

    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"udtc serve needs the 'serve' extra (missing {', '.join(missing)}): "
                          "pip install 'udtc[serve]'")
