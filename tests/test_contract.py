"""The backend contract, generated from the registry: every backend, including later ones."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
import torch
from factories import FACTORIES, WORDS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import udtc
from udtc import Classifier
from udtc.backends import get_backend
from udtc.backends.base import BATCH_TOLERANCE, Trainable
from udtc.config import CONFIG_NAME

BACKENDS = udtc.available_backends()
TRAINABLE = [name for name in BACKENDS if issubclass(get_backend(name), Trainable)]
TEXTS = ["the team won the match with a late goal", "rain and wind in the city", "a new phone from the market"]


@pytest.fixture(scope="module")
def classifiers(tiny_models):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = Classifier.from_pretrained(tiny_models(name), backend=name, device="cpu")
        return cache[name]

    return get


def test_every_backend_has_a_tiny_factory():
    missing = sorted(set(BACKENDS) - set(FACTORIES))
    assert not missing, f"add a tiny checkpoint factory to tests/factories.py for: {missing}"


def test_backend_is_detected_from_its_folder(tiny_models):
    for name in BACKENDS:
        clf = Classifier.from_pretrained(tiny_models(name), device="cpu")
        assert clf.backend_name == name


label_sets = st.lists(st.sampled_from(WORDS), min_size=2, max_size=7, unique=True)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("multi_label", [False, True])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(labels=label_sets, data=st.data())
def test_label_set_invariance(classifiers, name, multi_label, labels, data):
    """Permuting a label set permutes its scores and changes nothing else."""
    clf = classifiers(name)
    permuted = data.draw(st.permutations(labels))
    a = clf.classify(TEXTS, labels, multi_label=multi_label)
    b = clf.classify(TEXTS, permuted, multi_label=multi_label)
    for pa, pb in zip(a, b):
        assert list(pb.scores) == list(permuted)
        for label in labels:
            assert abs(pa.scores[label] - pb.scores[label]) <= 1e-5, (name, label, pa.scores, pb.scores)
        assert pa.label == pb.label or pa.scores[pa.label] == pytest.approx(pb.scores[pb.label], abs=1e-6)


@pytest.mark.parametrize("name", BACKENDS)
def test_batch_composition_does_not_change_scores(classifiers, name):
    clf = classifiers(name)
    labels = ["sports", "weather", "technology"]
    together = clf.classify(TEXTS, labels, batch_size=3)
    alone = [clf.classify(t, labels) for t in TEXTS]
    for x, y in zip(together, alone):
        for label in labels:
            assert x.scores[label] == pytest.approx(y.scores[label], abs=1e-5)


@pytest.mark.parametrize("name", BACKENDS)
def test_batch_size_changes_scores_by_at_most_the_documented_tolerance(classifiers, name):
    """The contract (udtc/backends/base.py): 1e-5 across batch sizes; the same batch size is exact."""
    clf = classifiers(name)
    texts = [t + " " + " ".join(["word"] * n) for n, t in enumerate(TEXTS * 3)]  # lengths differ: padding differs
    labels = ["sports", "weather", "technology"]
    ref = clf.classify(texts, labels, batch_size=32, multi_label=True)
    for size in (1, 2, 5):
        for a, b in zip(ref, clf.classify(texts, labels, batch_size=size, multi_label=True)):
            assert max(abs(a.scores[k] - b.scores[k]) for k in labels) <= 1e-5, (name, size)
    again = clf.classify(texts, labels, batch_size=32, multi_label=True)
    assert [p.scores for p in again] == [p.scores for p in ref]


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("multi_label", [False, True])
def test_mixed_label_sets_score_as_each_set_alone(classifiers, name, multi_label):
    """``score_each`` (one batch, each text its own label set; cosine/SCE in one pass over the texts) gives what
    ``score`` gives each label set alone, within the batching tolerance; padding columns are -inf."""
    clf = classifiers(name)
    sets = [["sports", "weather", "technology"], ["politics", "food"], ["sports", "music", "film", "travel"]]
    texts = TEXTS * 2
    label_sets = [sets[i % len(sets)] for i in range(len(texts))]
    with torch.inference_mode():
        mixed = clf.backend.score_each(texts, label_sets, multi_label=multi_label, batch_size=32)
        assert mixed.logits.shape == (len(texts), 4)
        for i, (text, labels) in enumerate(zip(texts, label_sets)):
            alone = clf.backend.score([text], labels, multi_label=multi_label, batch_size=32)
            torch.testing.assert_close(mixed.logits[i, : len(labels)], alone.logits[0], rtol=0, atol=1e-4)
            assert torch.isneginf(mixed.logits[i, len(labels) :]).all()
    merged = clf.classify(texts, label_sets, multi_label=multi_label)
    for p, text, labels in zip(merged, texts, label_sets):
        q = clf.classify(text, labels, multi_label=multi_label)
        assert list(p.scores) == labels
        assert max(abs(p.scores[k] - q.scores[k]) for k in labels) <= BATCH_TOLERANCE, (name, p.scores, q.scores)


def test_a_mixed_label_set_batch_is_one_pass_over_the_texts(classifiers, monkeypatch):
    """cosine reads the texts of a batch once whatever their label sets (udtc serve's rounds share it)."""
    clf = classifiers("cosine")
    calls = []
    embed = clf.backend.embed
    monkeypatch.setattr(clf.backend, "embed", lambda texts, batch_size=32: calls.append(len(texts)) or embed(texts, batch_size))
    sets = [["one-pass a", "one-pass b"], ["one-pass c", "one-pass d", "one-pass e"]]  # labels no other test embeds
    clf.classify(TEXTS * 4, sets * 6, batch_size=32)
    assert calls == [12, 5]  # the 12 texts in one pass, then the 5 distinct labels in one


@pytest.mark.parametrize("name", BACKENDS)
def test_bfloat16_weights_classify_close_to_float32(classifiers, tiny_models, name):
    labels = ["sports", "weather", "technology"]
    ref = classifiers(name).classify(TEXTS, labels, multi_label=True)
    half = Classifier.from_pretrained(tiny_models(name), backend=name, device="cpu", dtype="bfloat16")
    for a, b in zip(ref, half.classify(TEXTS, labels, multi_label=True)):
        for label in labels:  # bfloat16 keeps ~3 significant digits
            assert b.scores[label] == pytest.approx(a.scores[label], abs=0.05), (name, a.scores, b.scores)


@pytest.mark.parametrize("name", BACKENDS)
def test_round_trip(classifiers, name, tmp_path):
    """classify, save, reload: equal scores and the exact config."""
    clf = classifiers(name)
    labels = ["sports", "weather", "technology", "food"]
    before = clf.classify(TEXTS, labels)
    before_multi = clf.classify(TEXTS, labels, multi_label=True)
    folder = clf.save_pretrained(tmp_path / "saved")
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt")) and not list(folder.rglob("*.pkl"))
    assert (folder / "README.md").exists()
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert config["backend"] == name and config["udtc_version"] == udtc.__version__
    again = Classifier.from_pretrained(folder, device="cpu")
    assert again.backend_name == name
    assert again.config == clf.config
    for x, y in zip(before + before_multi, again.classify(TEXTS, labels) + again.classify(TEXTS, labels, multi_label=True)):
        assert x.labels == y.labels
        for label in labels:
            assert x.scores[label] == pytest.approx(y.scores[label], abs=1e-5)


@pytest.mark.parametrize("name", BACKENDS)
def test_special_tokens_in_labels_and_texts_are_plain_text(classifiers, name):
    clf = classifiers(name)
    labels = ["[SEP]", "<<LABEL>>", "sports"]
    text = "the match [SEP] [CLS] <<LABEL>> goal"
    pred = clf.classify(text, labels)
    assert set(pred.scores) == set(labels)
    assert abs(sum(pred.scores.values()) - 1) < 1e-5
    assert all(torch.isfinite(torch.tensor(list(pred.scores.values()))))


@pytest.mark.parametrize("name", [n for n in BACKENDS
                                  if "max_length" in {f.name for f in fields(get_backend(n).options_class)}])
@pytest.mark.parametrize("bad", [-5, 0, 2.5, True, "128"])
def test_a_bad_max_length_is_a_clear_error_in_every_backend(tiny_models, name, bad):
    with pytest.raises(ValueError, match=r"max_length must be a positive integer"):
        Classifier.from_pretrained(tiny_models(name), backend=name, device="cpu", max_length=bad)


@pytest.mark.parametrize("name", BACKENDS)
def test_a_long_text_prints_no_tokenizer_warning(tiny_models, name, capfd):
    """udtc cuts or splits long texts itself and says so in one line; transformers' "Token indices sequence
    length is longer than the specified maximum" (emitted once per tokenizer) must not reach the user."""
    clf = Classifier.from_pretrained(tiny_models(name), backend=name, device="cpu")  # a fresh tokenizer
    capfd.readouterr()
    for long_texts in ("truncate", "max"):
        clf.classify("word " * 3000, ["sports", "rain"], long_texts=long_texts)
    assert "Token indices" not in capfd.readouterr().err


@pytest.mark.parametrize("name", TRAINABLE)
@pytest.mark.parametrize("multi_label", [False, True])
def test_training_logits_are_the_score_logits(classifiers, name, multi_label):
    """What fine-tuning trains is what classify scores: the same logits, with autograd."""
    backend = classifiers(name).backend
    labels = [backend.default_template.replace("{}", x) for x in ("sports", "weather", "technology", "food")]
    try:
        trained = backend.training_logits(TEXTS, labels, multi_label=multi_label)
        with torch.inference_mode():
            scored = backend.score(TEXTS, labels, multi_label=multi_label, batch_size=32).logits
    finally:
        backend.clear_cache()
    assert trained.requires_grad and trained.shape == (len(TEXTS), len(labels))
    torch.testing.assert_close(trained.detach().float().cpu(), scored.float(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", TRAINABLE)
def test_every_listed_method_has_something_to_train(tiny_models, name):
    """A backend lists only methods it can train: "head" needs head modules once training is prepared."""
    backend = Classifier.from_pretrained(tiny_models(name), backend=name, device="cpu").backend
    from udtc.training.args import METHODS

    assert backend.supported_methods <= set(METHODS)
    if "head" in backend.supported_methods:
        backend.prepare_training(["sports", "weather"], multi_label=False, method="head")
        assert backend.head_modules, f"{name} lists method='head' but has no head modules"


@pytest.mark.integration
def test_batch_size_tolerance_holds_on_real_minilm(minilm_path):
    """Real weights, where padding does change float32 sums (2.6e-6 was measured): within the 1e-5 contract."""
    clf = Classifier.from_pretrained(minilm_path, backend="cosine", device="cpu")
    texts = [t + " " + " ".join(["word"] * (7 * n)) for n, t in enumerate(TEXTS * 4)]
    labels = ["sports", "weather", "technology", "politics"]
    ref = clf.classify(texts, labels, batch_size=32)
    worst = max(abs(a.scores[k] - b.scores[k]) for size in (1, 3)
                for a, b in zip(ref, clf.classify(texts, labels, batch_size=size)) for k in labels)
    assert worst <= 1e-5
