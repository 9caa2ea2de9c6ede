"""Bad input: every case gets a clear error (or a documented behaviour)."""

from __future__ import annotations

import json

import pytest
from logcheck import expect_log

from udtc import Classifier, Prediction
from udtc.backends import get_backend
from udtc.backends._text import encode


@pytest.fixture(scope="module")
def clf(tiny_models):
    return Classifier.from_pretrained(tiny_models("cosine"), device="cpu")


@pytest.mark.parametrize(
    ("texts", "labels", "kwargs", "error", "match"),
    [
        ("hello", None, {}, ValueError, "no labels"),
        ("hello", [], {}, ValueError, "empty"),
        ("hello", ["sports", " sports "], {}, ValueError, "duplicate label 'sports'"),
        ("hello", ["sports", "  "], {}, ValueError, "empty or whitespace"),
        ("hello", ["sports", ""], {}, ValueError, "empty or whitespace"),
        ("hello", ["sports", 3], {}, TypeError, "must be a string"),
        (["x", "y"], [["a", "b"], ["sports"]], {}, ValueError, "at least two labels in every label set"),
        ("hello", {"sports": 1, "food": "x"}, {}, TypeError, "must be a string"),
        (3, ["a", "b"], {}, TypeError, "texts must be a string or a sequence of strings, got int"),
        (["ok", None], ["a", "b"], {}, TypeError, "text 1 is a NoneType"),
        ([], ["a", "b"], {}, ValueError, "texts is empty"),
        ("", ["a", "b"], {}, ValueError, "text 0 is empty"),
        (["fine", "   "], ["a", "b"], {}, ValueError, "text 1 is empty"),
        (["x", "y", "z"], [["a", "b"], ["a", "c"]], {}, ValueError, "2 label sets for 3 text"),
        ("hello", ["a", "b"], {"multi_label": True, "threshold": 1.5}, ValueError, r"threshold must be a number in \[0, 1\]"),
        ("hello", ["a", "b"], {"multi_label": True, "threshold": -0.1}, ValueError, "threshold"),
        ("hello", ["a", "b"], {"multi_label": True, "threshold": {"a": 0.3, "zzz": 0.5}}, ValueError, "not in any label set"),
        ("hello", ["a", "b"], {"top_k": 0}, ValueError, "top_k"),
        ("hello", ["a", "b"], {"batch_size": 0}, ValueError, "batch_size"),
        ("hello", ["a", "b"], {"template": "no slot"}, ValueError, "template"),
        ("hello", ["a", "b"], {"examples": []}, TypeError, "does not take"),
    ],
)
def test_bad_input_is_a_clear_error(clf, texts, labels, kwargs, error, match):
    with pytest.raises(error, match=match):
        clf.classify(texts, labels, **kwargs)


def test_one_label_is_fine_in_multi_label_mode(clf):
    pred = clf.classify("the match", ["sports"], multi_label=True)
    assert list(pred.scores) == ["sports"] and 0 <= pred.scores["sports"] <= 1


def test_unknown_backend_lists_valid_ones(tiny_models):
    with pytest.raises(ValueError, match="valid backends are: .*cosine"):
        get_backend("nope")
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        Classifier.from_pretrained(tiny_models("cosine"), backend="nope")


def test_missing_empty_and_corrupted_folders(tmp_path, tiny_models):
    import shutil

    with pytest.raises(FileNotFoundError, match="no such model folder"):
        Classifier.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="is empty"):
        Classifier.from_pretrained(tmp_path / "empty")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="no udtc backend recognises .*notes.txt"):
        Classifier.from_pretrained(junk)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_models("cosine"), broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match="corrupted or truncated|could not load"):
        Classifier.from_pretrained(broken)
    (broken / "udtc_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Classifier.from_pretrained(broken)
    (broken / "udtc_config.json").write_text(json.dumps({"backend": "cosine", "colour": "red"}))
    with pytest.raises(ValueError, match="unknown keys \\['colour'\\]"):
        Classifier.from_pretrained(broken)


def test_pickle_only_weights_are_refused(tmp_path, tiny_models):
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_models("cosine"), folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match="only pickle weights .*pytorch_model.bin.*safetensors only"):
        Classifier.from_pretrained(folder)


def test_a_one_megabyte_text_is_truncated_with_a_warning(clf):
    text = "the team won the match " * 45_000  # ~1 MB
    with expect_log("truncated"):
        pred = clf.classify(text, ["sports", "food"])
    assert pred.truncated
    assert abs(sum(pred.scores.values()) - 1) < 1e-5


def test_special_tokens_in_user_text_stay_plain_text(clf):
    tok = clf.backend.tokenizer
    enc, _ = encode(tok, ["[SEP] [CLS] [PAD] [MASK]"], max_length=32)
    ids = enc["input_ids"][0].tolist()
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    inner = ids[1:-1]
    assert not set(inner) & set(tok.all_special_ids), f"special ids leaked into user text: {inner}"
    a = clf.classify("the match [SEP] goal", ["[SEP]", "sports"])
    assert set(a.scores) == {"[SEP]", "sports"}


def test_prediction_is_json_serialisable_and_sorted(clf):
    pred = clf.classify("the team won the match", ["sports", "food", "weather"], top_k=2)
    assert isinstance(pred, Prediction)
    data = json.loads(pred.to_json())
    assert list(data["scores"]) == ["sports", "food", "weather"]
    assert len(pred.labels) == 2 and pred.labels[0] == pred.label == pred.ranked[0][0]
    assert [s for _, s in pred.ranked] == sorted(pred.scores.values(), reverse=True)


def test_thresholds_global_and_per_label(clf):
    labels = ["sports", "food", "weather"]
    everything = clf.classify("the match", labels, multi_label=True, threshold=0.0)
    assert sorted(everything.labels) == sorted(labels)
    nothing = clf.classify("the match", labels, multi_label=True, threshold=1.0)
    assert nothing.labels == [] and nothing.label is None
    per = clf.classify("the match", labels, multi_label=True, threshold={"sports": 0.0, "food": 1.0, "weather": 1.0})
    assert per.labels == ["sports"]
    abstain = clf.classify("the match", labels, threshold=1.0)
    assert abstain.label is None and abstain.labels == []


def test_per_text_label_sets(clf):
    preds = clf.classify(["the match", "the oven"], [["sports", "music"], {"food": "a recipe", "travel": "a flight"}])
    assert list(preds[0].scores) == ["sports", "music"] and list(preds[1].scores) == ["food", "travel"]
    single = clf.classify("the match", ["sports", "music"])
    from udtc.backends.base import BATCH_TOLERANCE  # the two texts share one padded pass (mixed label sets)

    assert preds[0].scores == pytest.approx(single.scores, abs=BATCH_TOLERANCE)


def test_devices_and_dtypes_are_checked(tiny_models):
    import torch

    with pytest.raises(ValueError, match="unknown device"):
        Classifier.from_pretrained(tiny_models("cosine"), device="tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            Classifier.from_pretrained(tiny_models("cosine"), device="cuda")
    with pytest.raises(ValueError, match="unknown dtype"):
        Classifier.from_pretrained(tiny_models("cosine"), dtype="float7")


def test_progress_bar_on_long_inputs(clf, capsys):
    clf.classify(["the match"] * 5, ["sports", "food"], batch_size=2, progress=True)
    assert "classify" in capsys.readouterr().err


def test_save_never_overwrites_silently(clf, tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        clf.save_pretrained(target)
    assert (target / "precious.txt").read_text() == "keep me"
    clf.save_pretrained(target, overwrite=True)
    assert not (target / "precious.txt").exists() and (target / "udtc_config.json").exists()
