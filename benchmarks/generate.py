"""Texts written by a small instruction-tuned LM for WordNet's topic domains: natural sentences in many registers.

Every other row source of ``benchmarks.train_contrastive`` is either dictionary text (WordNet glosses) or a
few registry data sets with a handful of labels. This module asks SmolLM2-135M-Instruct (the registry's GGUF,
``benchmarks.models``) to write a short text in one of ``STYLES`` (a question, a text message, a headline, a
review, ...) about one of WordNet's topic domains ("chess", "banking", "American football": the label names of
``benchmarks.wordnet.topic_rows``, no evaluation label among them). The file keeps every raw generation;
``generated_rows`` keeps a text only if it does not name its topic (a text that says "chess" is a lexical match
cosine already makes) and does not talk about the request itself ("Here is a question ...": ``BOILERPLATE``),
as ``(text, domain, [1-4 other domains])``; ``relevant`` then drops the texts about something else (the small LM
often writes off topic): those whose domain frozen cosine MiniLM ranks outside its top k.

Synthetic training data from a generative LM is ZeroGen's route ("ZeroGen: Efficient Zero-shot Learning via
Dataset Generation", Ye et al. 2022, arXiv:2202.07922, the prompt of its section 3.1: a label-conditioned
description, sampled); here the labels are many and the student is trained across label sets.

    python -m benchmarks.generate --n 4000 --seed 0 --threads 1   # ~2.4 texts/s on 1 thread; ~28 min

The generations go to ``<data cache>/generated/<model>_<n>_s<seed>.jsonl`` (``benchmarks.datasets.data_root``, by
default ``~/.cache/udtc/data``; generated data is never committed; the command regenerates it: seeded sampling, one
torch thread).
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import re
import time
from pathlib import Path

STYLES = (
    "a question someone might ask a friend", "a text message to a friend", "a news headline", "a tweet",
    "a sentence from a textbook", "a short customer review", "a request to a helpful assistant",
    "a line of dialogue from a film", "an email subject line", "a sentence from a blog post",
)
#: texts that talk about the request instead of the topic, or refuse it
BOILERPLATE = re.compile(r"\b(here is|here's|as an ai|ai|chatbot|user|question|message|headline|tweet|sentence|text|"
                         r"topic|blog post|happy to|help you|assistant|assist|request)\b|[\[\]@#]", re.IGNORECASE)
#: a speaker or field name the LM puts before the text ("A: ...", "Subject: ...")
PREFIX = re.compile(r"^\s*(?:[A-Za-z]{1,12}\s?){1,2}:\s+")
MODEL = "smollm2-135m-instruct"


def cache_path(n: int, seed: int) -> Path:
    """Under the data cache every registry data set uses (``benchmarks.datasets.data_root``)."""
    from benchmarks.datasets import data_root

    return data_root() / "generated" / f"{MODEL}_{n}_s{seed}.jsonl"


def clean(raw: str, label: str) -> str | None:
    """The first line of a generation, unquoted, without a "Subject: " prefix, if it is a usable text about
    ``label`` that does not name it (neither in the prefix)."""
    from benchmarks.wordnet import _variants

    line = raw.strip().split("\n")[0]
    text = PREFIX.sub("", line).strip().strip("\"'“”").strip()
    words = re.findall(r"[a-z]+", text.lower())
    if len(words) < 3 or BOILERPLATE.search(text) or not text.isascii():
        return None
    lowered = f" {' '.join(re.findall(r'[a-z]+', line.lower()))} "
    name = " ".join(re.findall(r"[a-z]+", label.lower()))  # "rock 'n' roll" -> "rock n roll", as the text's words
    stems = _variants(name) | {w[:5] for w in name.split() if len(w) >= 5}
    if any(f" {s} " in lowered or (len(s) == 5 and f" {s}" in lowered) for s in stems):
        return None  # names its label
    return text


@functools.cache
def domains() -> list[str]:
    """WordNet's topic-domain names that ``topic_rows`` may use: no evaluation label, in either number."""
    from benchmarks.unseen import evaluation_labels
    from benchmarks.wordnet import _parts_of_speech, _variants

    excluded = {v for x in evaluation_labels() for v in _variants(x)}
    synsets, extra = _parts_of_speech(None, None)
    used = {t for s in (*synsets.values(), *extra) for t in s.topics if t in synsets}
    return sorted({synsets[t].name for t in used if not _variants(synsets[t].name) & excluded})


def generate(n: int, seed: int = 0, batch: int = 32, max_new_tokens: int = 32, log=print) -> list[dict]:
    """``n`` sampled generations ``{"label", "style", "raw"}`` (unfiltered: ``generated_rows`` filters). Deterministic
    for a seed on one machine (torch's sampler seeded per batch, one thread)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from benchmarks.models import fetch
    from udtc.gguf import gguf_to_folder

    folder = gguf_to_folder(fetch(MODEL))
    tok = AutoTokenizer.from_pretrained(folder)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    names = domains()
    rng = random.Random(f"generate:{seed}")
    rows: list[dict] = []
    start = time.time()
    while len(rows) < n:
        asks = [(rng.choice(names), rng.choice(STYLES)) for _ in range(min(batch, n - len(rows)))]
        prompts = [tok.apply_chat_template([{"role": "user", "content": f"Write {style} about {label}. "
                                             "Answer with the text only."}], tokenize=False, add_generation_prompt=True)
                   for label, style in asks]
        enc = tok(prompts, return_tensors="pt", padding=True)  # (batch, prompt tokens)
        torch.manual_seed(rng.randrange(2**31))
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=True, temperature=0.8, top_p=0.95,
                                 pad_token_id=tok.pad_token_id)  # (batch, prompt + new tokens)
        rows += [{"label": label, "style": style, "raw": tok.decode(ids, skip_special_tokens=True)}
                 for (label, style), ids in zip(asks, out[:, enc.input_ids.shape[1]:])]
        log(f"{len(rows)}/{n} ({time.time() - start:.0f} s)")
    return rows


def generated_rows(n: int, seed: int = 0) -> list[tuple[str, str, list[str]]]:
    """The usable rows (``clean``) of ``python -m benchmarks.generate --n N --seed S`` as ``(text, label,
    [1-4 other domains])``, negatives seeded."""
    path = cache_path(n, seed)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python -m benchmarks.generate --n {n} --seed {seed}` first")
    names = domains()
    rng = random.Random(f"generated-negatives:{seed}")
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        text = clean(row["raw"], row["label"])
        if text is not None:
            others = [x for x in names if x != row["label"]]
            out.append((text, row["label"], rng.sample(others, min(len(others), rng.randint(1, 4)))))
    return out


def relevant(rows: list[tuple[str, str, list[str]]], top: int, batch_size: int = 64) -> list[tuple[str, str, list[str]]]:
    """The rows whose label is among the ``top`` of all ``domains()`` for the frozen all-MiniLM-L6-v2 (cosine): the
    small LM often writes about something else than it was asked; this drops those texts."""
    import torch

    from benchmarks.unseen import embed_all
    from udtc import Classifier
    from udtc.defaults import COSINE_MINILM

    if top <= 0 or not rows:
        return rows
    backend = Classifier.from_pretrained(COSINE_MINILM, device="cpu").backend
    names = domains()
    labels = torch.nn.functional.normalize(embed_all(backend, names), dim=-1)  # (domains, D)
    texts = torch.nn.functional.normalize(embed_all(backend, [t for t, _, _ in rows], batch_size), dim=-1)  # (rows, D)
    scores = texts @ labels.T  # (rows, domains)
    index = {x: i for i, x in enumerate(names)}
    gold = torch.tensor([index[y] for _, y, _ in rows])
    rank = (scores > scores[torch.arange(len(rows)), gold][:, None]).sum(1)  # (rows,) labels scored above the gold
    return [r for r, k in zip(rows, rank.tolist()) if k < top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4000, help="generations (the filter keeps part of them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from udtc.atomic import AtomicFile

    path = cache_path(args.n, args.seed)
    out = AtomicFile(path)  # an unwritable cache fails now, not after the generation
    try:
        rows = generate(args.n, args.seed)
        with out.open() as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    except BaseException:
        out.discard()
        raise
    out.commit()
    print(f"{len(rows)} rows -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
