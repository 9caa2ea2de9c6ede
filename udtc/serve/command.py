"""The ``udtc serve`` subcommand: load a model, then run the app under uvicorn until SIGINT/SIGTERM.

uvicorn's graceful shutdown stops taking connections and waits (up to ``--timeout`` plus a few
seconds) for in-flight requests to be answered; the app's lifespan then drains the batch queue.
"""

from __future__ import annotations

import argparse
import os
import sys


def add_serve_command(sub) -> None:
    """Register ``serve`` on the ``udtc`` CLI's subparsers (imports nothing heavy)."""
    s = sub.add_parser("serve", help="serve a model over HTTP with dynamic batching (extra: udtc[serve])",
                       description="Serve MODEL over HTTP: POST /classify, POST /pipeline/zero-shot-classification "
                                   "(Hugging Face Inference API shape), /health, /ready, /metrics, /docs. "
                                   "Requests arriving within --max-wait-ms are scored together.")
    s.add_argument("model", nargs="?", default=None, metavar="MODEL",
                   help="folder, .gguf file or Hub id (default: the embedded default model)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 for all)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--max-batch", type=int, default=32, help="texts scored together in one round")
    s.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a request may wait for others to join")
    s.add_argument("--max-queue", type=int, default=256, help="queued requests before 503 + Retry-After")
    s.add_argument("--timeout", type=float, default=30.0, help="seconds before a request gets 504")
    s.add_argument("--max-texts", type=int, default=256, help="texts per request before 413")
    s.add_argument("--max-pairs", type=int, default=100_000,
                   help="(text, label) pairs per request before 413: each text times its labels")
    s.add_argument("--max-body-bytes", type=int, default=1_000_000, help="request body bytes before 413")
    s.add_argument("--api-key", default=None, help="require this key (Authorization: Bearer KEY or X-API-Key); "
                   "default: $UDTC_API_KEY if set, else no key (prefer the variable: arguments show in ps)")
    s.add_argument("--backend", default=None, help="force a backend (default: detected from the model)")
    s.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
    s.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    s.add_argument("--switch-interval-ms", type=float, default=None,
                   help="Python's GIL switch interval for this process (default: Python's, 5 ms); the model thread "
                        "and the HTTP thread share the GIL, so it can matter: measure with benchmarks.serve_load")
    s.add_argument("--log-level", default="info", help="uvicorn log level (debug, info, warning, error)")
    s.set_defaults(func=run_serve, own_sigterm=True)  # uvicorn's graceful shutdown (udtc.cli.main)


def run_serve(args: argparse.Namespace) -> int:
    from udtc.serve import ServeSettings, create_app, require_serve_extra

    require_serve_extra()  # before loading a model: a missing extra is a one-line error at once
    settings = ServeSettings(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
                             timeout_s=args.timeout, max_texts=args.max_texts, max_pairs=args.max_pairs,
                             max_body_bytes=args.max_body_bytes,
                             api_key=args.api_key or os.environ.get("UDTC_API_KEY") or None)
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    import torch
    import uvicorn

    from udtc.classifier import Classifier

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be a positive integer, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.switch_interval_ms is not None:
        if not args.switch_interval_ms > 0:
            raise ValueError(f"--switch-interval-ms must be > 0, got {args.switch_interval_ms}")
        sys.setswitchinterval(args.switch_interval_ms / 1000)  # this process only serves: ours to choose
    classifier = Classifier.from_pretrained(args.model, backend=args.backend, device=args.device)
    name = args.model or "the default model"
    app = create_app(classifier, settings, model_name=args.model)
    print(f"udtc: serving {name} ({classifier.backend_name}) on http://{args.host}:{args.port} "
          f"(API docs at /docs{', API key required' if settings.api_key else ''})", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                            timeout_graceful_shutdown=int(settings.timeout_s) + 5)
    uvicorn.Server(config).run()
    return 0
