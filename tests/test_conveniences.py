"""Hierarchical labels, long texts split into pieces (``long_texts=``), per-text options (GLiClass prompts)."""

from __future__ import annotations

import pytest
import torch

from factories import WORDS
from udtc import Classifier, available_backends
from udtc.chunking import halve

LABELS = ["sports", "politics", "cooking"]


@pytest.fixture(scope="module")
def loaded(tiny_models):
    cache: dict[str, Classifier] = {}

    def get(name: str) -> Classifier:
        if name not in cache:
            cache[name] = Classifier.from_pretrained(tiny_models(name), backend=name, device="cpu")
        return cache[name]

    return get


def long_text(n_words: int, offset: int = 0) -> str:
    return " ".join(WORDS[(offset + i) % len(WORDS)] for i in range(n_words))


# ---------------------------------------------------------------------- hierarchical labels
def test_hierarchical_labels_are_read_as_leaf_with_parent(loaded):
    clf = loaded("cosine")
    tree = {"topic": ["sports", "politics"], "tone": {"good": "a happy text", "bad": "a sad text"}, "other": "news"}
    flat = {"topic.sports": "sports (topic)", "topic.politics": "politics (topic)", "tone.good": "a happy text (tone)",
            "tone.bad": "a sad text (tone)", "other": "news"}
    got, want = clf.classify("the team won the match", tree), clf.classify("the team won the match", flat)
    assert list(got.scores) == list(flat)
    assert got.scores == want.scores


def test_hierarchical_labels_nest_and_keep_the_order_given(loaded):
    pred = loaded("cosine").classify("rain in the city", {"a": {"b": ["rain", "city"]}, "c": ["film"]}, multi_label=True)
    assert list(pred.scores) == ["a.b.rain", "a.b.city", "c.film"]


@pytest.mark.parametrize("tree, error, match", [
    ({"topic": []}, ValueError, "label group 'topic' is empty"),
    ({"topic": ["sports", "sports"]}, ValueError, "duplicate label 'topic.sports'"),
    ({"topic": ["sports", 3]}, TypeError, "labels under 'topic' must be strings"),
    ({"topic": 3}, TypeError, "description of 'topic' must be a string .or, for hierarchical labels, a list or dict"),
    ({"topic": {"sports": " "}}, ValueError, "empty or whitespace only"),
])
def test_bad_hierarchies_name_the_problem(loaded, tree, error, match):
    with pytest.raises(error, match=match):
        loaded("cosine").classify("a text", tree)


# ---------------------------------------------------------------------- identifier labels
def test_label_words_reads_underscores_as_spaces_and_nothing_else():
    from udtc.inputs import label_words

    assert label_words("play_music") == "play music"
    assert label_words("  WEATHER__REPORT_ ") == "WEATHER REPORT"
    assert label_words("___") == "___"  # nothing but underscores: read as given
    for kept in ("PlayMusic", "YouTube", "sci-fi", "comp.sys.mac", "Sci/Tech", "good news"):
        assert label_words(kept) == kept  # CamelCase is also how brands are written; hyphens are in words


@pytest.mark.parametrize("name", available_backends())
def test_identifier_labels_are_read_as_words_and_keep_their_names(loaded, name):
    clf = loaded(name)
    names = ["sports_news", "rain_report", "good_news__match"]
    got = clf.classify("the team won the match", names)
    want = clf.classify("the team won the match", {"sports_news": "sports news", "rain_report": "rain report",
                                                    "good_news__match": "good news match"})
    assert list(got.scores) == names  # the caller's names are the keys
    assert got.scores == want.scores  # the model read the words
    tree = clf.classify("the team won the match", {"news_type": ["sports_news", "rain_report"]})
    flat = clf.classify("the team won the match", {"news_type.sports_news": "sports news (news type)",
                                                    "news_type.rain_report": "rain report (news type)"})
    assert tree.scores == flat.scores


def test_a_description_is_read_as_given_underscores_included(loaded):
    clf = loaded("cosine")
    as_words = clf.classify("the team won the match", ["sports_news", "rain_report"])
    as_given = clf.classify("the team won the match", {"sports_news": "sports_news", "rain_report": "rain_report"})
    assert as_given.scores != as_words.scores


def test_fine_tuning_reads_a_label_as_classify_does(loaded):
    from udtc.training.loop import label_texts

    backend = loaded("cosine").backend
    template = backend.default_template
    assert label_texts(backend, ["sports_news", "rain"], pairs=False) == [template.replace("{}", "sports news"),
                                                                           template.replace("{}", "rain")]
    assert label_texts(backend, ["sports_news"], pairs=True) == ["sports_news"]  # pair classes as named


# ---------------------------------------------------------------------- long texts
def test_halve_cuts_at_the_whitespace_nearest_the_middle():
    assert halve("aaa bbb ccc ddd") == ["aaa bbb", "ccc ddd"]
    assert halve("abcdef") == ["abc", "def"]  # no whitespace (e.g. Chinese): the middle character
    assert halve("a") == ["a"]


def test_long_text_modes_aggregate_the_logits_of_the_pieces(loaded):
    clf = loaded("cosine")
    n = clf.backend.max_length - 10  # each half fits, the whole does not
    left, right = long_text(n), long_text(n, offset=7)
    text = left + " " + right
    pieces = halve(text)
    assert all(not cut for cut in clf.backend.score(pieces, LABELS, multi_label=False, batch_size=8).truncated)
    logits = clf.backend.score(pieces, LABELS, multi_label=False, batch_size=8).logits  # (2, L)
    cut = clf.classify(text, LABELS)
    assert cut.truncated
    for mode, agg in (("max", logits.max(0).values), ("mean", logits.mean(0))):
        pred = clf.classify(text, LABELS, long_texts=mode)
        want = torch.softmax(agg, -1).tolist()
        assert not pred.truncated
        assert [pred.scores[x] for x in LABELS] == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("name", available_backends())
@pytest.mark.parametrize("mode", ["max", "mean"])
def test_every_backend_reads_a_long_text_whole_and_stays_invariant(loaded, name, mode):
    clf = loaded(name)
    texts = [long_text(700), "the team won the match"]
    short = clf.classify(texts[1], LABELS)
    preds = clf.classify(texts, LABELS, long_texts=mode)
    assert not any(p.truncated for p in preds)
    assert clf.classify(texts, LABELS)[0].truncated  # the default still truncates (and flags it)
    assert preds[1].scores == pytest.approx(short.scores, abs=1e-6)  # a text that fits costs nothing and changes nothing
    assert sum(preds[0].scores.values()) == pytest.approx(1.0, abs=1e-5)
    permuted = clf.classify(texts[0], LABELS[::-1], long_texts=mode)
    assert permuted.scores == pytest.approx(preds[0].scores, abs=1e-5)


def test_bad_long_texts_mode(loaded):
    with pytest.raises(ValueError, match="long_texts must be one of 'truncate', 'max', 'mean'"):
        loaded("cosine").classify("a text", LABELS, long_texts="chunk")


# ---------------------------------------------------------------------- per-text options
def test_gliclass_prompts_per_text_equal_one_call_per_text(loaded):
    clf = loaded("gliclass")
    texts = ["the team won the match", "the election vote in the city", "a recipe for the oven"]
    prompts = ["classify the topic", None, "what is this about"]
    together = clf.classify(texts, LABELS, prompt=prompts, batch_size=8)
    for text, prompt, pred in zip(texts, prompts, together):
        alone = clf.classify(text, LABELS, prompt=prompt)
        assert pred.scores == pytest.approx(alone.scores, abs=1e-5)
    shared = clf.classify(texts, LABELS, prompt="classify the topic")
    assert together[0].scores == pytest.approx(shared[0].scores, abs=1e-5)
    assert together[2].scores != pytest.approx(shared[2].scores, abs=1e-5)  # the prompt is read


def test_per_text_option_needs_one_value_per_text(loaded):
    with pytest.raises(ValueError, match="prompt has 1 values for 2 text"):
        loaded("gliclass").classify(["a text", "another"], LABELS, prompt=["only one"])


@pytest.mark.parametrize("name", ["cosine", "sce"])  # the backends that batch texts across label sets
def test_long_texts_with_a_label_set_per_text(loaded, name):
    """Pieces of long texts are scored against their own text's label set, in a batch of mixed (and narrower) sets."""
    clf = loaded(name)
    texts = [long_text(700), "the team won the match", long_text(500, offset=3)]
    sets = [LABELS, LABELS[:2], LABELS[1:3]]
    mixed = clf.classify(texts, sets, long_texts="max")
    for p, text, labels in zip(mixed, texts, sets):
        alone = clf.classify(text, labels, long_texts="max")
        assert list(p.scores) == labels and not p.truncated
        assert max(abs(p.scores[k] - alone.scores[k]) for k in labels) <= 1e-5, (name, p.scores, alone.scores)
