"""``udtc serve``: an HTTP server for one classifier, with cross-request dynamic batching.

FastAPI + uvicorn (the ``serve`` extra) are imported only when serving: ``import udtc`` and
``udtc.serve.ServeSettings`` load neither. Layout: :mod:`udtc.serve.settings` (the limits and the
check for the extra), :mod:`udtc.serve.batcher` (the queue and the scoring rounds; asyncio + a worker
thread, no web framework), :mod:`udtc.serve.metrics` (Prometheus text), :mod:`udtc.serve.app` (the FastAPI routes), :mod:`udtc.serve.command` (the
``udtc serve`` subcommand). Only udtc's public API is used: ``Classifier.classify`` and
``Prediction``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from udtc.serve.settings import ServeSettings, require_serve_extra

if TYPE_CHECKING:
    from udtc.classifier import Classifier


def create_app(classifier: Classifier, settings: ServeSettings | None = None, **kwargs: Any):
    """The FastAPI app serving ``classifier`` (see :func:`udtc.serve.app.create_app`)."""
    require_serve_extra()
    from udtc.serve.app import create_app as _create_app

    return _create_app(classifier, settings, **kwargs)


__all__ = ["ServeSettings", "create_app", "require_serve_extra"]
