"""Fine-tuning GLiClass through ``udtc.finetune``: training hooks, label shuffling, sampled negatives, the
focal loss, a new model from a plain encoder, and folders the gliclass library (0.1.21) still loads."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from logcheck import expect_log
import torch
import torch.nn.functional as F
from factories import tiny_encoder
from test_gliclass import _randomise, gliclass_logits, gliclass_probs

import udtc
from udtc import Classifier
from udtc.backends.gliclass import GLiClassBackend
from udtc.training import losses, loop

pytest.importorskip("gliclass")

ROWS = [("sports: the team won the match", "sports"), ("a late goal in the sports game", "sports"),
        ("weather: rain and wind in the city", "weather"), ("rain in the country weather", "weather"),
        ("a food recipe for the oven", "food"), ("good food and a recipe", "food")]
DATA = [{"text": t, "label": y} for t, y in ROWS] * 3  # 3 optimizer steps per epoch at batch size 6
TEXTS = [t for t, _ in ROWS]
GOLD = [y for _, y in ROWS]
MULTI = [{"text": "sports: the team won the match in the rain weather", "label": ["sports", "weather"]},
         {"text": "a late goal in the sports game", "label": ["sports"]},
         {"text": "weather: rain and wind in the city", "label": ["weather"]},
         {"text": "good food after the sports match", "label": ["food", "sports"]},
         {"text": "a food recipe for the oven", "label": ["food"]},
         {"text": "rain in the country weather", "label": ["weather"]}] * 3
#: a small model that learns the toy sets in a few dozen steps (no dropout, larger initial weights)
NEW = {"init_seed": 0, "dropout": 0.0, "initializer_range": 0.1}
FAST = {"batch_size": 6, "progress": False}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return tiny_encoder(tmp_path_factory.mktemp("gliclass-train") / "encoder")


def _probs(clf: Classifier, labels: list[str], multi_label: bool = False) -> np.ndarray:
    preds = clf.classify(TEXTS, labels, multi_label=multi_label)
    return np.array([[p.scores[x] for x in labels] for p in preds])


def assert_gliclass_agrees(folder, clf: Classifier, labels: list[str]) -> None:
    """The gliclass library loads ``folder``; its pipeline's probabilities equal udtc's within 1e-4."""
    from gliclass import GLiClassModel
    from transformers import AutoTokenizer

    model, tokenizer = GLiClassModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    for multi_label in (False, True):
        ours = _probs(clf, labels, multi_label)
        theirs = gliclass_probs(model, tokenizer, TEXTS, sorted(labels), multi_label)
        np.testing.assert_allclose(ours, [[ref[x] for x in labels] for ref in theirs], atol=1e-4)


# ---------------------------------------------------------------------- the hooks
def test_head_modules_are_the_layers_with_weights(encoder):
    # training_logits == score logits: the registry matrix in test_contract.py
    backend = GLiClassBackend.from_encoder(encoder, seed=0, pooling_strategy="avg", class_token_pooling="average")
    assert backend.supported_methods == {"full", "lora", "sparse"}
    assert backend.head_modules == ("text_projector", "classes_projector")  # the dot scorer has no weights


def test_a_given_label_order_is_written_as_given_and_mapped_back(encoder, tmp_path):
    """udtc with labels written in order o == gliclass given the labels in order o (gliclass keeps the caller's)."""
    from gliclass import GLiClassModel
    from transformers import AutoTokenizer

    backend = GLiClassBackend.from_encoder(encoder, seed=0, scorer_type="mlp")
    _randomise(backend.model, 2)
    folder = Classifier(backend).save_pretrained(tmp_path / "m")
    model, tokenizer = GLiClassModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    labels = ["weather", "sports", "food", "music band"]
    for order in ([2, 0, 3, 1], [3, 2, 1, 0]):
        (inputs, columns, _), = backend.build_inputs(TEXTS[:2], labels, label_order=order)
        assert columns == order
        with torch.no_grad():
            written = backend.model(inputs)  # (B, L) in written order
        for i, text in enumerate(TEXTS[:2]):
            ref = gliclass_logits(model, tokenizer, text, [labels[j] for j in order])
            torch.testing.assert_close(written[i], ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="permutation"):
        backend.build_inputs(TEXTS[:1], labels, label_order=[0, 0, 1, 2])


def test_training_shuffles_the_label_order_per_batch_with_the_seed(encoder, tmp_path, monkeypatch):
    orders: list = []
    build = GLiClassBackend.build_inputs

    def spy(self, texts, labels, **kwargs):
        if self.model.training:
            orders.append(kwargs.get("label_order"))
        return build(self, texts, labels, **kwargs)

    monkeypatch.setattr(GLiClassBackend, "build_inputs", spy)
    for run in ("a", "b"):
        udtc.finetune(encoder, DATA, backend="gliclass", method="full", epochs=3, eval=DATA[:6],
                      output_dir=tmp_path / run, **NEW, **FAST)
    first, second = orders[:9], orders[9:]
    assert len(first) == len(second) == 9  # 3 epochs x 3 batches, none of them from evaluation
    assert all(sorted(o) == [0, 1, 2] for o in first)
    assert len({tuple(o) for o in first}) > 1  # a new order per batch, not the canonical one every time
    assert first == second  # seeded: the same run draws the same orders
    backend = GLiClassBackend.from_encoder(encoder, seed=0)
    backend.model.train()
    torch.manual_seed(0)
    shuffled = [backend.training_logits(TEXTS[:1], ["a", "b", "c", "d"], multi_label=False) for _ in range(6)]
    assert any(not torch.allclose(shuffled[0], x) for x in shuffled[1:])  # an untrained model sees the order


# ---------------------------------------------------------------------- finetune: a new model from an encoder
def test_finetune_a_new_model_from_a_plain_encoder_learns_and_gliclass_loads_it(encoder, tmp_path):
    labels = ["sports", "weather", "food"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # init_seed given: no "untrained model" warning
        before = Classifier.from_pretrained(encoder, backend="gliclass", device="cpu", **NEW)
    assert before.backend.options == {"max_length": 128, **NEW, "pooling_strategy": "avg",
                                      "class_token_pooling": "average"}
    assert [p.label for p in before.classify(TEXTS, labels)] != GOLD
    clf, metrics = udtc.finetune(encoder, DATA, backend="gliclass", method="full", epochs=40, learning_rate=3e-3,
                                 output_dir=tmp_path / "full", **NEW, **FAST)
    losses = [h["train_loss"] for h in metrics["history"]]
    assert losses[-1] < 0.3 * losses[0], losses
    assert [p.label for p in clf.classify(TEXTS)] == GOLD
    again = Classifier.from_pretrained(tmp_path / "full", device="cpu")
    assert again.backend_name == "gliclass" and again.labels == labels
    np.testing.assert_allclose(_probs(again, labels), _probs(clf, labels), atol=1e-5)
    assert_gliclass_agrees(tmp_path / "full", again, labels)


def test_lora_on_a_new_model_trains_the_head_saves_an_adapter_and_merges(encoder, tmp_path):
    clf, metrics = udtc.finetune(encoder, DATA, backend="gliclass", method="lora", epochs=40, learning_rate=1e-2,
                                 output_dir=tmp_path / "lora", **NEW, **FAST)
    assert (tmp_path / "lora" / "adapter_model.safetensors").exists()
    assert metrics["history"][-1]["train_loss"] < 0.5 * metrics["history"][0]["train_loss"]
    labels = clf.labels
    again = Classifier.from_pretrained(tmp_path / "lora", device="cpu")  # base: the encoder + init options
    np.testing.assert_allclose(_probs(again, labels), _probs(clf, labels), atol=1e-5)
    from safetensors import safe_open

    with safe_open(tmp_path / "lora" / "adapter_model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert any("lora_A" in k and "encoder_model.encoder.layer.1.intermediate.dense" in k for k in keys)
    assert any("text_projector" in k and "lora" not in k for k in keys)  # the head, trained in full
    assert not any("pooler" in k or "embeddings" in k for k in keys)
    merged, _ = udtc.finetune(encoder, DATA, backend="gliclass", method="lora", merge=True, epochs=2,
                              output_dir=tmp_path / "merged", **NEW, **FAST)
    assert_gliclass_agrees(tmp_path / "merged", Classifier.from_pretrained(tmp_path / "merged", device="cpu"),
                           merged.labels)


def test_multi_label_focal_loss_learns_the_label_sets(encoder, tmp_path):
    clf, metrics = udtc.finetune(encoder, MULTI, backend="gliclass", method="full", epochs=40, learning_rate=3e-3,
                                 loss="focal", output_dir=tmp_path / "focal", **NEW, **FAST)
    losses = [h["train_loss"] for h in metrics["history"]]
    assert losses[-1] < 0.3 * losses[0], losses
    preds = clf.classify([r["text"] for r in MULTI[:6]], multi_label=True)
    assert [sorted(p.labels) for p in preds] == [sorted(r["label"]) for r in MULTI[:6]]
    card = (tmp_path / "focal" / "README.md").read_text()
    assert "focal_gamma" in card and "focal_alpha" in card


def test_cli_finetune_builds_a_new_gliclass_model_on_an_encoder(encoder, tmp_path, capsys):
    from udtc.cli import main

    path = tmp_path / "train.csv"
    path.write_text("text,label\n" + "\n".join(f"{t},{y}" for t, y in ROWS) + "\n", encoding="utf-8")
    with expect_log("not a GLiClass checkpoint"):
        code = main(["finetune", "--model", str(encoder), "--backend", "gliclass", "--train", str(path), "--output",
                     str(tmp_path / "out"), "--method", "full", "--epochs", "1", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    clf = Classifier.from_pretrained(tmp_path / "out", device="cpu")
    assert clf.backend_name == "gliclass" and clf.labels == ["sports", "weather", "food"]


def test_the_untrained_model_warning_and_what_cannot_be_built(encoder, tmp_path, udtc_logs):
    with expect_log("not a GLiClass checkpoint"):
        Classifier.from_pretrained(encoder, backend="gliclass", device="cpu")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text('{"model_type": "t5"}')
    with pytest.raises(ValueError, match="neither a GLiClass checkpoint.*nor an encoder.*model_type='t5'"):
        Classifier.from_pretrained(tmp_path / "odd", backend="gliclass", device="cpu", init_seed=0)
    udtc_logs.clear()
    with pytest.raises(ValueError, match="model_type='t5'"):  # refused, without saying it built a new model
        Classifier.from_pretrained(tmp_path / "odd", backend="gliclass", device="cpu")
    assert not [r for r in udtc_logs.records if "not a GLiClass checkpoint" in r.getMessage()]
    folder = Classifier(GLiClassBackend.from_encoder(encoder, seed=0)).save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="pooling_strategy='avg' applies when a new model"):
        Classifier.from_pretrained(folder, device="cpu", pooling_strategy="avg")
    with pytest.raises(TypeError, match="init_seed"):
        Classifier.from_pretrained(folder, device="cpu", seeds=1)


def test_init_from_an_encoder_is_a_function_of_the_seed(encoder):
    a, b, c = (GLiClassBackend.from_encoder(encoder, seed=s) for s in (3, 3, 4))
    state_a, state_b, state_c = (x.model.state_dict() for x in (a, b, c))
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    emb = "encoder_model.embeddings.word_embeddings.weight"
    assert not torch.equal(state_a[emb][-3:], state_c[emb][-3:])
    new = state_a[emb][-3:]
    assert len({tuple(row.tolist()) for row in new}) == 3  # three distinct new tokens
    rng = torch.get_rng_state()
    GLiClassBackend.from_encoder(encoder, seed=5)
    assert torch.equal(rng, torch.get_rng_state())  # the global RNG is left alone


# ---------------------------------------------------------------------- generic options (loop.py)
def test_sampled_negatives_are_the_gold_labels_plus_k_others_drawn_from_the_key():
    targets = torch.zeros(4, 10)
    targets[0, 2] = targets[1, 7] = targets[3, 2] = 1
    a = loop._sample_labels(targets, 3, "0:1:0:5")
    assert a == loop._sample_labels(targets, 3, "0:1:0:5")  # a pure function of (seed, epoch, rank, batch)
    assert {2, 7} <= set(a) and len(a) == 5 and a == sorted(a)
    draws = {tuple(loop._sample_labels(targets, 3, f"0:1:0:{i}")) for i in range(20)}
    assert len(draws) > 5
    assert loop._sample_labels(targets, None, "x") == list(range(10))
    assert loop._sample_labels(targets, 50, "x") == list(range(10))


def test_finetune_with_negatives_trains_each_batch_on_its_gold_labels_plus_k(encoder, tmp_path, monkeypatch):
    seen: list = []
    logits = GLiClassBackend.training_logits

    def spy(self, texts, labels, *, multi_label):
        if self.model.training:
            seen.append((tuple(texts), tuple(labels)))
        return logits(self, texts, labels, multi_label=multi_label)

    monkeypatch.setattr(GLiClassBackend, "training_logits", spy)
    rows = [{"text": t, "label": y} for t, y in ROWS] + [{"text": "happy song", "label": "music"},
                                                        {"text": "a new phone", "label": "technology"}]
    gold = {r["text"]: r["label"] for r in rows}
    for run in ("a", "b"):
        udtc.finetune(encoder, rows, backend="gliclass", method="full", epochs=2, batch_size=2, negatives=1,
                      output_dir=tmp_path / run, progress=False, **NEW)
    first, second = seen[: len(seen) // 2], seen[len(seen) // 2:]
    assert first == second and len(first) == 8
    for texts, labels in first:
        wanted = {gold[t] for t in texts}
        assert wanted <= set(labels) and len(labels) == len(wanted) + 1
    assert len({labels for _, labels in first}) > 2


def test_an_interrupted_run_with_shuffled_labels_and_negatives_resumes_to_the_same_weights(encoder, tmp_path,
                                                                                           monkeypatch):
    from safetensors.torch import load_file

    rows = [{"text": t, "label": y} for t, y in ROWS] + [{"text": "happy song", "label": "music"},
                                                        {"text": "a new phone", "label": "technology"}]
    kwargs = {"backend": "gliclass", "method": "full", "epochs": 3, "negatives": 2, "loss": "focal",
              "learning_rate": 3e-3, "batch_size": 4, "progress": False, **NEW}
    _, straight = udtc.finetune(encoder, rows, output_dir=tmp_path / "straight", **kwargs)
    calls = []
    logits = GLiClassBackend.training_logits

    def dying(self, texts, labels, *, multi_label):
        if self.model.training:
            calls.append(1)
            if len(calls) == 4:  # 2 steps per epoch: the second step of epoch 2
                raise RuntimeError("killed")
        return logits(self, texts, labels, multi_label=multi_label)

    monkeypatch.setattr(GLiClassBackend, "training_logits", dying)
    with pytest.raises(RuntimeError, match="killed"):
        udtc.finetune(encoder, rows, output_dir=tmp_path / "killed", **kwargs)
    monkeypatch.undo()
    _, resumed = udtc.finetune(encoder, rows, output_dir=tmp_path / "killed", **kwargs)
    assert resumed["resumed_from_epoch"] == 1 and resumed["epochs_run"] == 3
    for got, want in zip(resumed["history"], straight["history"]):
        assert got["train_loss"] == pytest.approx(want["train_loss"], abs=1e-6)
    a, b = (load_file(tmp_path / run / "model.safetensors") for run in ("killed", "straight"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0)


def test_focal_loss_matches_its_formula():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-0.3, 0.0, 3.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    p = torch.sigmoid(logits)
    p_t = torch.where(targets == 1, p, 1 - p)
    alpha_t = torch.where(targets == 1, 0.7, 0.3)
    expected = (-alpha_t * (1 - p_t) ** 2 * torch.log(p_t)).mean()
    torch.testing.assert_close(losses.focal_loss(logits, targets, 0.7, 2.0), expected)
    torch.testing.assert_close(losses.focal_loss(logits, targets, None, 0.0),
                               F.binary_cross_entropy_with_logits(logits, targets))


def test_objective_options_are_checked_before_any_work(encoder, tmp_path):
    for kwargs, match in [({"loss": "hinge"}, "unknown loss 'hinge'"), ({"negatives": 0}, "negatives must be"),
                          ({"focal_alpha": 1.5}, "focal_alpha must be"), ({"focal_gamma": -1}, "focal_gamma must be")]:
        with pytest.raises(ValueError, match=match):
            udtc.finetune(encoder, DATA, backend="gliclass", method="full", output_dir=tmp_path / "x", **kwargs)
    with pytest.raises(ValueError, match="loss='ce'.*single-label"):
        udtc.finetune(encoder, MULTI, backend="gliclass", method="full", loss="ce", output_dir=tmp_path / "x")
    assert not (tmp_path / "x").exists()
