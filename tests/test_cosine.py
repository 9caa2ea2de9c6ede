"""Cosine backend: conformance with sentence-transformers, label cache, pooling, folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from udtc import Classifier

TEXTS = ["The striker scored twice in the final", "Parliament passed the budget after a long debate",
         "Whisk the eggs and fold in the flour", "short", "a somewhat longer sentence about the weather in the city today"]


@pytest.fixture(scope="module")
def tiny(tiny_models):
    return tiny_models("cosine")


def test_tiny_embeddings_equal_sentence_transformers(tiny):
    st = pytest.importorskip("sentence_transformers")
    ours = Classifier.from_pretrained(tiny, device="cpu").backend.embed(TEXTS)[0]
    ref = st.SentenceTransformer(str(tiny), device="cpu").encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-5)


@pytest.mark.parametrize("mode", ["cls", "max", "mean_sqrt_len", "weightedmean", "lasttoken"])
def test_pooling_modes_equal_sentence_transformers(tiny_models, tmp_path, mode):
    st = pytest.importorskip("sentence_transformers")
    import json
    import shutil

    folder = tmp_path / mode
    shutil.copytree(tiny_models("cosine"), folder)
    key = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens", "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens",
           "weightedmean": "pooling_mode_weightedmean_tokens", "lasttoken": "pooling_mode_lasttoken"}[mode]
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, key: True}))
    ours = Classifier.from_pretrained(folder, device="cpu").backend.embed(TEXTS)[0]
    ref = st.SentenceTransformer(str(folder), device="cpu").encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-5)


@pytest.mark.parametrize("config", [
    {"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True},
    {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True},
    {"pooling_mode": ["mean", "cls"]},  # sentence-transformers >= 5 writes the modes as a list, in its order
    {"pooling_mode": "mean_sqrt_len_tokens"},
])
def test_concatenated_pooling_modes_feed_the_dense_layer_in_sentence_transformers_order(tiny_models, tmp_path, config):
    st = pytest.importorskip("sentence_transformers")
    import json
    import shutil

    from safetensors.torch import save_file

    folder = shutil.copytree(tiny_models("cosine"), tmp_path / "model")
    n = max(1, len(config.get("pooling_mode", "x")) if isinstance(config.get("pooling_mode"), list) else len(config))
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **config}))
    dense = json.loads((folder / "2_Dense" / "config.json").read_text())
    (folder / "2_Dense" / "config.json").write_text(json.dumps({**dense, "in_features": 32 * n}))
    g = torch.Generator().manual_seed(0)
    save_file({"linear.weight": torch.randn(16, 32 * n, generator=g) * 0.2, "linear.bias": torch.zeros(16)},
              folder / "2_Dense" / "model.safetensors")
    clf = Classifier.from_pretrained(folder, device="cpu")
    ref = st.SentenceTransformer(str(folder), device="cpu").encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(clf.backend.embed(TEXTS)[0].numpy(), ref, atol=1e-5)
    saved = clf.save_pretrained(tmp_path / "saved")  # and what udtc writes reads back the same in both
    np.testing.assert_allclose(st.SentenceTransformer(str(saved), device="cpu").encode(TEXTS, convert_to_numpy=True),
                               ref, atol=1e-5)


def test_unknown_pooling_mode_is_a_clear_error(tiny_models, tmp_path):
    import json
    import shutil

    folder = shutil.copytree(tiny_models("cosine"), tmp_path / "model")
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, "pooling_mode": "median"}))
    with pytest.raises(ValueError, match=r"pooling_mode \['median'\] is not supported"):
        Classifier.from_pretrained(folder, device="cpu")


def test_a_bad_max_seq_length_in_a_folder_is_a_clear_error(tiny_models, tmp_path):
    import json
    import shutil

    folder = shutil.copytree(tiny_models("cosine"), tmp_path / "model")
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": -5}))
    with pytest.raises(ValueError, match=r"sentence_bert_config.json: max_seq_length must be a positive integer, got -5"):
        Classifier.from_pretrained(folder, device="cpu")


def test_plain_encoder_uses_mean_pooling(tmp_path):
    from factories import tiny_encoder

    folder = tiny_encoder(tmp_path / "enc")
    clf = Classifier.from_pretrained(folder, device="cpu")
    assert clf.backend_name == "cosine" and clf.backend.pooling == ["mean"]
    assert clf.classify("the team won", ["sports", "food"]).label in {"sports", "food"}


def test_repeated_label_set_is_embedded_once(tiny):
    clf = Classifier.from_pretrained(tiny, device="cpu")
    calls = []
    original = clf.backend.embed

    def counting(texts, batch_size=32):
        calls.append(list(texts))
        return original(texts, batch_size)

    clf.backend.embed = counting
    labels = ["sports", "politics", "cooking"]
    clf.classify(TEXTS, labels)
    clf.classify(TEXTS, labels)
    label_calls = [c for c in calls if set(c) <= set(labels)]
    assert label_calls == [labels], "labels must be embedded once and then served from the cache"


def test_probabilities_follow_app_e(tiny):
    """softmax(scale * cos) single-label; sigmoid(scale * (cos - shift)) multi-label."""
    clf = Classifier.from_pretrained(tiny, device="cpu", scale=7.0, multi_label_shift=0.1)
    labels = ["sports", "politics", "cooking"]
    t, l = clf.backend.embed(TEXTS[:2])[0], clf.backend.embed(labels)[0]
    cos = torch.nn.functional.normalize(t, dim=-1) @ torch.nn.functional.normalize(l, dim=-1).T
    single = clf.classify(TEXTS[:2], labels)
    multi = clf.classify(TEXTS[:2], labels, multi_label=True)
    for i in range(2):
        np.testing.assert_allclose([single[i].scores[x] for x in labels], torch.softmax(7 * cos[i], -1).numpy(), atol=1e-6)
        np.testing.assert_allclose([multi[i].scores[x] for x in labels], torch.sigmoid(7 * (cos[i] - 0.1)).numpy(), atol=1e-6)


def test_template_and_descriptions_change_what_is_embedded(tiny):
    clf = Classifier.from_pretrained(tiny, device="cpu")
    plain = clf.classify("the match", ["sports", "food"])
    described = clf.classify("the match", {"sports": "a game with a team", "food": "a recipe"})
    templated = clf.classify("the match", ["sports", "food"], template="this is about {}")
    assert list(described.scores) == ["sports", "food"]
    assert plain.scores != described.scores and plain.scores != templated.scores
    assert "a recipe" in clf.backend._label_cache and "this is about food" in clf.backend._label_cache


def test_unknown_backend_option_lists_valid_ones(tiny):
    with pytest.raises(TypeError, match="scale"):
        Classifier.from_pretrained(tiny, device="cpu", temprature=3)


@pytest.mark.integration
def test_minilm_embeddings_equal_sentence_transformers(minilm_path):
    st = pytest.importorskip("sentence_transformers")
    ours = Classifier.from_pretrained(minilm_path, device="cpu").backend.embed(TEXTS)[0]
    ref = st.SentenceTransformer(str(minilm_path), device="cpu").encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-5)
