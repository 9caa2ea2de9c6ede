"""The FastAPI app of ``udtc serve`` (imported only when serving; needs the ``serve`` extra).

Routes: ``POST /classify`` (udtc's own request/response), ``POST /pipeline/zero-shot-classification``
(the Hugging Face Inference API's zero-shot task, so its clients work unchanged), ``GET /health``
(the process is up), ``GET /ready`` (taking requests), ``GET /metrics`` (Prometheus text),
``/docs`` and ``/openapi.json`` (FastAPI's). Status codes: 401 missing/wrong API key, 413 body, text
or (text, label) pair count over the limit, 422 invalid request (the one-line message the Python API raises),
503 queue full or shutting down (with ``Retry-After``), 504 request timeout.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from udtc._version import __version__
from udtc.classifier import Classifier
from udtc.serve.settings import ServeSettings
from udtc.serve.batcher import Batcher, QueueFull, ShuttingDown, as_list
from udtc.serve.metrics import CONTENT_TYPE, Metrics

logger = logging.getLogger("udtc.serve")
RETRY_AFTER_SECONDS = "1"

# Fields typed Any are checked by Classifier.classify, so a bad value gets the Python API's message.
_TEXTS = Field(description="one text, or a list of texts", examples=["The striker scored twice in the final"])
_LABELS = Field(None, description="a list of label names; a dict {name: description} (the model reads the "
                "description); or one such set per text. Omitted: the model's own labels.",
                examples=[["sports", "politics", "cooking"]])


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: Any = _TEXTS
    labels: Any = _LABELS
    multi_label: StrictBool = Field(False, description="score each label independently (sigmoid)")
    threshold: Any = Field(None, description="in [0, 1], global or a dict per label (see Classifier.classify)")
    top_k: Any = Field(None, description="how many labels `labels` lists (positive integer)")
    template: Any = Field(None, description='how a label becomes model input, e.g. "This text is about {}."')


class PredictionOut(BaseModel):
    text: str
    label: str | None
    labels: list[str]
    scores: dict[str, float]
    multi_label: bool
    truncated: bool


class ClassifyResponse(BaseModel):
    predictions: list[PredictionOut] = Field(description="one per input text, in input order")


class PipelineParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    candidate_labels: Any = Field(description="a list of labels, or one comma-separated string",
                                  examples=[["sports", "politics", "cooking"]])
    multi_label: StrictBool = False
    hypothesis_template: Any = Field(None, description='e.g. "This example is {}."; the model\'s default when omitted')


class PipelineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: Any = Field(description="one text, or a list of texts", examples=["The striker scored twice"])
    parameters: PipelineParameters
    options: dict[str, Any] | None = Field(None, description="Inference API client options (accepted, ignored)")


class PipelineOut(BaseModel):
    sequence: str
    labels: list[str] = Field(description="best first")
    scores: list[float] = Field(description="best first")


class ErrorOut(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut, "description": text} for code, text in {
    401: "missing or wrong API key", 413: "request body, text count or (text, label) pair count over the limit",
    422: "invalid request (the Python API's one-line message)", 503: "queue full or shutting down (see Retry-After)",
    504: "request timed out"}.items()}


def create_app(classifier: Classifier, settings: ServeSettings | None = None, *, model_name: str | None = None) -> FastAPI:
    """A FastAPI app serving ``classifier`` with ``settings`` (defaults: :class:`ServeSettings`)."""
    settings = settings or ServeSettings()
    batcher = Batcher(classifier, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms,
                      max_queue=settings.max_queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        try:
            yield
        finally:  # uvicorn has stopped taking connections and answered in-flight requests; drain the rest
            await batcher.close()

    app = FastAPI(title="udtc", version=__version__, lifespan=lifespan,
                  description=f"Zero-shot text classification with udtc ({model_name or classifier.base_model}, "
                              f"{classifier.backend_name} backend): name the labels in each request.")
    app.state.batcher = batcher
    app.state.settings = settings
    metrics = Metrics(("/classify", "/pipeline/zero-shot-classification", "/health", "/ready", "/metrics"))
    app.state.metrics = metrics
    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(_Observe, metrics=metrics)  # outermost: sees every response, 413s included

    bearer = HTTPBearer(auto_error=False, description="the server's --api-key")
    header_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="the server's --api-key")

    def authorize(credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
                  key: str | None = Depends(header_key)) -> None:
        if settings.api_key is None:
            return
        given = credentials.credentials if credentials else key
        if not given or not hmac.compare_digest(given.encode(), settings.api_key.encode()):
            raise HTTPException(401, "missing or wrong API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _one_line(exc)}, status_code=422)

    async def run(texts: Any, labels: Any, fields: dict[str, str] | None = None, **options: Any) -> list:
        n_texts = len(texts) if isinstance(texts, list) else 1
        if n_texts > settings.max_texts:
            raise HTTPException(413, f"request has {n_texts} texts, over the limit of {settings.max_texts} per request "
                                     "(--max-texts); split it into several requests")
        n_pairs = _pairs(labels, n_texts)
        if n_pairs > settings.max_pairs:
            raise HTTPException(413, f"request has {n_pairs} (text, label) pairs, over the limit of {settings.max_pairs} "
                                     "per request (--max-pairs); send fewer texts or labels per request")
        try:
            future = batcher.submit(texts, labels, **options)
        except (QueueFull, ShuttingDown) as err:
            raise HTTPException(503, str(err), headers={"Retry-After": RETRY_AFTER_SECONDS}) from None
        try:
            return as_list(await asyncio.wait_for(future, settings.timeout_s))
        except TimeoutError:
            batcher.discard(future)
            batcher.stats.timed_out += 1
            raise HTTPException(504, f"request took longer than {settings.timeout_s:g} s (--timeout)") from None
        except (ValueError, TypeError) as err:
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            for name, field in (fields or {}).items():  # the request's own field names, not classify's
                if message.startswith(name):
                    message = field + message[len(name):]
            raise HTTPException(422, message) from None

    @app.post("/classify", response_model=None, responses={200: {"model": ClassifyResponse}, **ERRORS},
              dependencies=[Depends(authorize)], summary="Classify texts against the labels you name")
    async def classify(body: ClassifyRequest) -> JSONResponse:
        predictions = await run(body.texts, body.labels, multi_label=body.multi_label, threshold=body.threshold,
                                top_k=body.top_k, template=body.template)
        return JSONResponse({"predictions": [p.to_dict() for p in predictions]})

    @app.post("/pipeline/zero-shot-classification", response_model=None, dependencies=[Depends(authorize)],
              responses={200: {"model": PipelineOut | list[PipelineOut]}, **ERRORS},
              summary="Hugging Face Inference API zero-shot-classification task")
    async def pipeline(body: PipelineRequest) -> JSONResponse:
        params = body.parameters
        labels = params.candidate_labels
        if isinstance(labels, str):  # as transformers' pipeline: "a, b" -> ["a", "b"]
            labels = [name.strip() for name in labels.split(",") if name.strip()]
        multi_label = params.multi_label or (isinstance(labels, list) and len(labels) == 1)  # as transformers
        predictions = await run(body.inputs, labels, multi_label=multi_label, template=params.hypothesis_template,
                                fields={"texts": "inputs", "labels": "parameters.candidate_labels",
                                        "template": "parameters.hypothesis_template"})
        out = [{"sequence": p.text, "labels": [n for n, _ in p.ranked], "scores": [s for _, s in p.ranked]}
               for p in predictions]
        return JSONResponse(out if isinstance(body.inputs, list) else out[0])

    @app.get("/health", summary="Liveness: the process is up")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready", summary="Readiness: the model is loaded and requests are taken",
             responses={503: {"model": ErrorOut}})
    async def ready() -> JSONResponse:
        if not batcher.ready:
            return JSONResponse({"status": "not ready"}, status_code=503, headers={"Retry-After": RETRY_AFTER_SECONDS})
        return JSONResponse({"status": "ready", "backend": classifier.backend_name,
                             "model": model_name or classifier.base_model})

    @app.get("/metrics", summary="Prometheus metrics (text exposition format)", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        stats = batcher.stats
        text = metrics.render(
            gauges={"udtc_queue_requests": ("Requests waiting to be scored.", batcher.queued),
                    "udtc_scoring_requests": ("Requests in the round being scored.", batcher.scoring),
                    "udtc_ready": ("1 when taking requests.", float(batcher.ready)),
                    "udtc_last_round_seconds": ("Duration of the last scoring round.", batcher.last_round_seconds)},
            counters={"udtc_rounds_total": ("Scoring rounds (each: requests that arrived together).", stats.rounds),
                      "udtc_classify_calls_total": ("Classifier.classify calls.", stats.calls),
                      "udtc_round_seconds_total": ("Time spent scoring rounds (busy time of the model).",
                                                   stats.round_seconds),
                      "udtc_scored_requests_total": ("Requests scored.", stats.requests),
                      "udtc_scored_texts_total": ("Texts scored.", stats.texts),
                      "udtc_rejected_queue_full_total": ("Requests refused with 503: queue full.", stats.rejected_full),
                      "udtc_timeouts_total": ("Requests answered 504.", stats.timed_out)})
        return PlainTextResponse(text, media_type=CONTENT_TYPE)

    return app


def _pairs(labels: Any, n_texts: int) -> int:
    """(text, label) pairs a request asks for: each text times its labels (per-text label sets counted one by one,
    hierarchical labels by their leaves); malformed labels count as one and are refused by ``classify``."""
    def count(x: Any) -> int:
        if isinstance(x, dict):
            return sum(count(v) if isinstance(v, (dict, list)) else 1 for v in x.values())
        return sum(count(v) for v in x) if isinstance(x, list) else 1

    per_text = isinstance(labels, list) and bool(labels) and all(isinstance(x, (list, dict)) for x in labels)
    return count(labels) if per_text else count(labels) * n_texts


def _one_line(exc: RequestValidationError) -> str:
    """FastAPI's validation error list -> one line, e.g. ``texts: field required``."""
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err.get("loc", ())[1:]) or "body"
    if err.get("type") == "json_invalid":
        return f"request body is not valid JSON ({err.get('ctx', {}).get('error', 'parse error')})"
    message = err.get("msg", "invalid")
    if where == "body" and err.get("type") in ("dict_type", "model_attributes_type"):
        return "request body must be a JSON object (send Content-Type: application/json)"
    if err.get("type") == "missing":
        message = "field required"
    elif err.get("type") == "extra_forbidden":
        message = "unknown field; check its spelling in /docs"
    return f"{where}: {message}"


class _BodyLimit:
    """413 for a body over ``limit`` bytes: by Content-Length up front, else while it streams in."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            response = JSONResponse({"detail": self._message(int(length))}, status_code=413)
            return await response(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # raised inside the route, turned into a 413 by FastAPI
                raise HTTPException(413, self._message(seen))
            return message

        return await self.app(scope, limited, send)

    def _message(self, size: int) -> str:
        return f"request body of {size} bytes is over the limit of {self.limit} (--max-body-bytes)"


class _Observe:
    """Counts requests by path and status and times them, for ``/metrics``."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def observed_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight += 1
        try:
            await self.app(scope, receive, observed_send)
        finally:
            self.metrics.in_flight -= 1
            self.metrics.observe(scope["method"], scope["path"], status, time.perf_counter() - start)
