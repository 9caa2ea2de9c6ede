"""``Classifier.classify_iter``: streaming predictions in input order with bounded memory."""

from __future__ import annotations

import itertools

import pytest

from udtc import Classifier

WORDS = ["the team won the match", "rain in the city", "a recipe for the oven", "the election", "a song", "hello"]


@pytest.fixture(scope="module")
def clf(tiny_models):
    return Classifier.from_pretrained(tiny_models("cosine"))


def test_yields_what_classify_returns_in_input_order(clf):
    texts = [f"{WORDS[i % len(WORDS)]} {'news ' * (i % 5)}".strip() for i in range(203)]
    labels = {"sports": "a sports match", "weather": "rain", "food": "a recipe"}
    streamed = list(clf.classify_iter(iter(texts), labels, chunk_size=16, multi_label=True, top_k=2))
    expected = clf.classify(texts, labels, multi_label=True, top_k=2)
    assert [(p.text, p.labels) for p in streamed] == [(p.text, p.labels) for p in expected]
    for got, want in zip(streamed, expected):  # other chunks, other padding: equal up to float rounding
        assert list(got.scores) == list(want.scores)
        assert list(got.scores.values()) == pytest.approx(list(want.scores.values()), abs=1e-5)


def test_pulls_at_most_one_chunk_ahead(clf):
    pulled = 0

    def endless():
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield WORDS[i % len(WORDS)]

    stream = clf.classify_iter(endless(), ["sports", "weather"], chunk_size=8)
    first = list(itertools.islice(stream, 10))  # an endless input: only what was asked for is read
    assert [p.text for p in first] == [WORDS[i % len(WORDS)] for i in range(10)]
    assert pulled == 16


def test_bad_arguments_are_clear_errors(clf):
    with pytest.raises(TypeError, match="iterable of texts"):
        next(clf.classify_iter("one text", ["a", "b"]))
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        next(clf.classify_iter(["x"], ["a", "b"], chunk_size=0))
    with pytest.raises(ValueError, match="labels is empty"):
        next(clf.classify_iter(["x"], []))
    assert list(clf.classify_iter([], ["a", "b"])) == []
