"""``udtc serve``: routes, status codes, batching equal to ``classify``, concurrency, a real uvicorn server
with graceful shutdown. Tiny random models (tests/factories.py); loopback only."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="udtc serve needs the 'serve' extra: pip install 'udtc[serve]'")
pytest.importorskip("uvicorn", reason="udtc serve needs the 'serve' extra: pip install 'udtc[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from udtc import Classifier  # noqa: E402
from udtc.serve import ServeSettings, create_app, require_serve_extra  # noqa: E402
from udtc.serve.batcher import Job, score_round  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TEXTS = ["the team won the match", "rain in the city", "a recipe for the oven", "the election and the vote",
         "a great song from the band", "the doctor and the health report", "a late goal in the game",
         "market and bank news", "flight to the country", "the phone and technology", "a sad film", "hello world"]
LABEL_SETS = [["sports", "weather", "food"], ["politics", "music"], {"health": "doctor and health", "travel": "a flight"},
              ["business", "technology", "movies", "game"]]
TOL = 1e-5


@pytest.fixture(scope="module")
def clf(tiny_models):
    return Classifier.from_pretrained(tiny_models("cosine"))


@pytest.fixture(scope="module")
def client(clf):
    with TestClient(create_app(clf, ServeSettings(max_wait_ms=30, max_batch=16))) as c:
        yield c


def assert_same(served: dict, expected) -> None:
    assert served["text"] == expected.text
    assert list(served["scores"]) == list(expected.scores)
    for name, score in expected.scores.items():
        assert abs(served["scores"][name] - score) <= TOL, (name, served["scores"][name], score)
    assert served["label"] == expected.label and served["labels"] == expected.labels
    assert served["multi_label"] == expected.multi_label and served["truncated"] == expected.truncated


@pytest.mark.parametrize("body", [
    {"texts": "the team won the match", "labels": ["sports", "weather", "food"]},
    {"texts": TEXTS[:5], "labels": {"sports": "a sports match", "weather": "rain and wind"}},
    {"texts": TEXTS[:3], "labels": LABEL_SETS[:3]},  # one label set per text
    {"texts": TEXTS[:4], "labels": ["sports", "food", "music"], "multi_label": True, "threshold": 0.3, "top_k": 2},
    {"texts": TEXTS[:2], "labels": ["sports", "food"], "threshold": {"sports": 0.9}},
    {"texts": TEXTS[:2], "labels": ["sports", "food", "music"], "top_k": 2, "template": "It is about {}."},
])
def test_classify_equals_in_process_classify(client, clf, body):
    r = client.post("/classify", json=body)
    assert r.status_code == 200, r.text
    expected = clf.classify(body["texts"], body["labels"], **{k: v for k, v in body.items() if k not in ("texts", "labels")})
    expected = [expected] if isinstance(body["texts"], str) else expected
    assert len(r.json()["predictions"]) == len(expected)
    for served, exp in zip(r.json()["predictions"], expected):
        assert_same(served, exp)


def test_many_concurrent_clients_with_different_label_sets_get_in_process_results(clf):
    """24 threads, 96 requests over 4 label sets x single/multi-label: every answer equals classify, in
    input order, and requests were batched across clients (fewer scoring rounds than requests)."""
    app = create_app(clf, ServeSettings(max_wait_ms=40, max_batch=32))
    requests = []
    for i in range(96):
        texts = [TEXTS[(i + k) % len(TEXTS)] for k in range(1 + i % 3)]
        body = {"texts": texts if i % 4 else texts[0], "labels": LABEL_SETS[i % len(LABEL_SETS)],
                "multi_label": i % 5 == 0}
        if i % 7 == 0:
            body["labels"] = [LABEL_SETS[(i + k) % len(LABEL_SETS)] for k in range(len(texts))] if i % 4 else body["labels"]
        requests.append(body)
    with TestClient(app) as c, ThreadPoolExecutor(24) as pool:
        responses = list(pool.map(lambda b: c.post("/classify", json=b), requests))
        stats = app.state.batcher.stats
        assert stats.requests == 96 and stats.rounds < 96 / 2, stats  # batched across requests
        assert stats.calls < stats.requests, stats  # same-option requests merged into one classify call
    for body, r in zip(requests, responses):
        assert r.status_code == 200, r.text
        expected = clf.classify(body["texts"], body["labels"], multi_label=body["multi_label"])
        expected = [expected] if isinstance(body["texts"], str) else expected
        assert [p["text"] for p in r.json()["predictions"]] == [p.text for p in expected]
        for served, exp in zip(r.json()["predictions"], expected):
            assert_same(served, exp)


def test_pipeline_zero_shot_classification_is_shaped_like_the_inference_api(client, clf):
    r = client.post("/pipeline/zero-shot-classification",
                    json={"inputs": TEXTS[0], "parameters": {"candidate_labels": "sports, weather,food"}})
    assert r.status_code == 200, r.text
    out = r.json()
    expected = clf.classify(TEXTS[0], ["sports", "weather", "food"])
    assert out["sequence"] == TEXTS[0]
    assert out["labels"] == [name for name, _ in expected.ranked]
    assert out["scores"] == pytest.approx([s for _, s in expected.ranked], abs=TOL)
    assert out["scores"] == sorted(out["scores"], reverse=True)

    body = {"inputs": TEXTS[:3], "parameters": {"candidate_labels": ["sports", "food"], "multi_label": True,
                                                "hypothesis_template": "This example is {}."}, "options": {"wait_for_model": True}}
    r = client.post("/pipeline/zero-shot-classification", json=body)
    assert r.status_code == 200, r.text
    expected = clf.classify(TEXTS[:3], ["sports", "food"], multi_label=True, template="This example is {}.")
    assert [o["sequence"] for o in r.json()] == TEXTS[:3]
    for o, e in zip(r.json(), expected):
        assert o["scores"] == pytest.approx([s for _, s in e.ranked], abs=TOL)

    r = client.post("/pipeline/zero-shot-classification", json={"inputs": "hello", "parameters": {"candidate_labels": ["news"]}})
    assert r.status_code == 200  # one candidate label: scored on its own, as in transformers' pipeline
    assert r.json()["scores"][0] == pytest.approx(clf.classify("hello", ["news"], multi_label=True).scores["news"], abs=TOL)


def _python_error(clf, args, kwargs) -> str:
    with pytest.raises((ValueError, TypeError)) as info:
        clf.classify(*args, **kwargs)
    return str(info.value)


@pytest.mark.parametrize("texts,labels,options", [
    ("", ["a", "b"], {}),
    ([], ["a", "b"], {}),
    (["ok", 3], ["a", "b"], {}),
    ("ok", [], {}),
    ("ok", ["a", " a"], {}),
    ("ok", {"a": "x", "b": ""}, {}),
    (["ok", "fine"], [["a", "b"]], {}),
    ("ok", None, {}),
    ("ok", ["a", "b"], {"threshold": 2}),
    ("ok", ["a", "b"], {"threshold": {"c": 0.5}}),
    ("ok", ["a", "b"], {"top_k": 0}),
    ("ok", ["a", "b"], {"template": "no placeholder"}),
])
def test_invalid_requests_are_422_with_the_python_api_message(client, clf, texts, labels, options):
    r = client.post("/classify", json={"texts": texts, "labels": labels, **options})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == _python_error(clf, (texts, labels), options)
    assert "\n" not in r.json()["detail"]


def test_a_bad_request_batched_with_good_ones_gets_its_own_error(clf):
    loop = asyncio.new_event_loop()
    try:
        jobs = [Job(TEXTS[:2], ["sports", "food"], {}, loop.create_future(), 0.0),
                Job(TEXTS[2], ["sports", "food"], {}, loop.create_future(), 0.0),
                Job(["fine", "  "], ["sports", "food"], {}, loop.create_future(), 0.0),  # text 1 empty
                Job(TEXTS[3], ["music", "politics"], {}, loop.create_future(), 0.0)]
        results, _ = score_round(clf, jobs, 32)
    finally:
        loop.close()
    assert str(results[jobs[2]]) == _python_error(clf, (["fine", "  "], ["sports", "food"]), {})
    for job in (jobs[0], jobs[1], jobs[3]):
        expected = clf.classify(job.texts, job.labels)
        expected = [expected] if isinstance(job.texts, str) else expected
        got = [results[job]] if isinstance(job.texts, str) else results[job]
        for g, e in zip(got, expected):
            assert_same(g.to_dict(), e)


def test_good_requests_share_one_classify_call(clf):
    calls = []

    def counting(*args, **kwargs):
        calls.append(args)
        return clf.classify(*args, **kwargs)

    loop = asyncio.new_event_loop()
    try:
        jobs = [Job(t, labels, {}, loop.create_future(), 0.0) for t, labels in zip(TEXTS, LABEL_SETS * 3)]
        results, n = score_round(clf, jobs, 32, classify=counting)
    finally:
        loop.close()
    assert n == len(calls) == 1 and len(calls[0][0]) == len(jobs)
    for job in jobs:
        assert_same(results[job].to_dict(), clf.classify(job.texts, job.labels))


def test_schema_errors_are_one_line_422(client):
    for body, detail in [({"text": "x"}, "texts: field required"),
                         ({"texts": "x", "labels": ["a", "b"], "multi_label": "yes"}, "multi_label: Input should be a valid boolean"),
                         ({"texts": "x", "labelz": ["a", "b"]}, "labelz: unknown field; check its spelling in /docs"),
                         ({"inputs": "x", "parameters": {}}, "parameters.candidate_labels: field required")]:
        path = "/pipeline/zero-shot-classification" if "inputs" in body else "/classify"
        r = client.post(path, json=body)
        assert (r.status_code, r.json()["detail"]) == (422, detail)
    r = client.post("/classify", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"].startswith("request body is not valid JSON")


def test_api_key(clf):
    with TestClient(create_app(clf, ServeSettings(api_key="s3cret"))) as c:
        body = {"texts": "hello", "labels": ["news", "spam"]}
        assert c.post("/classify", json=body).status_code == 401
        r = c.post("/classify", json=body, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and "API key" in r.json()["detail"] and r.headers["www-authenticate"] == "Bearer"
        assert c.post("/classify", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.post("/classify", json=body, headers={"X-API-Key": "s3cret"}).status_code == 200
        pipe = {"inputs": "hello", "parameters": {"candidate_labels": ["news", "spam"]}}
        assert c.post("/pipeline/zero-shot-classification", json=pipe).status_code == 401
        assert c.get("/health").status_code == 200 and c.get("/ready").status_code == 200


def test_size_limits_are_413(clf):
    with TestClient(create_app(clf, ServeSettings(max_body_bytes=300, max_texts=3))) as c:
        r = c.post("/classify", json={"texts": ["x" * 400], "labels": ["a", "b"]})
        assert r.status_code == 413 and "--max-body-bytes" in r.json()["detail"]

        def chunks():  # no Content-Length: the limit holds while the body streams in
            yield b'{"texts": ["' + b"y" * 200
            yield b"y" * 200 + b'"], "labels": ["a", "b"]}'

        r = c.post("/classify", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and "--max-body-bytes" in r.json()["detail"]
        r = c.post("/classify", json={"texts": ["a", "b", "c", "d"], "labels": ["a", "b"]})
        assert r.status_code == 413 and "4 texts" in r.json()["detail"] and "--max-texts" in r.json()["detail"]
        assert c.post("/classify", json={"texts": ["a", "b", "c"], "labels": ["x", "y"]}).status_code == 200
    with TestClient(create_app(clf, ServeSettings(max_pairs=6))) as c:  # texts x labels: the work a request asks
        r = c.post("/classify", json={"texts": ["a", "b"], "labels": ["w", "x", "y", "z"]})
        assert r.status_code == 413 and "8 (text, label) pairs" in r.json()["detail"] and "--max-pairs" in r.json()["detail"]
        r = c.post("/classify", json={"texts": ["a", "b"], "labels": [["w", "x", "y", "z"], ["x", "y", "z"]]})
        assert r.status_code == 413 and "7 (text, label) pairs" in r.json()["detail"]
        pipe = {"inputs": ["a", "b"], "parameters": {"candidate_labels": "w, x, y, z"}}
        assert c.post("/pipeline/zero-shot-classification", json=pipe).status_code == 413
        assert c.post("/classify", json={"texts": ["a", "b"], "labels": ["x", "y", "z"]}).status_code == 200


class Gated(Classifier):
    """The tiny classifier, but every classify call waits for ``gate`` (to hold the worker busy)."""

    gate: threading.Event

    def classify(self, *args, **kwargs):
        assert self.gate.wait(30)
        return super().classify(*args, **kwargs)


def _wait_until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_full_queue_is_503_with_retry_after_and_slow_requests_504(clf):
    gated = Gated(clf.backend, base_model=clf.base_model)
    gated.gate = threading.Event()
    app = create_app(gated, ServeSettings(max_queue=1, max_wait_ms=0, timeout_s=0.5))
    body = {"texts": "hello", "labels": ["news", "spam"]}
    with TestClient(app) as c, ThreadPoolExecutor(2) as pool:
        batcher = app.state.batcher
        first = pool.submit(c.post, "/classify", json=body)
        _wait_until(lambda: batcher.scoring == 1)  # the worker is held in classify
        second = pool.submit(c.post, "/classify", json=body)
        _wait_until(lambda: batcher.queued == 1)
        r = c.post("/classify", json=body)
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "busy" in r.json()["detail"]
        assert first.result().status_code == 504 and "--timeout" in first.result().json()["detail"]
        assert second.result().status_code == 504
        gated.gate.set()
        r = c.post("/classify", json=body)
        assert r.status_code == 200, r.text
        metrics = c.get("/metrics").text
        assert "udtc_rejected_queue_full_total 1" in metrics and "udtc_timeouts_total 2" in metrics
    assert not batcher.ready  # after shutdown


def test_metrics_health_ready_and_docs(client):
    client.post("/classify", json={"texts": "hello", "labels": ["news", "spam"]})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    parser = pytest.importorskip("prometheus_client.parser", reason="prometheus-client parses the exposition text")
    families = {f.name: f for f in parser.text_string_to_metric_families(r.text)}
    assert families["udtc_http_requests"].type == "counter"
    ok = [s for s in families["udtc_http_requests"].samples if s.labels == {"method": "POST", "path": "/classify", "status": "200"}]
    assert ok and ok[0].value >= 1
    assert families["udtc_http_request_duration_seconds"].type == "histogram"
    assert families["udtc_ready"].samples[0].value == 1
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json()["status"] == "ready"
    spec = client.get("/openapi.json").json()
    assert {"/classify", "/pipeline/zero-shot-classification", "/metrics"} <= set(spec["paths"])
    assert "texts" in spec["components"]["schemas"]["ClassifyRequest"]["properties"]
    assert client.get("/docs").status_code == 200


def test_missing_extra_is_a_one_line_error_naming_it(monkeypatch, capsys):
    import importlib.util

    from udtc.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install 'udtc\[serve\]'"):
        require_serve_extra()
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "udtc[serve]" in err and "fastapi" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gauge(base: str, name: str) -> float:
    import httpx

    text = httpx.get(f"{base}/metrics", timeout=5).text
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith(name + " ")))


def test_real_server_end_to_end_and_graceful_shutdown(tiny_models, clf):
    """uvicorn on 127.0.0.1: concurrent clients get classify's results; SIGTERM while requests wait in a
    batch round still answers them, then the server shuts down cleanly."""
    import httpx

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "udtc.cli", "serve", str(tiny_models("cosine")), "--port", str(port),
                             "--max-wait-ms", "1500", "--threads", "1"],
                            env=env, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.1)
        bodies = [{"texts": TEXTS[i % len(TEXTS)], "labels": LABEL_SETS[i % len(LABEL_SETS)]} for i in range(8)]
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda b: httpx.post(f"{base}/classify", json=b, timeout=30), bodies))
            for b, r in zip(bodies, responses):
                assert r.status_code == 200, r.text
                assert_same(r.json()["predictions"][0], clf.classify(b["texts"], b["labels"]))
            # in flight: these wait up to 1.5 s for a batch round when SIGTERM arrives
            in_flight = [pool.submit(httpx.post, f"{base}/classify", json=b, timeout=30) for b in bodies[:3]]
            _wait_until(lambda: _gauge(base, "udtc_queue_requests") + _gauge(base, "udtc_scoring_requests") == 3)
            proc.send_signal(signal.SIGTERM)
            for b, future in zip(bodies, in_flight):
                r = future.result()
                assert r.status_code == 200, r.text
                assert_same(r.json()["predictions"][0], clf.classify(b["texts"], b["labels"]))
        # uvicorn re-raises the SIGTERM it handled once drained, so the exit reports the signal
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in proc.stderr.read()
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{base}/health", timeout=1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_settings_are_checked():
    with pytest.raises(ValueError, match="max_batch must be a positive integer"):
        ServeSettings(max_batch=0)
    with pytest.raises(ValueError, match="api_key is empty"):
        ServeSettings(api_key=" ")
    assert json.loads(json.dumps(ServeSettings().__dict__))["max_wait_ms"] == 5.0


def test_the_cli_and_the_settings_import_no_web_framework():
    code = ("import sys, udtc.cli, udtc.serve; udtc.cli._parser(); "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_pipeline_errors_name_the_request_fields(clf):
    with TestClient(create_app(clf, ServeSettings())) as c:
        r = c.post("/pipeline/zero-shot-classification", json={"inputs": "x", "parameters": {"candidate_labels": ["a", "a"]}})
        assert r.status_code == 422 and r.json()["detail"].startswith("parameters.candidate_labels: duplicate label 'a'")
