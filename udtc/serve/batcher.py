"""Cross-request dynamic batching for one shared :class:`~udtc.classifier.Classifier`.

Requests are queued on the event loop. A single worker task takes the oldest request, waits up
to ``max_wait_ms`` (from that request's arrival) for others until ``max_batch`` texts are queued,
and scores the round in one worker thread, so the event loop never runs the model and the model
is never called from two threads at once. Within a round, requests with the same options
(``multi_label``, ``threshold``, ``top_k``, ``template``) become one ``classify`` call with one
label set per text. For a backend whose text side does not depend on the labels (cosine, SCE:
``Backend.mixed_label_sets``) that call reads all the round's texts in one forward pass per
``max_batch`` texts whatever their label sets; other backends get one pass per label set. Results
equal calling ``classify`` on each request alone (within the contract's ``BATCH_TOLERANCE``: a
different batch composition rounds floats differently).

A request whose inputs are not plainly well-formed runs alone, and when a merged call raises
``ValueError``/``TypeError`` every request of it is rerun alone: each request gets exactly the
result or the one-line error ``classify`` gives it in-process, never another request's error.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

from udtc.classifier import Classifier
from udtc.prediction import Prediction


class QueueFull(Exception):
    """The queue holds ``max_queue`` requests already."""


class ShuttingDown(Exception):
    """The batcher is draining and takes no new requests."""


@dataclass(eq=False)
class Job:
    texts: Any
    labels: Any
    options: dict[str, Any]
    future: asyncio.Future
    arrived: float
    n_texts: int = field(init=False)

    def __post_init__(self) -> None:
        self.n_texts = 1 if isinstance(self.texts, str) else len(self.texts) if isinstance(self.texts, list) else 1


@dataclass
class BatcherStats:
    """Counters read by ``/metrics`` (written on the event loop only)."""

    rounds: int = 0
    calls: int = 0
    texts: int = 0
    requests: int = 0
    round_seconds: float = 0.0
    rejected_full: int = 0
    timed_out: int = 0


class Batcher:
    """Queue + one worker task; ``submit`` returns a future of ``Prediction | list[Prediction]``."""

    def __init__(self, classifier: Classifier, *, max_batch: int = 32, max_wait_ms: float = 5.0, max_queue: int = 256):
        self.classifier = classifier
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.stats = BatcherStats()
        self._pending: deque[Job] = deque()
        self._wakeup = asyncio.Event()  # bound to a loop only when first awaited; start() makes a new one
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self.scoring = 0  # requests in the round being scored
        self.last_round_seconds = 0.0

    @property
    def queued(self) -> int:
        return len(self._pending)

    @property
    def ready(self) -> bool:
        return self._task is not None and not self._task.done() and not self._closing

    async def start(self) -> None:
        self._closing = False
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="udtc-serve")
        self._task = asyncio.create_task(self._run(), name="udtc-batcher")

    def submit(self, texts: Any, labels: Any, **options: Any) -> asyncio.Future:
        """Queue one request (on the event loop). Raises QueueFull or ShuttingDown."""
        if self._closing or self._task is None:
            raise ShuttingDown("the server is shutting down")
        if len(self._pending) >= self.max_queue:
            self.stats.rejected_full += 1
            raise QueueFull(f"the server is busy ({len(self._pending)} requests queued); retry later")
        loop = asyncio.get_running_loop()
        job = Job(texts, labels, options, loop.create_future(), loop.time())
        self._pending.append(job)
        self._wakeup.set()
        return job.future

    def discard(self, future: asyncio.Future) -> None:
        """Forget a queued request whose caller gave up (timed out), so it no longer takes a queue slot."""
        for job in self._pending:
            if job.future is future:
                self._pending.remove(job)
                break

    async def close(self) -> None:
        """Stop taking requests, score every queued one, then stop the worker thread."""
        self._closing = True
        if self._task is not None:
            self._wakeup.set()
            await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    # ------------------------------------------------------------------ worker
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            # wait for more requests: until max_batch texts or max_wait after the oldest arrived
            while sum(job.n_texts for job in self._pending) < self.max_batch and not self._closing:
                remaining = self._pending[0].arrived + self.max_wait - loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            jobs: list[Job] = []
            n = 0
            while self._pending and (not jobs or n + self._pending[0].n_texts <= self.max_batch):
                job = self._pending.popleft()
                if not job.future.done():  # timed out (cancelled) while queued: skip
                    jobs.append(job)
                    n += job.n_texts
            if not jobs:
                continue
            self.scoring = len(jobs)
            start = time.perf_counter()
            try:
                results, calls = await loop.run_in_executor(self._executor, score_round, self.classifier, jobs,
                                                            self.max_batch)
            except Exception as err:  # noqa: BLE001 - the worker must survive anything a round raises
                results, calls = {job: err for job in jobs}, 0
            self.last_round_seconds = time.perf_counter() - start
            self.stats.round_seconds += self.last_round_seconds
            self.scoring = 0
            self.stats.rounds += 1
            self.stats.calls += calls
            self.stats.requests += len(jobs)
            self.stats.texts += n
            for job in jobs:
                if job.future.done():  # timed out while scoring
                    continue
                result = results[job]
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)


# ---------------------------------------------------------------------- scoring (worker thread)
def score_round(classifier: Classifier, jobs: list[Job], batch_size: int,
                classify: Callable[..., Any] | None = None) -> tuple[dict[Job, Any], int]:
    """Score one round: -> ({job: Prediction | list[Prediction] | exception}, classify calls made)."""
    classify = classify or classifier.classify
    results: dict[Job, Any] = {}
    calls = 0
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        sets = _label_sets_or_none(job)
        if sets is None or isinstance(job.options.get("threshold"), dict):
            key = f"alone:{id(job)}"  # not plainly well-formed (or per-label thresholds): classify it alone
        else:
            key = json.dumps([job.labels is None, sorted(job.options.items())], default=repr)
        groups.setdefault(key, []).append(job)

    def alone(job: Job) -> None:
        nonlocal calls
        calls += 1
        try:
            results[job] = classify(job.texts, job.labels, batch_size=batch_size, progress=False, **job.options)
        except (ValueError, TypeError) as err:
            results[job] = err

    for key, members in groups.items():
        if len(members) == 1:
            alone(members[0])
            continue
        texts = [t for job in members for t in ([job.texts] if isinstance(job.texts, str) else job.texts)]
        no_labels = members[0].labels is None
        labels = None if no_labels else [s for job in members for s in cast(list, _label_sets_or_none(job))]
        calls += 1
        try:
            merged = classify(texts, labels, batch_size=batch_size, progress=False, **members[0].options)
        except (ValueError, TypeError):  # someone's request is bad: rerun each alone for its own error
            for job in members:
                alone(job)
            continue
        start = 0
        for job in members:
            part = cast(list, merged)[start : start + job.n_texts]
            start += job.n_texts
            results[job] = part[0] if isinstance(job.texts, str) else part
    return results, calls


def _is_label_set(spec: Any) -> bool:
    return (isinstance(spec, list) and all(isinstance(x, str) for x in spec)) or isinstance(spec, dict)


def _label_sets_or_none(job: Job) -> list[Any] | None:
    """One label set per text when the request is plainly well-formed (JSON lists/dicts), else None."""
    texts = job.texts
    if not (isinstance(texts, str) or (isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts))):
        return None
    if job.labels is None:
        return [None] * job.n_texts
    if _is_label_set(job.labels):
        return [job.labels] * job.n_texts
    if isinstance(job.labels, list) and len(job.labels) == job.n_texts and all(map(_is_label_set, job.labels)):
        return list(job.labels)
    return None


def as_list(result: Prediction | list[Prediction]) -> list[Prediction]:
    return [result] if isinstance(result, Prediction) else list(result)
