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
    python -m benchmarks.debias --hubness
    python -m benchmarks.debias --retrieved
    python -m benchmarks.debias --neighbours

``--hubness`` subtracts beta x each label's mean cosine to its k nearest reference texts (CSLS, arXiv:1710.04087):
a label close to many generic texts is a hub that attracts texts of every kind; k = all references is the
reference-mean correction above. k and beta chosen on the dev halves.

``--retrieved`` subtracts alpha x each label's mean log-probability over the k texts of a 20,000-text generic pool
nearest the label set (a pseudo-batch from the label set's own domain, as the batch-mean correction has), on the MiniLM
models; k, alpha and the retrieval (nearest the label mean / nearest any label) chosen on the dev halves.

``--neighbours`` subtracts alpha x each label's mean log-probability over the k pool texts nearest THE TEXT (texts
like it: a pseudo-batch per text, so it needs nothing but the text and the pool), k and alpha chosen on the dev halves.

``--znorm`` normalises each label's score by its statistics over its k nearest reference texts (Z-norm / adaptive
score normalisation of speaker verification): (cos - alpha mu_y) / sd_y^gamma, a label whose cosine barely varies
across texts no longer wins on a small lead; k, alpha and gamma chosen on the dev halves.
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


def hubness_scorer(base: Scorer, ref: torch.Tensor, k: int, beta: float) -> Scorer:
    """``base`` minus beta x each label's hubness: its mean cosine to its ``k`` nearest reference texts (CSLS,
    "Word Translation Without Parallel Data", arXiv:1710.04087, eq. 6: the label-side term; the text-side term is
    the same for every label of a text). ``k`` = all references is the reference-mean correction above."""
    label_emb = base.label_emb
    assert label_emb is not None, "a cosine scorer"
    r = F.normalize(ref, dim=-1)  # (R, D)

    def logits(q: torch.Tensor, labels: list[str]) -> torch.Tensor:
        x, y = F.normalize(q, dim=-1), F.normalize(label_emb(labels), dim=-1)  # (N, D), (L, D)
        hub = (y @ r.T).topk(min(k, len(r)), dim=-1).values.mean(-1)  # (L,)
        return COSINE_SCALE * (x @ y.T - beta * hub[None])  # (N, L)

    return Scorer(f"{base.name}: hubness k={k}", base.encoder, logits)


def znorm_scorer(base: Scorer, ref: torch.Tensor, k: int, alpha: float, gamma: float) -> Scorer:
    """``base`` with each label's cosine normalised by its statistics over its ``k`` nearest reference texts:
    ``(cos(x, y) - alpha mu_y) / (sd_y / mean_y' sd_y')^gamma`` (Z-norm; k < all references: the adaptive cohort of
    AS-norm). Per label set, once; then one text at a time."""
    label_emb = base.label_emb
    assert label_emb is not None, "a cosine scorer"
    r = F.normalize(ref, dim=-1)  # (R, D)

    def logits(q: torch.Tensor, labels: list[str]) -> torch.Tensor:
        x, y = F.normalize(q, dim=-1), F.normalize(label_emb(labels), dim=-1)  # (N, D), (L, D)
        cohort = (y @ r.T).topk(min(k, len(r)), dim=-1).values  # (L, k)
        mu, sd = cohort.mean(-1), cohort.std(-1)  # (L,), (L,)
        return COSINE_SCALE * (x @ y.T - alpha * mu[None]) / (sd / sd.mean())[None] ** gamma  # (N, L)

    return Scorer(f"{base.name}: znorm k={k}", base.encoder, logits)


def retrieved_scorer(base: Scorer, pool: torch.Tensor, k: int, alpha: float, by: str) -> Scorer:
    """``base`` minus alpha x each label's mean log-probability over the ``k`` pool texts nearest the label set: a
    pseudo-batch of texts from the label set's own domain, retrieved once per label set (one text at a time after
    that). ``by="centroid"``: nearest the mean of the label vectors; ``by="any"``: nearest any one label."""
    label_emb = base.label_emb
    assert label_emb is not None, "a cosine scorer"
    r = F.normalize(pool, dim=-1)  # (P, D)

    def logits(q: torch.Tensor, labels: list[str]) -> torch.Tensor:
        y = F.normalize(label_emb(labels), dim=-1)  # (L, D)
        near = (r @ y.mean(0) if by == "centroid" else (r @ y.T).amax(-1)).topk(min(k, len(r))).indices  # (k,)
        bias = base.logits(r[near], labels).log_softmax(-1).mean(0)  # (L,)
        return base.logits(q, labels) - alpha * bias[None]  # (N, L)

    return Scorer(f"{base.name}: retrieved k={k} by {by}", base.encoder, logits)


def neighbour_scorer(base: Scorer, pool: torch.Tensor, k: int, alpha: float) -> Scorer:
    """``base`` minus alpha x each label's mean log-probability over the ``k`` pool texts nearest THE TEXT: a
    pseudo-batch of texts like this one (its neighbourhood in a generic pool), per text, so one text at a time."""
    r = F.normalize(pool, dim=-1)  # (P, D)
    memo: dict[tuple[str, ...], torch.Tensor] = {}

    def logits(q: torch.Tensor, labels: list[str]) -> torch.Tensor:
        key = tuple(labels)
        if key not in memo:  # every pool text's log-probabilities, once per label set
            memo.clear()
            memo[key] = base.logits(r, labels).log_softmax(-1)  # (P, L)
        near = (F.normalize(q, dim=-1) @ r.T).topk(min(k, len(r)), dim=-1).indices  # (N, k)
        return base.logits(q, labels) - alpha * memo[key][near].mean(1)  # (N, L)

    return Scorer(f"{base.name}: neighbours k={k}", base.encoder, logits)


def dev_chosen(argv: list[str] | None, stem: str, kinds: dict[str, str], make, mpnet: bool = True) -> int:
    """Each correction kind with its parameter chosen on the DEV unseen mean, per cosine model of
    ``benchmarks.unseen``; TEST deltas per set (the six and the EXTRA software-domain set) against the bare model.
    ``make(protocol, base, kind, classifiers)`` -> [(parameter, scorer)], none when the kind does not apply to
    ``base`` (``classifiers``: ``benchmarks.unseen.baselines``' models by title, to embed more texts)."""
    from benchmarks.common import write_results
    from benchmarks.unseen import EXTRA, SETS, UNSEEN, baselines

    started = time.perf_counter()
    protocol, scorers, classifiers = baselines(False, names=(*SETS, *EXTRA), default=True, mpnet=mpnet)
    sets = [*UNSEEN, *EXTRA]
    lines = ["| model | correction | parameter (dev) | dev mean (6) | **test mean (6)** | "
             + " | ".join(f"{n} Δ" for n in sets) + " |", "|---|---|---|---|---|" + "---|" * len(sets)]
    rows = []
    for base in (s for s in scorers if s.label_emb is not None):  # the cosine ones
        bare: dict = {}
        for kind in ("none", *kinds):  # "none" first: its test run is the bare one the deltas are against
            candidates = [("-", base)] if kind == "none" else make(protocol, base, kind, classifiers)
            if not candidates:
                continue
            dev = [protocol.run(s, "none", "dev")["unseen mean"]["macro_f1"] for _, s in candidates]
            best = max(range(len(candidates)), key=dev.__getitem__)
            param, scorer = candidates[best]
            test = protocol.run(scorer, "none", "test")
            bare = test if kind == "none" else bare
            rows.append({"model": base.name, "correction": kind, "parameter": param, "dev_mean": dev[best],
                         "test": test})
            lines.append(f"| {base.name} | {kinds.get(kind, 'none')} | {param} | {dev[best]:.1f} | "
                         f"**{test['unseen mean']['macro_f1']:.1f}** | "
                         + " | ".join(f"{test[n]['macro_f1'] - bare[n]['macro_f1']:+.1f}" for n in sets) + " |")
    table = "\n".join(lines)
    write_results(stem, {"command": " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])]),
                         "rows": rows, "seconds": round(time.perf_counter() - started, 1)}, table)
    print(table)
    return 0


def label_set(argv: list[str] | None) -> int:
    """``--label-set``: the three label-set-only corrections on every cosine model of ``benchmarks.unseen``."""
    return dev_chosen(argv, "debias_label_set", LABEL_SET_KINDS,
                      lambda protocol, base, kind, _: [(f"beta {b:g}", label_set_scorer(base, kind, b)) for b in BETAS])


HUB_KS = (1, 5, 20, 100, 1024)
HUB_BETAS = (0.25, 0.5, 0.75, 1.0)


def hubness(argv: list[str] | None) -> int:
    """``--hubness``: CSLS-style label hubness over the 1,024 reference texts, k and beta chosen on dev."""
    return dev_chosen(argv, "debias_hubness", {"hub": "label hubness over its k nearest reference texts (CSLS)"},
                      lambda protocol, base, kind, _: [(f"k {k}, beta {b:g}",
                                                     hubness_scorer(base, protocol.ref_emb[base.encoder], k, b))
                                                    for k in HUB_KS for b in HUB_BETAS])


ZNORM_KS = (100, 1024)
ZNORM_ALPHAS = (0.0, 0.5, 1.0)
ZNORM_GAMMAS = (0.5, 1.0, 1.5)


def znorm(argv: list[str] | None) -> int:
    """``--znorm``: each label's score normalised over its k nearest reference texts, k, alpha, gamma chosen on dev."""
    return dev_chosen(argv, "debias_znorm", {"z": "each label's score z-normalised over its k nearest reference texts"},
                      lambda protocol, base, kind, _: [(f"k {k}, alpha {a:g}, gamma {g:g}",
                                                     znorm_scorer(base, protocol.ref_emb[base.encoder], k, a, g))
                                                    for k in ZNORM_KS for a in ZNORM_ALPHAS for g in ZNORM_GAMMAS],
                      mpnet=False)


POOL_SIZE = 20000
RETRIEVED_KS = (16, 64, 256, 1024)
RETRIEVED_ALPHAS = (0.25, 0.5, 0.75, 1.0)


def on_pool(argv: list[str] | None, stem: str, kinds: dict[str, str], scorers) -> int:
    """``dev_chosen`` over the MiniLM models with a ``POOL_SIZE``-text generic pool embedded once per encoder;
    ``scorers(base, pool embeddings, kind)`` -> [(parameter, scorer)]."""
    from benchmarks.unseen import embed, reference_texts

    pool = reference_texts(POOL_SIZE)
    pools: dict[str, torch.Tensor] = {}

    def make(protocol: Protocol, base: Scorer, kind: str, classifiers: dict) -> list[tuple[str, Scorer]]:
        if base.encoder not in pools:
            pools[base.encoder] = embed(classifiers[base.name.removesuffix(" + template")].backend, base.encoder, pool)
        return scorers(base, pools[base.encoder], kind)

    return dev_chosen(argv, stem, kinds, make, mpnet=False)


def retrieved(argv: list[str] | None) -> int:
    """``--retrieved``: each label set's prior over the pool texts nearest it, k, alpha and the retrieval chosen on dev."""
    return on_pool(argv, "debias_retrieved",
                   {"centroid": f"prior over the k of {POOL_SIZE:,} pool texts nearest the label mean",
                    "any": f"prior over the k of {POOL_SIZE:,} pool texts nearest any label"},
                   lambda base, pool, kind: [(f"k {k}, alpha {a:g}", retrieved_scorer(base, pool, k, a, kind))
                                             for k in RETRIEVED_KS for a in RETRIEVED_ALPHAS])


NEIGHBOUR_KS = (16, 64, 256)


def neighbours(argv: list[str] | None) -> int:
    """``--neighbours``: each text's prior over its k nearest pool texts, k and alpha chosen on dev."""
    return on_pool(argv, "debias_neighbours", {"text": f"prior over the k of {POOL_SIZE:,} pool texts nearest the text"},
                   lambda base, pool, kind: [(f"k {k}, alpha {a:g}", neighbour_scorer(base, pool, k, a))
                                             for k in NEIGHBOUR_KS for a in RETRIEVED_ALPHAS])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--label-set", action="store_true",
                        help="corrections that read only the label set (no reference texts), on every cosine model")
    parser.add_argument("--hubness", action="store_true",
                        help="each label's hubness over its k nearest reference texts (CSLS), on every cosine model")
    parser.add_argument("--retrieved", action="store_true",
                        help="each label set's prior over the pool texts nearest it (a pseudo-batch), on MiniLM models")
    parser.add_argument("--neighbours", action="store_true",
                        help="each text's label prior over its nearest pool texts (a pseudo-batch per text), on MiniLM models")
    parser.add_argument("--znorm", action="store_true",
                        help="each label's score z-normalised over its nearest reference texts, on MiniLM models")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.znorm:
        return znorm(argv)
    if args.neighbours:
        return neighbours(argv)
    if args.retrieved:
        return retrieved(argv)
    if args.label_set:
        return label_set(argv)
    if args.hubness:
        return hubness(argv)
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
