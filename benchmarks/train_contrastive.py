"""Contrastive fine-tuning of the whole MiniLM encoder over many label sets (issue #13, item 3).

The student is the default model itself (cosine on all-MiniLM-L6-v2, ``udtc.defaults.COSINE_MINILM``),
every weight trained; its scores stay ``20 cos(f(x), f(y))`` (``CosineBackend.training_logits``), so
a fine-tuned folder is a plain cosine model at exactly cosine MiniLM's speed. Judged by
``benchmarks.unseen`` (label sets of kinds no training row has).

Training rows: only ``benchmarks.datasets.training_sources()`` (``training_mixture()``: BBC topics,
positive/negative of tweets, movie snippets) plus WordNet hypernym rows (``benchmarks.wordnet``: a
definition or usage example, its hypernym, the hypernym's siblings as negatives; no label name of an
evaluation set); ``--topics N`` adds WordNet topic-domain rows (``benchmarks.wordnet.topic_rows``). Each step draws ``--batch`` rows; its label set is the UNION of the rows' golds and
negatives (in-batch negatives: every step a new label set of ~100 names). Loss:

* cross-entropy of each text over the batch's label set (scaled cosine, scale 20 as the backend);
* ``--kl``: KL(frozen MiniLM || student) over the same label set (keeps the original geometry);
* ``--prior``: label-prior penalty: for each row's own candidate set (gold + siblings), the mean
  softmax over ``--ref`` unrelated texts of the pool should be uniform: -mean_y log pbar(y) - log L
  (>= 0, 0 iff uniform), the bias the issue diagnoses on new label sets.

``--lora R`` trains a LoRA adapter of rank R (alpha R) on every linear layer instead of every weight (the
adapter, a few MB, is what ``--save`` writes: it loads on the base by reference); ``--wise`` also scores
the interpolations theta0 + lambda (theta - theta0) of each trained model (WiSE-FT, Wortsman et al., 2022,
arXiv 2109.01903), lambda chosen on the dev halves. ``--label-templates P`` frames all labels of a share P of the
steps in one template (``LABEL_TEMPLATES``; the KL teacher sees the same strings), so the model learns labels as
users also write them (``classify(..., template=...)``). ``--fortunes N`` adds N quotations and jokes by topic
(``fortune_rows``: natural texts under label names no evaluation set has). ``--symmetric W`` adds W x the
label -> text cross-entropy (``label_to_text_loss``: each gold label's softmax over the batch's texts). ``--fields N``
adds N rows labelled with WordNet's semantic fields (``benchmarks.wordnet.field_rows``: ~33 broad names as one set).
``--lemmas N`` adds N reverse-dictionary rows (``benchmarks.wordnet.lemma_rows``: a definition -> its word, against
its antonyms and co-hyponyms: fine distinctions among close labels). ``--verbs N`` adds N verb hypernym rows
(``benchmarks.wordnet.verb_rows``: what a text does, "provide with an index" -> "supply").
``--generated N FILE_N TOP`` adds N rows of texts a small LM wrote for topic domains (``lm_rows``,
``benchmarks.generate``). ``--scale S`` sets the cross-entropy's cosine scale (20, the backend's, by default; the KL
and the prior penalty stay at 20). ``--concat N`` adds N rows of 3-6 texts of one gold joined (``concat_rows``: long
texts, as genre chunks are). ``--side label`` (``text``) trains the adapter on one tower only: the texts (the labels)
are embedded by frozen MiniLM while training and scoring (``frozen_side``).

    python -m benchmarks.train_contrastive --dev-only --seeds 0 --tag X    # a recipe, DEV halves only
    python -m benchmarks.train_contrastive --seeds 0 1 2 --tag X           # dev + test, 3 seeds
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.distill import CANDIDATES, mean_sd
from udtc.training.lora import LORA_CITATION, add_lora, merge_lora
from benchmarks.unseen import (SETS, TEMPLATE, Protocol, Scorer, card_metrics, cosine_baseline, embed_all, evaluate,
                               evaluation_labels, label_sets, load, reference_texts, render, throughput)

COMMAND = "python -m benchmarks.train_contrastive"
#: ``--label-templates P``: the share P of steps whose labels are all framed in one of these (a user's ``template=``)
LABEL_TEMPLATES = ("This text is about {}.", "A text about {}.", "The topic is {}.", "This is {}.", "{}, in short.")
RESULTS = Path(__file__).resolve().parent / "results"


def training_rows(n_wordnet: int, cap: int, seed: int = 0, n_topics: int = 0,
                  all_pos: bool = False, n_fortunes: int = 0, n_fields: int = 0, n_lemmas: int = 0, n_verbs: int = 0,
                  generated: tuple[int, int, int] = (0, 0, 0), generated_seeds: tuple[int, ...] = (0, 1, 2, 3),
                  ) -> list[tuple[str, str, list[str]]]:
    """(text, gold, negatives): WordNet hypernym rows (+ ``n_topics`` topic-domain rows, of nouns or, with
    ``all_pos``, of every part of speech; + ``n_fields`` semantic-field rows; + ``n_lemmas`` reverse-dictionary rows,
    ``lemma_rows``; + ``n_verbs`` verb hypernym rows, ``verb_rows``) + ``training_mixture()`` rows (capped
    per source) + ``n_fortunes`` rows of ``fortune_rows`` + ``generated`` = (N, n, top): N rows of the LM-written
    texts of ``python -m benchmarks.generate --n n --seed S`` (S in ``generated_seeds``), ``lm_rows``."""
    from benchmarks.train_sce import capped_mixture
    from benchmarks.wordnet import field_rows, hypernym_rows, lemma_rows, topic_rows, verb_rows

    unseen = evaluation_labels()
    out = hypernym_rows(n_wordnet, seed, exclude_labels=unseen)
    out += topic_rows(n_topics, seed, exclude_labels=unseen, extra=None if all_pos else ()) if n_topics else []
    out += field_rows(n_fields, seed, exclude_labels=unseen) if n_fields else []
    out += lemma_rows(n_lemmas, seed, exclude_labels=unseen) if n_lemmas else []
    out += verb_rows(n_verbs, seed, exclude_labels=unseen) if n_verbs else []
    mixture = capped_mixture(cap, seed)  # training_sources() only; texts found in held-out sets dropped
    by_source: dict[str, list[str]] = {}
    for _, label, source in mixture:
        if label not in by_source.setdefault(source, []):
            by_source[source].append(label)
    out += [(t, y, [x for x in by_source[s] if x != y]) for t, y, s in mixture] + fortune_rows(n_fortunes, seed)
    return out + lm_rows(*generated, seed=seed, files=generated_seeds)


def concat_rows(data: list[tuple[str, str, list[str]]], n: int, seed: int = 0,
                parts: tuple[int, int] = (3, 6)) -> list[tuple[str, str, list[str]]]:
    """``--concat N``: ``n`` longer rows, each the texts of 3-6 rows of one gold label joined as sentences, under that
    gold with the first row's negatives. The rows are short (98 % under 48 tokens; median 13) where the genre set's
    texts are three sentences (median 66 tokens, 74 % over 48): these make the recipe see long texts of one topic."""
    by_gold: dict[str, list[tuple[str, list[str]]]] = {}
    for text, gold, negatives in data:
        by_gold.setdefault(gold, []).append((text, negatives))
    pool = [i for i, (_, gold, _) in enumerate(data) if len(by_gold[gold]) >= 2]
    if n <= 0 or not pool:
        return []
    rng = random.Random(f"concat:{seed}")
    out = []
    for _ in range(n):
        gold = data[rng.choice(pool)][1]  # a gold as often as it has rows
        picked = rng.sample(by_gold[gold], min(len(by_gold[gold]), rng.randint(*parts)))
        sentences = [t.strip() for t, _ in picked]
        text = " ".join(t if t.endswith((".", "!", "?")) else t + "." for t in sentences)
        out.append((text, gold, picked[0][1]))
    return out


def lm_rows(n: int, n_generated: int, top: int, seed: int = 0,
            files: tuple[int, ...] = (0, 1, 2, 3)) -> list[tuple[str, str, list[str]]]:
    """``n`` seeded rows of ``benchmarks.generate`` (its files of seeds ``files``) that pass its filters (``clean``;
    ``relevant`` with ``top``); when fewer pass, each is repeated (n // passed or one more times) to weigh them more."""
    if n <= 0:
        return []
    from benchmarks.generate import generated_rows, relevant

    rows = relevant([r for s in files for r in generated_rows(n_generated, s)], top)
    rng = random.Random(f"lm-rows:{seed}")
    out = rows * (n // len(rows)) + rng.sample(rows, n % len(rows)) if rows else []
    rng.shuffle(out)
    return out


def fortune_rows(n: int, seed: int = 0) -> list[tuple[str, str, list[str]]]:
    """``n`` seeded rows of ``fortune_topics`` (quotations and jokes by topic: natural texts, new label names), the
    other kept topics as negatives; no topic named like an evaluation label, no text found in an evaluation set."""
    if n <= 0:
        return []
    from benchmarks.datasets import _fingerprint, load as load_data
    from benchmarks.unseen import EXTRA

    unseen = evaluation_labels()
    held = {_fingerprint(t) for name in (*SETS, *EXTRA) for t in load(name).texts}
    rows = [(t, y) for t, y in load_data("fortune_topics").rows() if y not in unseen and _fingerprint(t) not in held]
    kept = sorted({y for _, y in rows})
    rows = random.Random(f"fortunes:{seed}").sample(rows, min(n, len(rows)))
    return [(t, y, [x for x in kept if x != y]) for t, y in rows]


def group_rows(wanted: bool) -> list[dict[str, list[str]]]:
    """``benchmarks.wordnet.label_set_groups`` without any evaluation label name ([] unless ``wanted``)."""
    from benchmarks.wordnet import label_set_groups

    return label_set_groups(exclude_labels=evaluation_labels()) if wanted else []


def protocol_for(backend, sets, dev_only: bool, text_backend=None) -> tuple[Protocol, dict[str, torch.Tensor]]:
    """A ``benchmarks.unseen.Protocol`` on the backend's embeddings (encoder ``ft``) + label vectors; texts by
    ``text_backend`` when given (``--side``), labels by ``backend``."""
    text_backend = text_backend or backend
    text_emb = {}
    for s in sets:
        dev = embed_all(text_backend, s.dev.texts)
        text_emb[s.name] = (dev, dev if dev_only else embed_all(text_backend, s.test.texts))
    ref = embed_all(text_backend, reference_texts(1024)) if not dev_only else torch.zeros(1, 384)
    names = sorted({x for s in sets for x in s.dev.labels})
    strings = names + [TEMPLATE.replace("{}", x) for x in names]
    vectors = dict(zip(strings, embed_all(backend, strings)))
    return Protocol(sets, {"ft": text_emb}, {"ft": ref}), vectors


def scorer(name: str, vectors: dict[str, torch.Tensor], template: str = "{}") -> Scorer:
    def logits(q: torch.Tensor, labels: list[str]) -> torch.Tensor:
        y = torch.stack([vectors[template.replace("{}", x)] for x in labels])  # (L, D)
        return 20.0 * F.normalize(q, dim=-1) @ F.normalize(y, dim=-1).T  # (N, L)

    return Scorer(name, "ft", logits, trained=True)


def embed_grad(backend, texts: list[str], chunk: int = 16) -> torch.Tensor:
    """``backend._embed_batch`` in length-sorted chunks (little padding), original order; (N, D)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    parts = [backend._embed_batch([texts[i] for i in order[k : k + chunk]])[0] for k in range(0, len(texts), chunk)]
    inverse = torch.empty(len(texts), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(texts))
    return torch.cat(parts)[inverse]


def frozen_teacher(backend, max_length: int) -> Callable[[list[str], list[str]], torch.Tensor]:
    """The KL target's scores, 20 cos, of a frozen cosine backend (cosine MiniLM: the student before training)."""
    backend.max_length = max_length

    def scores(texts: list[str], labels: list[str]) -> torch.Tensor:
        tx, ty = embed_grad(backend, texts), backend._embed_batch(labels)[0]  # (B, D), (U, D)
        return 20.0 * F.normalize(tx, dim=-1) @ F.normalize(ty, dim=-1).T  # (B, U)

    return scores


def cached_teacher(backend, encoder: str, data: list[tuple[str, str, list[str]]], templates: tuple[str, ...],
                   max_length: int) -> Callable[[list[str], list[str]], torch.Tensor]:
    """``--teacher mpnet``: the KL target's scores, 20 cos, by another frozen cosine backend (all-mpnet-base-v2; issue
    #13, item 3: distil the better teacher). A label is the normalised mean of its normalised embeddings in every
    template (one template: that embedding; ``--teacher mpnet-ens``: ``benchmarks.enrich.TEMPLATES``). Every row text
    and label string is embedded once at the student's training token limit (cached by ``benchmarks.unseen.embed``
    under ``<encoder>-<max_length>``)."""
    from benchmarks.unseen import embed

    if isinstance(templates, str):
        raise TypeError(f"templates must be a tuple of templates, e.g. ({templates!r},), not one string")
    backend.max_length = max_length
    texts = sorted({t for t, _, _ in data})
    labels = sorted({x for _, g, neg in data for x in (g, *neg)})
    cache = f"{encoder}-{max_length}"
    text_vec = dict(zip(texts, F.normalize(embed(backend, cache, texts), dim=-1)))
    parts = [F.normalize(embed(backend, cache, [t.replace("{}", x) for x in labels]), dim=-1) for t in templates]
    label_vec = dict(zip(labels, F.normalize(torch.stack(parts).mean(0), dim=-1)))  # (D_teacher,) each

    def scores(batch_texts: list[str], batch_labels: list[str]) -> torch.Tensor:
        tx = torch.stack([text_vec[t] for t in batch_texts])  # (B, D_teacher)
        ty = torch.stack([label_vec[x] for x in batch_labels])  # (U, D_teacher)
        return 20.0 * tx @ ty.T  # (B, U)

    return scores


def mean_scores(teachers: tuple[Callable[[list[str], list[str]], torch.Tensor], ...], texts: list[str],
                labels: list[str]) -> torch.Tensor:
    """``--teacher both``: the mean of the teachers' scores (B, U)."""
    return torch.stack([t(texts, labels) for t in teachers]).mean(0)


def label_to_text_loss(logits: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """``--symmetric``: the label -> text half of CLIP's symmetric loss ("Learning Transferable Visual Models From
    Natural Language Supervision", Radford et al. 2021, arXiv:2103.00020, Figure 3). Each label that is some text's
    gold gets a softmax over the batch's texts, its own texts the positives: -log sum_{i: gold_i = y} p(i | y),
    averaged over those labels. A label that scores other labels' texts as high as its own (a hub, the prior the
    issue diagnoses) pays for it. ``logits`` (B, U) text x label, ``gold`` (B,) label indices."""
    own = gold[None] == torch.arange(logits.shape[1])[:, None]  # (U, B): text i's gold is label u
    used = own.any(-1)  # (U,): labels that are some text's gold
    by_label = logits.T[used].log_softmax(-1)  # (U', B)
    return -by_label.masked_fill(~own[used], float("-inf")).logsumexp(-1).mean()


@contextlib.contextmanager
def frozen_side(peft_model, frozen: bool):
    """``--side``: embed under this block with the adapter off and no gradient when ``frozen``."""
    if not frozen:
        yield
        return
    with torch.no_grad(), peft_model.disable_adapter():
        yield


def train(clf, teacher: Callable[[list[str], list[str]], torch.Tensor], data: list[tuple[str, str, list[str]]], args,
          seed: int, log=print, groups: list[dict[str, list[str]]] = (), peft_model=None) -> float:
    """Fine-tune ``clf.backend.model`` in place; returns CPU seconds. ``teacher(texts, labels)``: the KL target's
    scores (B, U). ``groups`` (``--groups``): label sets with texts of each label
    (``benchmarks.wordnet.label_set_groups``), one scored per step. ``--side label`` / ``text``: the other side is
    embedded by the frozen base (``peft_model``'s adapter disabled, no gradient)."""
    backend = clf.backend
    rng = random.Random(f"contrastive:{seed}")
    torch.manual_seed(seed)
    model = backend.model
    model.train()
    backend.max_length = args.max_length
    params = [p for p in model.parameters() if p.requires_grad]  # LoRA (--lora): the adapter only
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    warm = max(1, args.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, 1 - s / args.steps))
    t0, shown = time.process_time(), time.perf_counter()
    for step in range(args.steps):
        batch = rng.sample(range(len(data)), args.batch + args.ref)
        rows, ref = [data[i] for i in batch[: args.batch]], [data[i][0] for i in batch[args.batch :]]
        union = list(dict.fromkeys(x for _, g, neg in rows for x in (g, *neg)))
        rng.shuffle(union)
        index = {x: i for i, x in enumerate(union)}
        gold = torch.tensor([index[g] for _, g, _ in rows])
        texts = [t for t, _, _ in rows]
        framed = union  # the label side as the encoder sees it: --label-templates frames a share of the steps
        if args.label_templates and rng.random() < args.label_templates:
            frame = rng.choice(LABEL_TEMPLATES)
            framed = [frame.replace("{}", x) for x in union]
        with frozen_side(peft_model, args.side == "label"):
            emb = embed_grad(backend, texts + ref)  # (B + R, D), differentiable unless --side label
        with frozen_side(peft_model, args.side == "text"):
            lab, _ = backend._embed_batch(framed)  # (U, D)
        x, y = F.normalize(emb.float(), dim=-1), F.normalize(lab.float(), dim=-1)
        logits = 20.0 * x[: args.batch] @ y.T  # (B, U)
        # --scale: the cross-entropy's own temperature (20 as the backend by default); KL and prior stay at 20
        loss = F.cross_entropy(logits * (args.scale / 20.0), gold)
        parts = {"ce": loss.item()}
        if args.symmetric:
            sym = label_to_text_loss(logits, gold)
            loss = loss + args.symmetric * sym
            parts["label->text"] = sym.item()
        if args.kl:
            with torch.no_grad():
                target = teacher(texts, framed).log_softmax(-1)  # (B, U)
            kl = F.kl_div(logits.log_softmax(-1), target, log_target=True, reduction="batchmean")
            loss = loss + args.kl * kl
            parts["kl"] = kl.item()
        if args.prior and args.ref:
            ref_logits = 20.0 * x[args.batch :] @ y.T  # (R, U)
            penalty = torch.zeros(())
            for _, g, neg in rows:
                ids = torch.tensor([index[z] for z in dict.fromkeys((g, *neg))])
                pbar = ref_logits[:, ids].softmax(-1).mean(0)  # (L,)
                penalty = penalty - pbar.clamp_min(1e-9).log().mean() - torch.log(torch.tensor(float(len(ids))))
            penalty = penalty / len(rows)
            loss = loss + args.prior * penalty
            parts["prior"] = penalty.item()
        if groups:
            topics = len(groups) == 1 or rng.random() < args.group_topics
            group = groups[0] if topics else rng.choice(groups[1:])  # the topic domains, or one hypernym's children
            names = rng.sample(sorted(group), min(len(group), args.groups))
            g_emb = embed_grad(backend, [rng.choice(group[x]) for x in names])  # (G, D): one text per label
            g_lab, _ = backend._embed_batch(names)  # (G, D)
            g_logits = 20.0 * F.normalize(g_emb.float(), dim=-1) @ F.normalize(g_lab.float(), dim=-1).T  # (G, G)
            g_ce = F.cross_entropy(g_logits, torch.arange(len(names)))
            pbar = g_logits.softmax(-1).mean(0)  # (G,): the set's predicted label marginal; its golds are uniform
            g_prior = -pbar.clamp_min(1e-9).log().mean() - torch.log(torch.tensor(float(len(names))))
            loss = loss + g_ce + args.group_prior * g_prior
            parts["group ce"], parts["group prior"] = g_ce.item(), g_prior.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if (step + 1) % 50 == 0 or step == 0:
            log(f"  seed {seed} step {step + 1}/{args.steps}: " + " ".join(f"{k} {v:.3f}" for k, v in parts.items())
                + f" ({time.perf_counter() - shown:.0f} s wall, {time.process_time() - t0:.0f} s CPU)")
    model.eval()
    backend.max_length = 256
    backend.clear_cache()
    return round(time.process_time() - t0, 1)


def write(stem: str, by_key: dict[tuple, list[dict]], n_seeds: int, set_names: list[str], dev_only: bool,
          meta: dict) -> None:
    """results/<stem>.json (seed means + every seed's rows) and .md (table vs cosine MiniLM)."""
    baseline = cosine_baseline()
    summary = []
    for (name, variant, tuned), group in by_key.items():
        if len(group) == n_seeds and (variant != "ref" or tuned == "tuned"):
            row = mean_sd(group)
            if variant == "ref":
                row["chosen_per_seed"] = [(r["ref_size"], r["alpha"]) for r in group]
            summary.append(row)
    table = render(baseline + summary, set_names, {"ft": "cosine MiniLM"})
    if dev_only:
        table = table.split("### TEST")[0]
        summary = [dict(r, test=None) for r in summary]
    per_seed = [{"key": [k[0], k[1], list(k[2]) if isinstance(k[2], tuple) else k[2]], "rows": g}
                for k, g in by_key.items()]
    path = RESULTS / f"{stem}.json"
    from benchmarks.common import machine

    path.write_text(json.dumps({**meta, "machine": meta.get("machine") or machine(), "rows": summary, "per_seed": per_seed}, indent=1) + "\n")
    path.with_suffix(".md").write_text(table + "\n")
    print(table)


def merge(stem: str, files: list[str]) -> None:
    """One result of several single-seed runs of one recipe (run as separate processes)."""
    by_key: dict[tuple, list[dict]] = {}
    metas = [json.loads((RESULTS / f).read_text()) for f in files]
    for meta in metas:
        for item in meta["per_seed"]:
            k = item["key"]
            by_key.setdefault((k[0], k[1], tuple(k[2]) if isinstance(k[2], list) else k[2]), []).extend(item["rows"])
    seeds = [s for m in metas for s in m["seeds"]]
    names = [n for n in SETS]
    write(stem, by_key, len(seeds), names, False,
          {"command": " ; ".join(m["command"] for m in metas), "args": metas[0]["args"], "seeds": seeds,
           "train_cpu_seconds": [t for m in metas for t in m["train_cpu_seconds"]],
           "seconds": [m["seconds"] for m in metas], "machine": metas[0].get("machine"), "merged_from": files})


def evaluate_seed(backend, sets, tag: str, dev_only: bool, by_key: dict[tuple, list[dict]], text_backend=None) -> None:
    """The protocol's rows of one trained model (bare labels and the template) appended to ``by_key``; texts by
    ``text_backend`` when given (``--side``)."""
    protocol, vectors = protocol_for(backend, sets, dev_only, text_backend)
    for name, template in ((tag, "{}"), (f"{tag} + template", TEMPLATE)):
        s = scorer(name, vectors, template)
        if dev_only:
            rows = [{"model": name, "encoder": "ft", "variant": "none", "dev": protocol.run(s, "none", "dev")}]
            rows[0]["test"] = rows[0]["dev"]  # placeholder: dev-only runs never report test
        else:
            rows = evaluate(protocol, [s], log=lambda m: None)
        for row in rows:
            tuned = "tuned" if row.get("tuned_on_dev") else (row.get("ref_size"), row.get("alpha"))
            by_key.setdefault((name, row["variant"], tuned), []).append(row)


def save_candidate(clf, peft_model, folder: Path) -> None:
    """The trained model as udtc saves it: a LoRA adapter on the base by reference (``--lora``), else a full folder."""
    if peft_model is None:
        clf.save_pretrained(str(folder))
        return
    folder.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(folder)  # adapter_config.json + adapter_model.safetensors, no base weights
    config = clf.config
    config.base_model = clf.base_model
    config.save(folder)


SHIPPED = Path(__file__).resolve().parent.parent / "udtc" / "models" / "cosine-minilm-tuned"
TEACHERS = {"minilm": "frozen MiniLM", "mpnet": 'all-mpnet-base-v2 with labels in "This text is about {}."',
            "both": 'the mean of frozen MiniLM and all-mpnet-base-v2 (labels in "This text is about {}.")',
            "mpnet-ens": "all-mpnet-base-v2 with each label the mean of its 6 templates (benchmarks.enrich.TEMPLATES)",
            "default": "the shipped default (TUNED_MINILM, the soup): a born-again student of it"}
WISE_CITATION = """@inproceedings{wortsman2022robust,
  title = {Robust fine-tuning of zero-shot models},
  author = {Wortsman, Mitchell and Ilharco, Gabriel and Kim, Jong Wook and Li, Mike and Kornblith, Simon and Roelofs, Rebecca and Lopes, Raphael Gontijo and Hajishirzi, Hannaneh and Farhadi, Ali and Namkoong, Hongseok and Schmidt, Ludwig},
  booktitle = {CVPR},
  note = {arXiv:2109.01903},
  year = {2022},
}"""
PROBE = ["The striker scored twice in the final", "Do you like science fiction?", "How far is the moon?"]


def check_shipped(evaluated, sets, tolerance: float) -> tuple[float, dict[str, float]]:
    """Load ``SHIPPED``, check that it embeds as the ``evaluated`` backend (max gap <= ``tolerance`` on ``PROBE``) and
    measure its throughput against cosine MiniLM (256 test texts, brown_genre's 15 labels): (gap, texts/s by model)."""
    from udtc import Classifier
    from udtc.defaults import COSINE_MINILM

    shipped = Classifier.from_pretrained(str(SHIPPED), device="cpu")
    gap = (embed_all(shipped.backend, PROBE) - embed_all(evaluated, PROBE)).abs().max().item()
    if gap > tolerance:
        raise RuntimeError(f"{SHIPPED} does not embed as the evaluated model (max gap {gap:.2e})")
    speed_texts = [t for s in sets for t in s.test.texts[:40]][:256]
    speed = throughput({"this model": shipped, "cosine MiniLM": Classifier.from_pretrained(COSINE_MINILM, device="cpu")},
                       speed_texts, sets[3].test.labels)
    return gap, speed


def save_scaled(clf, peft_model, folder: Path, wise: float) -> None:
    """The adapter as a zero-shot udtc model at WiSE-FT lambda ``wise``: LoRA's scale alpha/r times lambda gives
    theta0 + lambda (theta - theta0) exactly, the adapter being the whole of theta - theta0."""
    save_candidate(clf, peft_model, folder)
    path = folder / "adapter_config.json"
    adapter = json.loads(path.read_text())
    adapter["lora_alpha"] = adapter["lora_alpha"] * wise
    adapter["base_model_name_or_path"] = None  # peft writes the local path of the base; udtc_config.json names it
    path.write_text(json.dumps(adapter, indent=2) + "\n")


def write_card(folder: Path, wise: float, args, seed: int, cpu_s: float, row: dict, command: str,
               speed: dict[str, float]) -> None:
    """README.md of the shipped folder: recipe, command and this seed's protocol rows."""
    from udtc.backends import get_backend
    from udtc.card import ModelCard
    from udtc.defaults import COSINE_MINILM

    metrics = card_metrics(row, f"{speed['this model']} vs cosine MiniLM {speed['cosine MiniLM']} (256 texts, 1 thread)")
    card = ModelCard(
        backend="cosine", base_model=COSINE_MINILM, title="all-MiniLM-L6-v2 tuned for label sets (udtc)",
        data_statistics={"rows": "benchmarks.train_contrastive.training_rows: WordNet hypernym and topic-domain rows "
                                 f"({'of nouns, verbs, adjectives and adverbs' if args.all_pos else 'of nouns'}) + "
                                 "training_mixture() (BBC topics, tweet and movie polarity); no label name of an evaluation set",
                         "rows drawn": args.steps * args.batch, "retrain command": f"`{command}`",
                         "training time": f"{cpu_s:.0f} s CPU, 1 thread"},
        hyperparameters={"objective": "cross-entropy over in-batch label sets + KL to " + TEACHERS[args.teacher] + " + label-prior penalty",
                         "steps": args.steps, "batch": args.batch, "learning_rate": args.lr, "kl": args.kl,
                         "prior": args.prior, "lora_r": args.lora, "lora_alpha (x WiSE-FT lambda)": f"{args.lora} x {wise:g}",
                         "lora_target_modules": "query, key, value and dense of every encoder layer",
                         "max_length while training": args.max_length},
        metrics=metrics, citations=[c for c in (get_backend("cosine").citation, LORA_CITATION, WISE_CITATION) if c],
        load_name="package:udtc/models/cosine-minilm-tuned")
    (folder / "README.md").write_text(card.render(), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: few rows, steps, a tenth of each half")
    parser.add_argument("--dev-only", action="store_true", help="recipe choice: embed and report the DEV halves only")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--ref", type=int, default=16, help="unrelated texts per step for the prior penalty")
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--kl", type=float, default=1.0)
    parser.add_argument("--prior", type=float, default=1.0)
    parser.add_argument("--teacher", choices=sorted(TEACHERS), default="minilm",
                        help="the KL target: frozen cosine MiniLM (the student before training), all-mpnet-base-v2 "
                        "with its labels in \"This text is about {}.\" (distillation), or both (the mean of their scores); "
                        "mpnet-ens: all-mpnet-base-v2 with each label the mean of 6 templates (benchmarks.enrich.TEMPLATES); "
                        "default: the shipped default (a born-again student of the soup)")
    parser.add_argument("--wordnet", type=int, default=15000)
    parser.add_argument("--topics", type=int, default=0,
                        help="also this many WordNet topic-domain rows (what a text is about, not what it is)")
    parser.add_argument("--all-pos", action="store_true",
                        help="topic-domain rows of verbs, adjectives and adverbs too (6,040 rows; default nouns, 3,903)")
    parser.add_argument("--groups", type=int, default=0, metavar="L",
                        help="each step also scores one text per label of one coherent label set of up to L labels "
                        "(benchmarks.wordnet.label_set_groups): cross-entropy + the set's own label-prior penalty")
    parser.add_argument("--group-prior", type=float, default=1.0, help="weight of that set's label-prior penalty")
    parser.add_argument("--group-topics", type=float, default=0.5,
                        help="share of those steps whose label set is drawn from the topic domains (else one hypernym's children)")
    parser.add_argument("--label-templates", type=float, default=0.0, metavar="P",
                        help="frame every label of a share P of the steps in one of LABEL_TEMPLATES (teacher too)")
    parser.add_argument("--symmetric", type=float, default=0.0, metavar="W",
                        help="weight of the label->text cross-entropy (CLIP's symmetric loss): each gold label's "
                        "softmax over the batch's texts, its own texts the positives")
    parser.add_argument("--fields", type=int, default=0, metavar="N",
                        help="add N WordNet semantic-field rows (benchmarks.wordnet.field_rows: ~33 fields as one label set)")
    parser.add_argument("--lemmas", type=int, default=0, metavar="N",
                        help="add N WordNet reverse-dictionary rows (benchmarks.wordnet.lemma_rows: a definition -> its "
                             "word, against its antonyms and co-hyponyms)")
    parser.add_argument("--verbs", type=int, default=0, metavar="N",
                        help="add N WordNet verb hypernym rows (benchmarks.wordnet.verb_rows: what a text does, "
                             "\"provide with an index\" -> \"supply\")")
    parser.add_argument("--fortunes", type=int, default=0, metavar="N",
                        help="also N rows of quotations and jokes by topic (benchmarks.datasets 'fortune_topics')")
    parser.add_argument("--generated", type=int, nargs=3, default=[0, 0, 0], metavar=("N", "FILE_N", "TOP"),
                        help="add N LM-written rows (python -m benchmarks.generate --n FILE_N --seed S) whose label cosine "
                             "MiniLM ranks in its TOP of ~400 domains, repeated when fewer pass")
    parser.add_argument("--generated-seeds", type=int, nargs="+", default=[0, 1, 2, 3], help="which generate files")
    parser.add_argument("--concat", type=int, default=0, metavar="N",
                        help="add N longer rows: 3-6 texts of one gold label joined (concat_rows); use with --max-length 128")
    parser.add_argument("--scale", type=float, default=20.0,
                        help="scale of the cosine in the cross-entropy only (20: the backend's; higher weighs hard "
                             "negatives more)")
    parser.add_argument("--side", choices=["both", "label", "text"], default="both",
                        help="which side the adapter encodes; the other is frozen MiniLM (label: texts embed as cosine "
                             "MiniLM's, the adapter only moves where each label sits among them)")
    parser.add_argument("--cap", type=int, default=500, help="rows per training_mixture() source")
    parser.add_argument("--max-length", type=int, default=48, help="token limit while training")
    parser.add_argument("--tag", default="ctr")
    parser.add_argument("--save", action="store_true", help="save the first seed's model under results/candidates/<tag>_seed<S>/model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lora", type=int, default=0, metavar="R",
                        help="train a LoRA adapter of rank R on every linear layer instead of every weight")
    parser.add_argument("--wise", type=float, nargs="+", default=[1.0], metavar="LAMBDA",
                        help="also score the weights theta0 + LAMBDA (theta - theta0) (WiSE-FT, arXiv 2109.01903)")
    parser.add_argument("--ship", type=float, metavar="LAMBDA",
                        help="with --lora and one seed: write the adapter at WiSE-FT LAMBDA (one of --wise) and its card "
                        "to udtc/models/cosine-minilm-tuned, checked to score as the evaluated model")
    parser.add_argument("--out", help="results file stem (default contrastive_<tag>); e.g. one seed per process")
    parser.add_argument("--merge", nargs="+", metavar="FILE",
                        help="combine single-seed result files (results/<FILE>) into results/contrastive_<tag>.json")
    args = parser.parse_args(argv)
    if args.ship is not None and (not args.lora or len(args.seeds) != 1 or args.ship not in args.wise or args.dev_only):
        parser.error("--ship LAMBDA needs --lora, one seed, LAMBDA among --wise and the test halves (no --dev-only)")
    if args.label_templates and args.teacher != "minilm":
        parser.error("--label-templates works with --teacher minilm only (the cached teachers embed bare label names)")
    if args.side != "both" and (not args.lora or args.save or args.ship is not None):
        parser.error("--side label/text needs --lora and cannot --save or --ship (udtc loads one encoder for both sides)")
    if args.merge:
        merge(f"contrastive_{args.tag}", args.merge)
        return 0
    torch.set_num_threads(args.threads)
    from udtc import Classifier
    from udtc.defaults import COSINE_MINILM

    started = time.perf_counter()
    if args.quick:
        args.steps, args.wordnet, args.cap = 10, 500, 50
    data = training_rows(args.wordnet, args.cap, n_topics=args.topics, all_pos=args.all_pos,
                         n_fortunes=min(args.fortunes, 100) if args.quick else args.fortunes, n_fields=args.fields,
                         n_lemmas=min(args.lemmas, 100) if args.quick else args.lemmas,
                         n_verbs=min(args.verbs, 100) if args.quick else args.verbs,
                         generated=tuple(args.generated), generated_seeds=tuple(args.generated_seeds))
    data += concat_rows(data, min(args.concat, 100) if args.quick else args.concat)
    sets = label_sets(quick=args.quick)
    groups = group_rows(args.groups > 0)
    print(f"{len(data)} rows, {len({x for _, g, n in data for x in (g, *n)})} label strings "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    teacher = Classifier.from_pretrained(COSINE_MINILM, device="cpu").backend  # also theta0 of WiSE-FT
    target = frozen_teacher(teacher, args.max_length)
    if args.teacher == "default":  # born-again (Furlanello et al. 2018, arXiv:1805.04770): the soup teaches a new student
        from benchmarks.unseen import tuned_key
        from udtc.defaults import TUNED_MINILM

        target = cached_teacher(Classifier.from_pretrained(TUNED_MINILM, device="cpu").backend, tuned_key(), data, ("{}",),
                                args.max_length)
    elif args.teacher != "minilm":  # --quick: MiniLM stands in for MPNet (same code path, no 400 MB download)
        from benchmarks.enrich import TEMPLATES
        from benchmarks.models import fetch as fetch_model

        big = teacher if args.quick else Classifier.from_pretrained(str(fetch_model("all-mpnet-base-v2")), device="cpu").backend
        templates = TEMPLATES if args.teacher == "mpnet-ens" else (TEMPLATE,)
        distil = cached_teacher(big, "minilm" if args.quick else "mpnet", data, templates, args.max_length)
        # both: KL to the normalised geometric mean of the two teachers' distributions
        target = functools.partial(mean_scores, (target, distil)) if args.teacher == "both" else distil
    by_key: dict[tuple, list[dict]] = {}
    times = []
    for seed in args.seeds:
        clf = Classifier.from_pretrained(COSINE_MINILM, device="cpu")
        torch.manual_seed(seed)  # LoRA's A matrices: without this they depended on what the process ran before
        peft_model = add_lora(clf.backend, r=args.lora, alpha=args.lora, dropout=0.0,
                              target_modules=["query", "key", "value", "dense"]) if args.lora else None
        times.append(train(clf, target, data, args, seed, log=lambda m: print(m, flush=True), groups=groups,
                           peft_model=peft_model))
        if args.save and seed == args.seeds[0] and not args.quick:
            save_candidate(clf, peft_model, CANDIDATES / f"{args.tag}_seed{seed}" / "model")
        if args.ship is not None:
            save_scaled(clf, peft_model, SHIPPED, args.ship)
        if peft_model is not None:
            merge_lora(peft_model, clf.backend)
        start = {k: v.detach().clone() for k, v in teacher.model.state_dict().items()}
        tuned = {k: v.detach().clone() for k, v in clf.backend.model.state_dict().items()}
        for wise in args.wise:
            clf.backend.model.load_state_dict({k: start[k] + wise * (tuned[k] - start[k]) for k in tuned})
            clf.backend.clear_cache()
            tag = args.tag if wise == 1.0 else f"{args.tag} wise {wise:g}"
            t_eval = time.perf_counter()
            if args.side == "both":
                evaluate_seed(clf.backend, sets, tag, args.dev_only, by_key)
            else:  # the frozen side is the teacher's MiniLM, at the evaluation's token limit
                teacher.max_length = 256
                label_b, text_b = (clf.backend, teacher) if args.side == "label" else (teacher, clf.backend)
                evaluate_seed(label_b, sets, tag, args.dev_only, by_key, text_backend=text_b)
                teacher.max_length = args.max_length
            r0 = by_key[(tag, "none", (None, None))][-1]
            print(f"seed {seed} {tag}: train {times[-1]:.0f} s CPU, eval {time.perf_counter() - t_eval:.0f} s; dev "
                  f"unseen mean {r0['dev']['unseen mean']['macro_f1']:.1f} "
                  + " ".join(f"{n} {r0['dev'][n]['macro_f1']:.1f}" for n in SETS)
                  + ("" if args.dev_only else f"; test {r0['test']['unseen mean']['macro_f1']:.1f}"), flush=True)
            if wise == args.ship:
                gap, speed = check_shipped(clf.backend, sets, 1e-4)
                write_card(SHIPPED, wise, args, seed, times[-1], r0,
                           " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])]), speed)
                print(f"wrote {SHIPPED} (embeds as the evaluated model: max gap {gap:.1e})", flush=True)
    suffix = ("_quick" if args.quick else "") + ("_dev" if args.dev_only else "")
    command = " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])])
    write(args.out or f"contrastive_{args.tag}{suffix}", by_key, len(args.seeds), [s.name for s in sets], args.dev_only,
          {"command": command, "args": vars(args), "seeds": args.seeds, "train_cpu_seconds": times,
           "seconds": round(time.perf_counter() - started, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
