"""The nli backend against transformers' ``pipeline("zero-shot-classification")`` on tiny random models."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from logcheck import expect_log
import torch
from factories import WORDS, tiny_nli

from udtc import Classifier
from udtc.backends.nli.backend import NLIBackend, _class_ids

LABEL_MAPS = {
    "3way": {"entailment": 0, "neutral": 1, "contradiction": 2},
    "3way-reversed-upper": {"CONTRADICTION": 0, "NEUTRAL": 1, "ENTAILMENT": 2},  # roberta-large-mnli style
    "3way-entailment-middle": {"neutral": 0, "entailment": 1, "contradiction": 2},  # pipeline contrasts with id 0
    "2way": {"entailment": 0, "not_entailment": 1},
    "2way-reversed": {"not_entailment": 0, "entailment": 1},
}
TEXTS = [
    "the team won the match with a late goal",
    "rain",
    "a new phone from the market, good news for the bank " * 3,
    " ".join(WORDS) + " " + " ".join(reversed(WORDS)),  # far longer than the 128-token limit
]
LABELS = ["sports", "weather", "technology news", "food", "politics and the election in the city"]


def _pipeline(clf: Classifier):
    from transformers import pipeline

    return pipeline("zero-shot-classification", model=clf.backend.model, tokenizer=clf.backend.tokenizer, device="cpu")


def _reference(pipe, text: str, labels: list[str], **kwargs) -> dict[str, float]:
    out = pipe(text, candidate_labels=labels, **kwargs)
    return dict(zip(out["labels"], out["scores"]))


def _classify(clf: Classifier, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*truncated.*")
        return clf.classify(*args, progress=False, **kwargs)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("nli")
    cache: dict[str, tuple[Classifier, object]] = {}

    def get(kind: str):
        if kind not in cache:
            folder = tiny_roberta_nli(root / kind) if kind == "roberta" else tiny_nli(root / kind, label2id=LABEL_MAPS[kind])
            clf = Classifier.from_pretrained(folder, backend="nli", device="cpu")
            cache[kind] = (clf, _pipeline(clf))
        return cache[kind]

    return get


def tiny_roberta_nli(folder: Path) -> Path:
    """A random RoBERTa NLI model with a byte-level BPE tokenizer: <s> A </s></s> B </s>, no token types."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForSequenceClassification, RobertaTokenizer

    folder.mkdir(parents=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([" ".join(WORDS)] * 3, vocab_size=400, min_frequency=1, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(folder))
    RobertaTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"),
                     model_max_length=128).save_pretrained(folder)
    label2id = LABEL_MAPS["3way-reversed-upper"]
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=400, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                           max_position_embeddings=130, pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1,
                           initializer_range=0.2, label2id=label2id, id2label={i: n for n, i in label2id.items()})
    RobertaForSequenceClassification(config).save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------- conformance
@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("kind", [*LABEL_MAPS, "roberta"])
def test_scores_equal_the_pipeline(models, kind, multi_label):
    clf, pipe = models(kind)
    preds = _classify(clf, TEXTS, LABELS, multi_label=multi_label, batch_size=4)
    for text, pred in zip(TEXTS, preds):
        ref = _reference(pipe, text, LABELS, multi_label=multi_label)
        for label in LABELS:
            assert pred.scores[label] == pytest.approx(ref[label], abs=1e-5), (kind, label, pred.scores, ref)


@pytest.mark.parametrize("kind", ["3way", "2way-reversed"])
def test_per_text_label_sets_equal_one_pipeline_call_per_text(models, kind):
    clf, pipe = models(kind)
    sets = [["sports", "weather"], ["food", "music", "science", "rain"], ["sports", "weather"], ["good", "bad"]]
    for multi_label in (False, True):
        preds = _classify(clf, TEXTS, sets, multi_label=multi_label, batch_size=3)
        for text, labels, pred in zip(TEXTS, sets, preds):
            ref = _reference(pipe, text, labels, multi_label=multi_label)
            assert list(pred.scores) == labels
            for label in labels:
                assert pred.scores[label] == pytest.approx(ref[label], abs=1e-5)


def test_template_and_descriptions_reach_the_hypothesis(models):
    clf, pipe = models("3way")
    assert NLIBackend.default_template == "This example is {}."  # the pipeline's default
    labels = {"sport": "athletes and games", "kitchen": "recipes and the oven", "money": "the market"}
    for multi_label in (False, True):
        pred = _classify(clf, TEXTS[0], labels, template="It is about {}.", multi_label=multi_label)
        ref = _reference(pipe, TEXTS[0], list(labels.values()), hypothesis_template="It is about {}.",
                         multi_label=multi_label)
        for name, description in labels.items():
            assert pred.scores[name] == pytest.approx(ref[description], abs=1e-5)
    bare = _classify(clf, TEXTS[0], labels, template="{}")
    ref = _reference(pipe, TEXTS[0], list(labels.values()), hypothesis_template="{}")
    assert all(bare.scores[n] == pytest.approx(ref[d], abs=1e-5) for n, d in labels.items())


@pytest.mark.parametrize("kind", ["3way", "roberta"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_pair_ids_equal_the_tokenizers_pair_encoding(models, kind, side):
    clf, _ = models(kind)
    backend: NLIBackend = clf.backend
    tok = backend.tokenizer
    hypotheses = [f"This example is {x}." for x in LABELS]
    old_side, tok.truncation_side = tok.truncation_side, side
    try:
        batches, truncated = backend.pair_batches(TEXTS, hypotheses, batch_size=3)
        assert truncated == [False, False, False, True]
        seen = set()
        for pairs, batch in batches:
            assert len(pairs) <= 3
            for row, k in enumerate(pairs):
                text, hyp = TEXTS[k // len(hypotheses)], hypotheses[k % len(hypotheses)]
                ref = tok(text, hyp, truncation="only_first", max_length=backend.max_length, return_token_type_ids=True)
                n = int(batch["attention_mask"][row].sum())
                assert batch["input_ids"][row, :n].tolist() == ref["input_ids"]
                assert (batch["input_ids"][row, n:] == backend.pad_id).all()
                if "token_type_ids" in batch:
                    assert batch["token_type_ids"][row, :n].tolist() == ref["token_type_ids"]
                seen.add(k)
        assert seen == set(range(len(TEXTS) * len(hypotheses)))
    finally:
        tok.truncation_side = old_side


def test_long_premise_is_truncated_and_hypothesis_kept_whole(models):
    clf, pipe = models("3way")
    backend: NLIBackend = clf.backend
    tok = backend.tokenizer
    hypothesis = "This example is politics and the election in the city."
    batches, truncated = backend.pair_batches([TEXTS[3]], [hypothesis], batch_size=1)
    assert truncated == [True]
    (_, batch), = list(batches)
    ids = batch["input_ids"][0].tolist()
    hyp_ids = tok(hypothesis, add_special_tokens=False)["input_ids"]
    assert len(ids) == backend.max_length == 128
    assert ids[-len(hyp_ids) - 1 : -1] == hyp_ids and ids[-1] == tok.sep_token_id
    with expect_log("truncated"):
        pred = clf.classify(TEXTS[3], LABELS, progress=False)
    assert pred.truncated
    assert not _classify(clf, TEXTS[0], LABELS).truncated
    ref = _reference(pipe, TEXTS[3], LABELS)
    assert all(pred.scores[x] == pytest.approx(ref[x], abs=1e-5) for x in LABELS)


def test_500_labels_stay_within_batch_size_pairs(models):
    clf, _ = models("3way")
    labels = [f"{a} {b}" for a in WORDS[:25] for b in WORDS[25:45]]  # 500 distinct labels
    assert len(set(labels)) == 500
    shapes = []
    handle = clf.backend.model.register_forward_pre_hook(lambda m, args, kw: shapes.append(tuple(kw["input_ids"].shape)),
                                                         with_kwargs=True)
    try:
        preds = _classify(clf, TEXTS[:2], labels, multi_label=True, batch_size=16)
    finally:
        handle.remove()
    assert all(b <= 16 for b, _ in shapes)
    assert sum(b for b, _ in shapes) == 2 * 500
    widths = [t for _, t in shapes]
    assert widths == sorted(widths, reverse=True)  # pairs ordered by length across texts and labels
    again = _classify(clf, TEXTS[:2], labels, multi_label=True, batch_size=128)
    for x, y in zip(preds, again):
        assert max(abs(x.scores[k] - y.scores[k]) for k in labels) < 1e-5


# ---------------------------------------------------------------------- loading and errors
def test_detection(tmp_path, models):
    clf, _ = models("2way")
    folder = clf.save_pretrained(tmp_path / "saved")
    assert NLIBackend.detect(folder)
    (folder / "udtc_config.json").unlink()
    assert Classifier.from_pretrained(folder, device="cpu").backend_name == "nli"


def test_model_without_entailment_label_is_a_clear_error(tmp_path):
    folder = tiny_nli(tmp_path / "sentiment", label2id={"positive": 0, "negative": 1})
    assert not NLIBackend.detect(folder)
    with pytest.raises(ValueError, match=r"no entailment label.*positive.*negative"):
        Classifier.from_pretrained(folder, backend="nli", device="cpu")


@pytest.mark.parametrize(("label2id", "expected"), [
    ({"entailment": 0, "neutral": 1, "contradiction": 2}, (0, 2)),
    ({"contradiction": 0, "neutral": 1, "entailment": 2}, (2, 0)),
    ({"neutral": 0, "entailment": 1, "contradiction": 2}, (1, 0)),  # what the pipeline does
    ({"entailment": 0, "not_entailment": 1}, (0, 1)),
    ({"not_entailment": 0, "Entailment": 1}, (1, 0)),
])
def test_entailment_and_contrast_class_ids(label2id, expected):
    assert _class_ids(label2id, len(label2id)) == expected


def test_options(tmp_path, models):
    clf, _ = models("3way")
    folder = clf.save_pretrained(tmp_path / "saved")
    with pytest.raises(TypeError, match="max_length"):
        Classifier.from_pretrained(folder, device="cpu", scale=3)
    with pytest.raises(ValueError, match="max_length"):
        Classifier.from_pretrained(folder, device="cpu", max_length=0)
    short = Classifier.from_pretrained(folder, device="cpu", max_length=24)
    assert short.config.options == {"max_length": 24}
    assert _classify(short, TEXTS[2], LABELS).truncated
    with pytest.raises(ValueError, match="shorten it"):
        short.classify("rain", [" ".join(WORDS[:30]), "sports"])
