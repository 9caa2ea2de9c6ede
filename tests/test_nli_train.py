"""Training NLI cross-encoders with ``udtc.finetune``: few-shot on labelled texts, and NLI training on
premise/hypothesis pairs from an NLI model or a plain encoder (a new head). Tiny random models only."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from factories import ROWS, TRAIN, bert_config, tiny_encoder, tiny_nli, write_tokenizer

import udtc
from udtc import Classifier
from udtc.backends import detect_backend
from udtc.backends.nli.backend import NLIBackend
from udtc.cli import main

LABELS = list(TRAIN)
PREMISES = ["the team won the match", "rain in the city", "a recipe for the oven", "a song by the band"]
HYPOTHESES = {"entailment": "a great and happy answer", "neutral": "is this a question",
              "contradiction": "a terrible sad report"}
PAIRS = [{"premise": p, "hypothesis": h, "label": y} for p in PREMISES for y, h in HYPOTHESES.items()]  # 12 rows
PAIR_ARGS = {"text_column": "premise", "hypothesis_column": "hypothesis", "progress": False}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def nli(tmp_path_factory):
    return tiny_nli(tmp_path_factory.mktemp("nli") / "model")


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return tiny_encoder(tmp_path_factory.mktemp("encoder") / "model")


def _pipeline(folder):
    from transformers import pipeline

    return pipeline("zero-shot-classification", model=str(folder), device="cpu")


def _accuracy(clf) -> float:
    preds = clf.classify([r["text"] for r in ROWS], LABELS, progress=False)
    return sum(p.label == r["label"] for p, r in zip(preds, ROWS)) / len(ROWS)


def _pair_accuracy(clf) -> float:
    logits = clf.backend.pair_logits([r["premise"] for r in PAIRS], [r["hypothesis"] for r in PAIRS])
    return sum(clf.backend.classes[i] == r["label"] for i, r in zip(logits.argmax(-1).tolist(), PAIRS)) / len(PAIRS)


def _assert_like_the_pipeline(clf, folder, texts=("the team won the match", "rain and wind"), labels=LABELS):
    pipe = _pipeline(folder)
    for multi_label in (False, True):
        for text, pred in zip(texts, clf.classify(list(texts), labels, multi_label=multi_label, progress=False)):
            out = pipe(text, candidate_labels=labels, multi_label=multi_label)
            for label, score in zip(out["labels"], out["scores"]):
                assert pred.scores[label] == pytest.approx(score, abs=1e-5), (multi_label, label)


# ---------------------------------------------------------------------------------------------- few-shot
@pytest.mark.parametrize(("method", "learning_rate"), [("full", 1e-3), ("lora", 1e-2)])
def test_few_shot_finetune_learns_and_saves_a_pipeline_compatible_model(nli, tmp_path, method, learning_rate):
    before = _accuracy(Classifier.from_pretrained(nli, device="cpu"))
    out = tmp_path / method
    clf, metrics = udtc.finetune(nli, ROWS, method=method, epochs=4, learning_rate=learning_rate, batch_size=6,
                                 lora_dropout=0.0, progress=False, output_dir=out)
    losses = [h["train_loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0] - 0.05, losses
    assert _accuracy(clf) > before + 0.2, (before, _accuracy(clf))
    assert clf.labels == LABELS and clf.classify("rain in the city", progress=False).label in LABELS
    again = Classifier.from_pretrained(out, device="cpu")
    assert again.backend_name == "nli" and again.labels == LABELS
    texts = [r["text"] for r in ROWS]
    for a, b in zip(clf.classify(texts, progress=False), again.classify(texts, progress=False)):
        assert max(abs(a.scores[k] - b.scores[k]) for k in LABELS) < 1e-5
    if method == "lora":
        assert (out / "adapter_config.json").exists() and not (out / "model.safetensors").exists()
        adapter = json.loads((out / "adapter_config.json").read_text())
        assert set(adapter["modules_to_save"]) == {"classifier", "bert.pooler"}  # the NLI head trains in full
        merged = tmp_path / "merged"
        again.save_pretrained(merged)  # full weights of the merged model
        _assert_like_the_pipeline(again, merged)
    else:
        _assert_like_the_pipeline(again, out)  # a normal sequence-classification checkpoint


def test_multi_label_few_shot(nli, tmp_path):
    rows = [{"text": r["text"], "label": r["label"] + ("|food" if "good" in r["text"] else "")} for r in ROWS]
    _, metrics = udtc.finetune(nli, rows, label_separator="|", method="full", epochs=3, learning_rate=1e-3,
                                 batch_size=6, progress=False, output_dir=tmp_path / "multi")
    losses = [h["train_loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0], losses
    again = Classifier.from_pretrained(tmp_path / "multi", device="cpu")
    assert sorted(again.labels) == sorted(LABELS)
    _assert_like_the_pipeline(again, tmp_path / "multi")  # multi-label scores: softmax([c, e])[1] per label


# ---------------------------------------------------------------------------------------------- pairs
def test_pair_logits_equal_the_tokenizers_own_pair_encoding(nli):
    backend = Classifier.from_pretrained(nli, device="cpu").backend
    premises, hypotheses = [r["premise"] for r in PAIRS], [r["hypothesis"] for r in PAIRS]
    with torch.no_grad():
        ref = backend.model(**backend.tokenizer(premises, hypotheses, padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(backend.pair_logits(premises, hypotheses, batch_size=5), ref, atol=1e-5, rtol=0)
    grad = backend.training_logits(list(zip(premises, hypotheses)), ["contradiction", "entailment"],
                                   multi_label=False)  # pair classes, as named (the loop applies no template to them)
    assert grad.requires_grad
    torch.testing.assert_close(grad.detach(), ref[:, [2, 0]], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="one hypothesis each"):
        backend.pair_logits(premises, hypotheses[:2])


def test_pair_training_from_a_plain_encoder_makes_a_pipeline_compatible_nli_model(encoder, tmp_path):
    out = tmp_path / "pairs"
    clf, metrics = udtc.finetune(encoder, PAIRS, epochs=30, batch_size=12, warmup_ratio=0.0, learning_rate=3e-3,
                                 output_dir=out, **PAIR_ARGS)
    losses = [h["train_loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0] - 0.3, losses
    assert _pair_accuracy(clf) >= 2 / 3  # chance (and the untrained head) is 1/3
    assert metrics["labels"] == ["entailment", "neutral", "contradiction"] and clf.labels is None
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["label2id"] == {"entailment": 0, "neutral": 1, "contradiction": 2}
    assert NLIBackend.detect(out)
    (out / "udtc_config.json").unlink()  # a plain transformers folder: detected from config.json alone
    assert detect_backend(out) == "nli"
    again = Classifier.from_pretrained(out, device="cpu")
    assert again.labels is None and again.backend.classes == ["entailment", "neutral", "contradiction"]
    torch.testing.assert_close(again.backend.pair_logits(PREMISES, PREMISES),
                               clf.backend.pair_logits(PREMISES, PREMISES), atol=1e-5, rtol=0)
    _assert_like_the_pipeline(again, out, texts=PREMISES, labels=["sports", "weather", "happy answer"])
    assert "premise/hypothesis pairs" in (out / "README.md").read_text()
    with pytest.raises(ValueError, match="fine-tuned already"):  # zero-shot (no labels) but not the encoder's weights
        udtc.finetune(clf, ROWS, method="lora", output_dir=tmp_path / "lora", progress=False)
    assert again.source == str(out)  # what a further adapter refers to


def test_a_new_head_is_seeded_and_two_way_labels_make_a_two_way_head(encoder, tmp_path):
    cpu = torch.device("cpu")
    classes = ["entailment", "neutral", "contradiction"]
    a, b, c = (NLIBackend.from_encoder(encoder, classes, seed=s, device=cpu) for s in (0, 0, 1))
    torch.testing.assert_close(a.model.classifier.weight, b.model.classifier.weight, atol=0, rtol=0)
    assert not torch.equal(a.model.classifier.weight, c.model.classifier.weight)
    rows = [{**r, "label": "entailment" if r["label"] == "entailment" else "Not-Entailment"} for r in PAIRS]
    clf, _ = udtc.finetune(encoder, rows, epochs=1, batch_size=6, output_dir=tmp_path / "two", **PAIR_ARGS)
    assert clf.backend.classes == ["entailment", "not_entailment"]
    assert (clf.backend.entailment_id, clf.backend.contradiction_id) == (0, 1)


def test_init_seed_builds_a_seeded_two_way_head_on_a_plain_encoder_and_a_lora_adapter_refers_to_it(tmp_path):
    from transformers import AutoTokenizer, BertModel

    encoder = tmp_path / "encoder"  # weights of tiny_nli's scale: tiny_encoder's pooled states barely see the text
    write_tokenizer(encoder)
    torch.manual_seed(0)
    BertModel(bert_config(len(AutoTokenizer.from_pretrained(encoder)), initializer_range=0.2)).save_pretrained(encoder)
    a, b = (Classifier.from_pretrained(encoder, backend="nli", init_seed=3, device="cpu") for _ in range(2))
    assert a.backend.classes == ["entailment", "not_entailment"] and a.backend.options["init_seed"] == 3
    torch.testing.assert_close(a.backend.model.classifier.weight, b.backend.model.classifier.weight, atol=0, rtol=0)
    other = Classifier.from_pretrained(encoder, backend="nli", init_seed=4, device="cpu")
    assert not torch.equal(a.backend.model.classifier.weight, other.backend.model.classifier.weight)
    # label-set training with sampled negatives; saved as an adapter + head over the encoder by reference
    out = tmp_path / "lora"
    clf, metrics = udtc.finetune(encoder, ROWS, backend="nli", init_seed=3, method="lora", epochs=20, batch_size=6,
                                 learning_rate=1e-2, negatives=1, warmup_ratio=0.0, output_dir=out, progress=False)
    losses = [h["train_loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0] - 0.3, losses
    assert (out / "adapter_model.safetensors").exists() and not (out / "model.safetensors").exists()
    saved = json.loads((out / "udtc_config.json").read_text())
    assert saved["backend"] == "nli" and saved["options"]["init_seed"] == 3
    again = Classifier.from_pretrained(out, device="cpu")
    torch.testing.assert_close(again.backend.score(PREMISES, LABELS, multi_label=False, batch_size=8).logits,
                               clf.backend.score(PREMISES, LABELS, multi_label=False, batch_size=8).logits,
                               atol=1e-5, rtol=0)
    # an NLI model keeps its own head: init_seed describes how a head was first built, and is ignored
    nli_folder = tiny_nli(tmp_path / "nli")
    kept = Classifier.from_pretrained(nli_folder, backend="nli", init_seed=3, device="cpu")
    assert kept.backend.classes == Classifier.from_pretrained(nli_folder, device="cpu").backend.classes
    with pytest.raises(ValueError, match="init_seed"):
        Classifier.from_pretrained(encoder, backend="nli", init_seed=-1, device="cpu")


def test_pair_training_continues_an_nli_model_and_evaluates_pairs(tmp_path):
    label2id = {"CONTRADICTION": 0, "NEUTRAL": 1, "ENTAILMENT": 2}  # labels matched case-insensitively
    folder = tiny_nli(tmp_path / "mnli", label2id=label2id)
    _, metrics = udtc.finetune(folder, PAIRS, eval=PAIRS, epochs=2, batch_size=6, output_dir=tmp_path / "o",
                                 learning_rate=1e-3, **PAIR_ARGS)
    assert metrics["labels"] == ["CONTRADICTION", "NEUTRAL", "ENTAILMENT"]
    assert metrics["eval"]["examples"] == len(PAIRS) and 0 <= metrics["eval"]["accuracy"] <= 1
    assert json.loads((tmp_path / "o" / "config.json").read_text())["label2id"] == label2id
    _assert_like_the_pipeline(Classifier.from_pretrained(tmp_path / "o", device="cpu"), tmp_path / "o")


def test_pair_training_continues_an_nli_adapter_folder(tmp_path):
    # a LoRA adapter on an NLI model (as the shipped NLI_MINILM is): its classes exist only once it is loaded
    label2id = {"entailment": 0, "neutral": 1, "contradiction": 2}
    adapter = tmp_path / "adapter"
    udtc.finetune(tiny_nli(tmp_path / "mnli", label2id=label2id), ROWS, method="lora", epochs=1, batch_size=6,
                  output_dir=adapter, progress=False)
    assert (adapter / "adapter_config.json").exists() and not (adapter / "config.json").exists()
    clf, metrics = udtc.finetune(adapter, PAIRS, eval=PAIRS, epochs=2, batch_size=6, output_dir=tmp_path / "o",
                                 learning_rate=1e-3, **PAIR_ARGS)
    assert metrics["labels"] == list(label2id) and metrics["eval"]["examples"] == len(PAIRS)
    again = Classifier.from_pretrained(tmp_path / "o", device="cpu")
    torch.testing.assert_close(again.backend.pair_logits(PREMISES, PREMISES), clf.backend.pair_logits(PREMISES, PREMISES),
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize(("rows", "kwargs", "match"), [
    (PAIRS, {"hypothesis_column": "hyp"}, r"no column 'hyp' \(hypothesis_column='hyp'\); columns found: premise, hyp"),
    ([{**r, "label": "positive"} if i == 3 else r for i, r in enumerate(PAIRS)], {},
     r"labels \['positive'\] are not NLI classes.*entailment/neutral/contradiction"),
    ([{**r, "label": "0"} for r in PAIRS], {}, r"labels \['0'\] are not NLI classes"),
    ([{**r, "label": ["entailment", "neutral"]} if i == 0 else r for i, r in enumerate(PAIRS)], {},
     r"row 0 has several labels.*one NLI label"),
    (PAIRS, {"label_separator": "|"}, "label_separator does not apply"),
    (PAIRS, {"hypothesis_column": "premise"}, "hypothesis_column must name a column other than"),
    ([{**r, "label": "entailment"} for r in PAIRS], {}, r"at least two classes.*\['entailment'\]"),
    ([{**r, "label": "not_entailment"} if i == 0 else r for i, r in enumerate(PAIRS)], {},
     r"labels \['not_entailment', 'neutral', 'contradiction', 'entailment'\] mix 3-way and 2-way classes"),
    (PAIRS, {"backend": "cosine"}, "hypothesis_column trains an NLI cross-encoder, which is the 'nli' backend"),
    (PAIRS, {"method": "lora"}, "plain encoder, so it gets a new NLI head.*merge=True or method='full'"),
])
def test_bad_pair_data_is_a_clear_error_before_any_training(encoder, tmp_path, rows, kwargs, match):
    args = {**PAIR_ARGS, **kwargs}
    with pytest.raises(ValueError, match=match):
        udtc.finetune(encoder, rows, output_dir=tmp_path / "o", **args)
    assert not (tmp_path / "o").exists()


def test_pair_labels_must_be_classes_of_the_nli_model(tmp_path):
    folder = tiny_nli(tmp_path / "rte", label2id={"entailment": 0, "not_entailment": 1})
    with pytest.raises(ValueError, match=r"labels \['neutral', 'contradiction'\] are not NLI classes of this model "
                                         r"\(\['entailment', 'not_entailment'\]\)"):
        udtc.finetune(folder, PAIRS, output_dir=tmp_path / "o", **PAIR_ARGS)
    sentiment = tiny_nli(tmp_path / "sentiment", label2id={"positive": 0, "negative": 1})
    with pytest.raises(ValueError, match="sequence-classification model without an entailment label"):
        udtc.finetune(sentiment, PAIRS, output_dir=tmp_path / "o", **PAIR_ARGS)


def test_an_interrupted_pair_run_resumes_and_the_folder_is_never_overwritten(encoder, tmp_path, monkeypatch):
    """Stopped inside epoch 3, rerun: the same weights as an uninterrupted run (the new head is seeded)."""
    from safetensors.torch import load_file

    kwargs = {"epochs": 4, "batch_size": 4, "learning_rate": 3e-3, **PAIR_ARGS}
    real, calls = NLIBackend.training_logits, [0]

    def stop_in_epoch_3(self, *args, **kw):
        if torch.is_grad_enabled():
            calls[0] += 1
            if calls[0] == 8:  # 12 pairs / batch 4 = 3 steps per epoch
                raise KeyboardInterrupt
        return real(self, *args, **kw)

    out = tmp_path / "run"
    monkeypatch.setattr(NLIBackend, "training_logits", stop_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        udtc.finetune(encoder, PAIRS, output_dir=out, **kwargs)
    monkeypatch.setattr(NLIBackend, "training_logits", real)
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["epoch"] == 2
    with pytest.raises(FileExistsError, match="other settings"):
        udtc.finetune(encoder, PAIRS, output_dir=out, **{**kwargs, "hypothesis_column": None, "text_column": "premise",
                                                         "label_column": "label", "backend": "nli"})
    _, resumed = udtc.finetune(encoder, PAIRS, output_dir=out, **kwargs)
    assert resumed["resumed_from_epoch"] == 2 and resumed["epochs_run"] == 4
    _, straight = udtc.finetune(encoder, PAIRS, output_dir=tmp_path / "straight", **kwargs)
    assert [h["train_loss"] for h in resumed["history"]] == pytest.approx([h["train_loss"] for h in straight["history"]],
                                                                         abs=1e-6)
    a, b = load_file(out / "model.safetensors"), load_file(tmp_path / "straight" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0)
    with pytest.raises(FileExistsError, match="finished udtc model"):
        udtc.finetune(encoder, PAIRS, output_dir=out, **kwargs)


def test_cli_trains_pairs(encoder, tmp_path, capsys):
    path = tmp_path / "snli.csv"
    path.write_text("premise,hypothesis,label\n" + "\n".join(f"{r['premise']},{r['hypothesis']},{r['label']}"
                                                              for r in PAIRS) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    argv = ["finetune", "--model", str(encoder), "--train", str(path), "--text-column", "premise",
            "--hypothesis-column", "hypothesis", "--epochs", "1", "--no-progress"]
    assert main([*argv, "--output", str(out)]) == 0, capsys.readouterr().err
    assert NLIBackend.detect(out) and json.loads((out / "udtc_config.json").read_text())["labels"] is None
    path.write_text("premise,hypothesis,label\nrain,sports,yes\nrain,weather,no\n", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([*argv, "--output", str(tmp_path / "bad")]) == 2
    assert "are not NLI classes" in capsys.readouterr().err
