"""One-text label-prior debiasing for cosine models as a fixed linear correction (issue #13, item 2).

For cosine scores the reference-set correction of ``benchmarks.unseen`` has a closed form. A label's
mean log-probability over reference texts r is ``s/R sum_r cos(r, y) - const`` (the log-sum-exp term
is the same for every label), so subtracting ``alpha`` times it from ``s cos(x, y)`` is

    s (x^ - alpha m) . y^        m = mean of the normalised reference embeddings (one vector, D floats)

i.e. centring the TEXT embedding by the reference mean, independent of the label set, one text at a
time, and the whole reference set ships as one vector. This module measures that and one step
further: also projecting out the top-k principal directions of the centred reference embeddings
from texts and labels ("all-but-the-top", Mu & Viswanath 2018, arXiv:1702.01417), k and alpha chosen
on the dev halves. Everything reads the cached embeddings of ``benchmarks.unseen``.

``--label-set`` measures corrections that read only the label set itself (no reference texts), beta
chosen on the dev halves per model: (A) project the label set's mean direction m out of the text,
(B) subtract beta cos(y, m) from each label's score (labels near the set's centre attract many texts),
(C) centre the labels, y - beta mean(y). Scored on the six sets and the EXTRA software-domain set.

    python -m benchmarks.debias
    python -m benchmarks.debias --label-set
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F

from benchmarks.unseen import (ALPHAS, COSINE_SCALE, REFERENCE_SIZES, TEMPLATE, Protocol, Scorer, build_protocol,
                               evaluate, label_embedder, render)

COMMAND = "python -m benchmarks.debias"
KS = (0, 1, 2, 4, 8, 16)


def centring(ref: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference mean ``m`` (D,) and the top-``k`` principal directions ``U`` (D, k) of the centred references."""
    r = F.normalize(ref, dim=-1)
    m = r.mean(0)
    if k == 0:
        return m, torch.zeros(r.shape[1], 0)
    _, _, v = torch.linalg.svd(r - m, full_matrices=False)
    return m, v[:k].T


def centred_scorer(name: str, encoder: str, label_emb, m: torch.Tensor, U: torch.Tensor, alpha: float) -> Scorer:
    def project(v: torch.Tensor) -> torch.Tensor:
        return v - (v @ U) @ U.T

    def logits(q: torch.Tensor, labels: list[str]) -> torch.Tensor:
        x = F.normalize(project(F.normalize(q, dim=-1) - alpha * m), dim=-1)  # (N, D)
        y = F.normalize(project(F.normalize(label_emb(labels), dim=-1)), dim=-1)  # (L, D)
        return COSINE_SCALE * x @ y.T  # (N, L)

    return Scorer(name, encoder, logits)


def tuned(protocol: Protocol, name: str, encoder: str, label_emb) -> tuple[Scorer, dict]:
    """The (reference size, k, alpha) with the best DEV unseen mean."""
    best = None
    for size in REFERENCE_SIZES:
        for k in KS:
            m, U = centring(protocol.ref_emb[encoder][:size], k)
            for alpha in ALPHAS:
                s = centred_scorer(name, encoder, label_emb, m, U, alpha)
                f1 = protocol.run(s, "none", "dev")["unseen mean"]["macro_f1"]
                if best is None or f1 > best[0] + 1e-9:
                    best = (f1, {"ref_size": size, "k": k, "alpha": alpha}, s)
    f1, params, s = best
    s.name = f"{name}: centred (alpha {params['alpha']:g}), top {params['k']} PCs removed, n={params['ref_size']} (dev-chosen)"
    return s, params


BETAS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
LABEL_SET_KINDS = {"A": "text minus beta x its projection on the label mean",
                   "B": "score minus beta cos(label, label mean)",
                   "C": "labels centred: y - beta mean(y)"}


def label_set_scorer(base: Scorer, kind: str, beta: float) -> Scorer:
    """``base`` (a cosine scorer) with one label-set-only correction; one text at a time."""
    label_emb = base.label_emb
    assert label_emb is not None, "a cosine scorer"

    def logits(q: torch.Tensor, labels: list[str]) -> torch.Tensor:
        x, y = F.normalize(q, dim=-1), F.normalize(label_emb(labels), dim=-1)  # (N, D), (L, D)
        m = F.normalize(y.mean(0), dim=-1)  # (D,)
        if kind == "A":
            x = F.normalize(x - beta * (x @ m)[:, None] * m, dim=-1)
        elif kind == "C":
            y = F.normalize(y - beta * y.mean(0), dim=-1)
        scores = x @ y.T  # (N, L)
        return COSINE_SCALE * (scores - beta * (y @ m)[None] if kind == "B" else scores)

    return Scorer(f"{base.name}: {kind}", base.encoder, logits)


def label_set(argv: list[str] | None) -> int:
    """``--label-set``: the three label-set-only corrections on every cosine model of ``benchmarks.unseen``."""
    from benchmarks.common import write_results
    from benchmarks.unseen import EXTRA, SETS, UNSEEN, baselines

    started = time.perf_counter()
    protocol, scorers, _ = baselines(False, names=(*SETS, *EXTRA), default=True)
    sets = [*UNSEEN, *EXTRA]
    lines = ["| model | correction | beta (dev) | dev mean (6) | **test mean (6)** | "
             + " | ".join(f"{n} Δ" for n in sets) + " |", "|---|---|---|---|---|" + "---|" * len(sets)]
    rows = []
    for base in (s for s in scorers if s.label_emb is not None):  # the cosine ones
        candidates = [("none", 0.0, base)] + [(k, b, label_set_scorer(base, k, b))
                                              for k in LABEL_SET_KINDS for b in BETAS]
        dev = {(k, b): protocol.run(s, "none", "dev")["unseen mean"]["macro_f1"] for k, b, s in candidates}
        for kind in ("none", *LABEL_SET_KINDS):  # "none" first: its test run is the bare one the deltas are against
            beta, scorer = max(((b, s) for k, b, s in candidates if k == kind), key=lambda t: dev[(kind, t[0])])
            test = protocol.run(scorer, "none", "test")
            bare = test if kind == "none" else bare
            rows.append({"model": base.name, "correction": kind, "beta": beta, "dev_mean": dev[(kind, beta)],
                         "test": test})
            lines.append(f"| {base.name} | {LABEL_SET_KINDS.get(kind, 'none')} | {beta:g} | {dev[(kind, beta)]:.1f} | "
                         f"**{test['unseen mean']['macro_f1']:.1f}** | "
                         + " | ".join(f"{test[n]['macro_f1'] - bare[n]['macro_f1']:+.1f}" for n in sets) + " |")
    table = "\n".join(lines)
    write_results("debias_label_set", {"command": " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])]),
                                       "betas": BETAS, "rows": rows,
                                       "seconds": round(time.perf_counter() - started, 1)}, table)
    print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--label-set", action="store_true",
                        help="corrections that read only the label set (no reference texts), on every cosine model")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.label_set:
        return label_set(argv)
    from benchmarks.models import fetch as fetch_model
    from udtc import Classifier
    from udtc.defaults import COSINE_MINILM

    started = time.perf_counter()
    encoders = {"minilm": Classifier.from_pretrained(COSINE_MINILM, device="cpu").backend}
    if not args.quick:
        encoders["mpnet"] = Classifier.from_pretrained(str(fetch_model("all-mpnet-base-v2")), device="cpu").backend
    protocol = build_protocol(encoders, args.quick)
    rows, chosen = [], {}
    for enc, backend in encoders.items():
        title = {"minilm": "MiniLM", "mpnet": "MPNet"}[enc]
        for suffix, template in (("", "{}"), (" + template", TEMPLATE)):
            name = f"cosine {title}{suffix}"
            scorer, params = tuned(protocol, name, enc, label_embedder(backend, enc, template))
            chosen[name] = params
            rows += [r for r in evaluate(protocol, [scorer]) if r["variant"] in ("none", "batch", "sinkhorn")]
    table = render(rows, [s.name for s in protocol.sets], {})
    print(table)
    from benchmarks.common import write_results

    write_results(f"debias{'_quick' if args.quick else ''}",
                  {"command": " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])]),
                   "chosen_on_dev": chosen, "rows": rows, "seconds": round(time.perf_counter() - started, 1)}, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
