"""Classifier.calibrate, calibration.json, the decide step's prior correction and `udtc calibrate`."""

from __future__ import annotations

import csv
import json
import math
from typing import ClassVar

import pytest
import torch

from udtc import Classifier
from udtc.calibration import (CALIBRATION_NAME, L2_GRID, Calibration, _folds, best_threshold, fit_multi_label,
                              fit_single_label)
from udtc.cli import main

LABELS = ["sports", "weather", "food"]
TEXTS = {
    "sports": ["the team won the match", "a goal in the last minute", "the runner broke the record",
               "fans cheered the players", "the coach picked the squad"],
    "weather": ["rain all day in the city", "a storm is coming tonight", "sunny and warm tomorrow",
                "snow closed the roads", "strong wind and clouds"],
    "food": ["a recipe for tomato soup", "the chef baked fresh bread", "spicy noodles for dinner",
             "we ate pizza and salad", "a cake with chocolate"],
}
ROWS = [{"text": t, "label": y} for y, texts in TEXTS.items() for t in texts]
TEST = ["the match ended in a draw", "heavy rain and thunder", "grilled fish with lemon", "players and a ball"]


@pytest.fixture(scope="module")
def clf(tiny_models):
    return Classifier.from_pretrained(tiny_models("cosine"), device="cpu")


@pytest.fixture(scope="module")
def calibrated(clf):
    return clf.calibrate(ROWS, labels=LABELS)


def _flat(rows):
    return [v for row in rows for v in row]


def _scores(model, texts=TEST, labels=LABELS, **kwargs):
    return [[p.scores[x] for x in labels] for p in model.classify(texts, labels, progress=False, **kwargs)]


def test_calibrate_returns_a_new_classifier_and_leaves_the_original_alone(clf, calibrated):
    before = _scores(clf)
    assert calibrated is not clf and clf.calibration is None and calibrated.calibration is not None
    cal = calibrated.calibration.single_label
    assert cal is not None and cal.temperature > 0 and set(cal.bias) == set(LABELS)
    assert cal.examples == {x: 5 for x in LABELS}
    assert _scores(clf) == before
    assert _scores(calibrated) != before


def test_calibrated_scores_are_softmax_of_bias_over_temperature(clf, calibrated):
    cal = calibrated.calibration.single_label
    raw = torch.tensor(_scores(clf), dtype=torch.float64)
    bias = torch.tensor([cal.bias[x] for x in LABELS], dtype=torch.float64)
    expected = torch.softmax((raw.log() + bias) / cal.temperature, -1)
    assert torch.allclose(torch.tensor(_scores(calibrated), dtype=torch.float64), expected, atol=1e-5)


def test_save_reload_and_model_card(calibrated, tmp_path):
    folder = calibrated.save_pretrained(tmp_path / "cal")
    saved = json.loads((folder / CALIBRATION_NAME).read_text())
    assert set(saved) == {"single_label", "multi_label", "udtc_version"}
    again = Classifier.from_pretrained(folder, device="cpu")
    assert again.calibration == calibrated.calibration
    assert _flat(_scores(again)) == pytest.approx(_flat(_scores(calibrated)), abs=1e-6)
    card = (folder / "README.md").read_text()
    assert "## Calibration" in card and "single-label temperature" in card


def test_unknown_keys_in_calibration_json_are_refused(calibrated, tmp_path):
    folder = calibrated.save_pretrained(tmp_path / "cal")
    data = json.loads((folder / CALIBRATION_NAME).read_text())
    data["single_label"]["extra"] = 1
    (folder / CALIBRATION_NAME).write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"unknown keys \['extra'\]"):
        Classifier.from_pretrained(folder, device="cpu")
    (folder / CALIBRATION_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="not a valid udtc calibration"):
        Classifier.from_pretrained(folder, device="cpu")


def test_label_permutation_invariance(clf, calibrated):
    permuted = [LABELS[2], LABELS[0], LABELS[1]]
    other = clf.calibrate(list(reversed(ROWS)), labels=permuted)
    a, b = calibrated.calibration.single_label, other.calibration.single_label
    assert a.temperature == pytest.approx(b.temperature, rel=1e-4)
    assert all(a.bias[x] == pytest.approx(b.bias[x], abs=1e-4) for x in LABELS)
    straight = calibrated.classify(TEST, LABELS, progress=False)
    turned = calibrated.classify(TEST, permuted, progress=False)
    for p, q in zip(straight, turned):
        assert p.label == q.label and all(p.scores[x] == pytest.approx(q.scores[x], abs=1e-6) for x in LABELS)


def test_a_subset_of_the_calibrated_labels_is_fine_an_unseen_label_is_refused(calibrated):
    assert calibrated.classify("rain today", ["weather", "food"]).label in {"weather", "food"}
    with pytest.raises(ValueError, match=r"labels \['music'\] were not in the calibration dev set"):
        calibrated.classify("rain today", ["weather", "music"])
    assert calibrated.uncalibrated().classify("rain today", ["weather", "music"]).label in {"weather", "music"}
    # the single-label calibration does not touch multi-label scores
    multi = calibrated.classify("rain today", ["weather", "music"], multi_label=True)
    assert multi.scores == calibrated.uncalibrated().classify("rain today", ["weather", "music"], multi_label=True).scores


def test_temperature_only_needs_no_per_label_parameter(clf, calibrated):
    t_only = clf.calibrate(ROWS, labels=LABELS, bias=False)
    cal = t_only.calibration.single_label
    assert cal.bias == {} and cal.temperature != calibrated.calibration.single_label.temperature
    raw = torch.tensor(_scores(clf), dtype=torch.float64)
    expected = torch.softmax(raw.log() / cal.temperature, -1)
    assert torch.allclose(torch.tensor(_scores(t_only), dtype=torch.float64), expected, atol=1e-5)
    assert t_only.classify("rain today", ["weather", "music"]).label in {"weather", "music"}  # any label


def _fitted(calibration: Calibration):
    s = calibration.single_label
    return round(s.temperature, 4), {k: round(v, 4) for k, v in s.bias.items()}


def test_every_input_form_gives_the_same_calibration(clf, calibrated, tmp_path):
    pd = pytest.importorskip("pandas")
    expected = _fitted(calibrated.calibration)
    for suffix, delimiter in ((".csv", ","), (".tsv", "\t")):
        path = tmp_path / f"dev{suffix}"
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["text", "label"], delimiter=delimiter)
            writer.writeheader()
            writer.writerows(ROWS)
        assert _fitted(clf.calibrate(path, labels=LABELS).calibration) == expected
    jsonl = tmp_path / "dev.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    assert _fitted(clf.calibrate(str(jsonl), labels=LABELS).calibration) == expected
    assert _fitted(clf.calibrate(pd.DataFrame(ROWS), labels=LABELS).calibration) == expected

    class ClassLabel:
        names = tuple(LABELS)

    class FakeDataset:  # what udtc uses of a datasets.Dataset with a ClassLabel column
        column_names = ("text", "label")
        features: ClassVar[dict] = {"text": object(), "label": ClassLabel()}

        def to_list(self):
            return [{"text": r["text"], "label": LABELS.index(r["label"])} for r in ROWS]

    assert _fitted(clf.calibrate(FakeDataset(), labels=LABELS).calibration) == expected
    # other column names
    renamed = [{"sentence": r["text"], "y": r["label"]} for r in ROWS]
    assert _fitted(clf.calibrate(renamed, labels=LABELS, text_column="sentence", label_column="y").calibration) == expected


@pytest.mark.parametrize(
    ("data", "kwargs", "error", "match"),
    [
        ([], {}, ValueError, "dev data has no rows"),
        ([{"text": "", "label": "sports"}], {}, ValueError, "no row with both a text and a label"),
        (ROWS, {"labels": [*LABELS, "music"]}, ValueError, r"labels \['music'\] have no example in the dev data"),
        (ROWS, {"labels": ["sports", "weather"]}, ValueError, r"not in the label set: \['food'\]"),
        ([{"text": "a", "label": ["sports", "food"]}], {}, ValueError, "pass multi_label=True"),
        (ROWS[:5], {}, ValueError, "at least two labels"),
        (ROWS, {"l2": -1}, ValueError, "l2 must be"),
        (ROWS, {"abstain_precision": 2}, ValueError, "abstain_precision must be"),
        (ROWS, {"min_positives": 0}, ValueError, "min_positives"),
        ("missing.csv", {}, FileNotFoundError, "no such input file"),
        (42, {}, TypeError, "must be a .csv/.tsv/.jsonl path"),
    ],
)
def test_bad_dev_data_gets_a_clear_error(clf, data, kwargs, error, match):
    with pytest.raises(error, match=match):
        clf.calibrate(data, **kwargs)


def test_fit_single_label_recovers_a_known_temperature_and_bias():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(4000, 3, generator=gen, dtype=torch.float64) * 3  # (n, L)
    true_bias, true_t = torch.tensor([0.8, -0.3, -0.5], dtype=torch.float64), 2.0
    gold = torch.multinomial(torch.softmax((z + true_bias) / true_t, -1), 1, generator=gen).squeeze(1)
    fitted = fit_single_label(torch.log_softmax(z, -1), gold, ["a", "b", "c"], l2=0.0)
    assert fitted.temperature == pytest.approx(true_t, rel=0.1)
    centred = true_bias - true_bias.mean()
    assert [fitted.bias[x] for x in "abc"] == pytest.approx(centred.tolist(), abs=0.25)


def test_few_examples_of_many_labels_give_small_biases_and_no_overconfidence():
    # scores that carry no information, 10 labels x 4 examples: the cross-validated penalty and the
    # out-of-fold temperature must leave probabilities near uniform (1/10) on new texts
    gen = torch.Generator().manual_seed(2)
    labels = [f"l{j}" for j in range(10)]
    z = torch.randn(40, 10, generator=gen, dtype=torch.float64) * 2  # (n, L)
    gold = torch.arange(10).repeat(4)
    fitted = fit_single_label(torch.log_softmax(z, -1), gold, labels, keys=[f"text {i}" for i in range(40)])
    new = torch.log_softmax(torch.randn(2000, 10, generator=gen, dtype=torch.float64) * 2, -1)
    p = torch.softmax((new + torch.tensor([fitted.bias[x] for x in labels])) / fitted.temperature, -1)
    assert p.max(-1).values.mean() < 0.2
    assert torch.softmax(new, -1).max(-1).values.mean() > 0.35  # what the uncalibrated scores claim


def test_folds_ignore_row_order_and_the_penalty_is_chosen_from_the_grid():
    gen = torch.Generator().manual_seed(3)
    z = torch.log_softmax(torch.randn(60, 3, generator=gen, dtype=torch.float64), -1)
    gold = torch.arange(3).repeat(20)
    keys = [f"row {i}" for i in range(60)]
    a = fit_single_label(z, gold, ["a", "b", "c"], keys=keys)
    order = torch.randperm(60, generator=gen)
    b = fit_single_label(z[order], gold[order], ["a", "b", "c"], keys=[keys[i] for i in order])
    assert a.temperature == pytest.approx(b.temperature, rel=1e-6)
    assert [a.bias[x] for x in "abc"] == pytest.approx([b.bias[x] for x in "abc"], abs=1e-6)
    assert _folds(gold, 4, keys).bincount().tolist() == [15, 15, 15, 15]
    assert len(L2_GRID) > 1 and min(L2_GRID) > 0


def test_abstain_threshold_reaches_the_precision_on_the_dev_set(clf):
    cal = clf.calibrate(ROWS, labels=LABELS, abstain_precision=0.5).calibration.single_label
    if cal.abstain is not None:
        assert 0 <= cal.abstain <= 1
    gen = torch.Generator().manual_seed(1)

    def draw(n):  # labels drawn from softmax(z): the more confident a score, the likelier it is right
        z = torch.randn(n, 2, generator=gen, dtype=torch.float64) * 3
        gold = torch.multinomial(torch.softmax(z, -1), 1, generator=gen).squeeze(1)
        return torch.log_softmax(z, -1), gold

    log_p, gold = draw(300)
    fitted = fit_single_label(log_p, gold, ["a", "b"], abstain_precision=0.95)
    new_log_p, new_gold = draw(20000)  # the threshold is read off out-of-fold scores: it should hold on new texts
    p = torch.softmax((new_log_p + torch.tensor([fitted.bias["a"], fitted.bias["b"]])) / fitted.temperature, -1)
    kept = p.max(-1).values >= fitted.abstain
    assert 0 < kept.sum() < len(new_gold)
    assert (p.argmax(-1)[kept] == new_gold[kept]).double().mean() >= 0.93


def test_best_threshold_and_multi_label_fallback():
    scores = torch.tensor([0.1, 0.2, 0.35, 0.4, 0.8, 0.9])
    truth = torch.tensor([False, False, False, True, True, True])
    threshold, f1 = best_threshold(scores, truth)
    assert 0.35 < threshold <= 0.4 and f1 == 1.0
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.6], [0.2, 0.1], [0.1, 0.3]], dtype=torch.float64)
    truth2 = torch.tensor([[1, 0], [1, 0], [1, 1], [0, 0], [0, 0]], dtype=torch.bool)
    fitted = fit_multi_label(probs, truth2, ["a", "b"], min_positives=2)
    assert fitted.fallback_labels == ["b"] and fitted.thresholds["b"] == fitted.fallback_threshold
    assert 0.2 < fitted.thresholds["a"] <= 0.7 and fitted.examples == {"a": 3, "b": 1}


def test_multi_label_calibration_sets_thresholds_keeps_the_single_label_part(clf, calibrated, tmp_path):
    rows = [{"text": t, "label": [y, "food"] if i == 0 else [y]} for y, texts in TEXTS.items() for i, t in enumerate(texts)]
    both = calibrated.calibrate(rows, labels=LABELS, multi_label=True)
    assert both.calibration.single_label == calibrated.calibration.single_label
    thresholds = both.calibration.multi_label.thresholds
    assert set(thresholds) == set(LABELS)
    p = both.classify(TEST[0], LABELS, multi_label=True)
    assert p.labels == [x for x in sorted(LABELS, key=lambda x: -p.scores[x]) if p.scores[x] >= thresholds[x]]
    with pytest.raises(ValueError, match="not in the calibration dev set"):
        both.classify(TEST[0], ["sports", "music"], multi_label=True)
    assert both.classify(TEST[0], ["sports", "music"], multi_label=True, threshold=0.5).multi_label  # caller's threshold
    again = Classifier.from_pretrained(both.save_pretrained(tmp_path / "both"), device="cpu")
    assert again.calibration == both.calibration


def test_prior_batch_equals_a_hand_computation(clf):
    texts = TEST + ["rain and wind", "bread and soup"]
    raw = torch.tensor(_scores(clf, texts), dtype=torch.float64)
    log_p = raw.log()
    expected = torch.softmax(log_p - log_p.mean(0, keepdim=True), -1)
    got = torch.tensor(_scores(clf, texts, prior="batch"), dtype=torch.float64)
    assert torch.allclose(got, expected, atol=1e-5)
    # per label-set group: two label sets are corrected separately
    mixed = clf.classify(texts + texts, [LABELS] * len(texts) + [LABELS[:2]] * len(texts), prior="batch", progress=False)
    assert _flat([[p.scores[x] for x in LABELS] for p in mixed[: len(texts)]]) == pytest.approx(_flat(expected.tolist()), abs=1e-5)
    two = torch.tensor(_scores(clf, texts, labels=LABELS[:2]), dtype=torch.float64).log()
    expected_two = torch.softmax(two - two.mean(0, keepdim=True), -1)
    assert _flat([[p.scores[x] for x in LABELS[:2]] for p in mixed[len(texts):]]) == pytest.approx(_flat(expected_two.tolist()), abs=1e-5)


def test_prior_sinkhorn_balances_the_labels(clf):
    texts = TEST * 3
    got = torch.tensor(_scores(clf, texts, prior="sinkhorn"), dtype=torch.float64)
    assert torch.allclose(got.sum(1), torch.ones(len(texts), dtype=torch.float64), atol=1e-6)
    assert torch.allclose(got.sum(0), torch.full((3,), len(texts) / 3, dtype=torch.float64), atol=1e-3)


def test_prior_bad_uses_and_a_callable(clf, calibrated):
    with pytest.raises(ValueError, match="unknown prior 'mean'"):
        clf.classify(TEST, LABELS, prior="mean")
    with pytest.raises(ValueError, match="at least 2 texts"):
        clf.classify(TEST[0], LABELS, prior="batch")
    with pytest.raises(ValueError, match="prior= corrects single-label"):
        clf.classify(TEST, LABELS, prior="batch", multi_label=True)
    with pytest.raises(TypeError, match="prior must be"):
        clf.classify(TEST, LABELS, prior=3)
    seen = []

    def reference(logits, labels):  # e.g. a fixed per-label bias from reference texts
        seen.append(tuple(labels))
        return logits - torch.tensor([math.log(2.0), 0.0, 0.0], dtype=logits.dtype)

    got = torch.tensor(_scores(clf, prior=reference), dtype=torch.float64)
    raw = torch.tensor(_scores(clf), dtype=torch.float64)
    assert seen == [tuple(LABELS)]
    assert torch.allclose(got, torch.softmax(raw.log() - torch.tensor([math.log(2.0), 0, 0], dtype=torch.float64), -1), atol=1e-5)
    with pytest.raises(RuntimeError, match="prior correction returned"):
        clf.classify(TEST, LABELS, prior=lambda logits, labels: logits[:1])
    # calibration first, then the prior: (z + b) / T, centred
    cal = calibrated.calibration.single_label
    z = (raw.log() + torch.tensor([cal.bias[x] for x in LABELS], dtype=torch.float64)) / cal.temperature
    z = torch.log_softmax(z, -1)
    expected = torch.softmax(z - z.mean(0, keepdim=True), -1)
    assert torch.allclose(torch.tensor(_scores(calibrated, prior="batch"), dtype=torch.float64), expected, atol=1e-5)


@pytest.mark.parametrize("backend", ["cosine", "nli", "gliclass", "sce", "llm-prompt", "llm-head"])
def test_every_backend_calibrates_saves_and_reloads(tiny_models, backend, tmp_path):
    from udtc import available_backends

    if backend not in available_backends():
        pytest.skip(f"{backend} is not registered")
    model = Classifier.from_pretrained(tiny_models(backend), device="cpu")
    rows = [r for r in ROWS if r["label"] != "food"][:6] + [r for r in ROWS if r["label"] == "food"][:2]
    cal = model.calibrate(rows, labels=LABELS)
    folder = cal.save_pretrained(tmp_path / backend)
    again = Classifier.from_pretrained(folder, device="cpu")
    assert again.calibration == cal.calibration
    assert _flat(_scores(again, TEST[:2])) == pytest.approx(_flat(_scores(cal, TEST[:2])), abs=1e-5)


def test_cli_calibrate(clf, tiny_models, tmp_path, capsys):
    dev = tmp_path / "dev.csv"
    with dev.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(ROWS)
    out = tmp_path / "calibrated"
    model = str(tiny_models("cosine"))
    assert main(["calibrate", "--model", model, "--dev", str(dev), "--output", str(out), "--labels", ",".join(LABELS)]) == 0
    err = capsys.readouterr().err
    assert "temperature" in err and "saved to" in err
    assert Classifier.from_pretrained(out, device="cpu").calibration is not None
    assert main(["calibrate", "--model", model, "--dev", str(dev), "--output", str(out)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["calibrate", "--model", model, "--dev", str(dev), "--output", str(tmp_path / "x"),
                 "--labels", "sports,weather"]) == 2
    assert "not in the label set" in capsys.readouterr().err
    t_only = tmp_path / "t_only"
    assert main(["calibrate", "--model", model, "--dev", str(dev), "--output", str(t_only), "--no-bias"]) == 0
    assert Classifier.from_pretrained(t_only, device="cpu").calibration.single_label.bias == {}
    multi = tmp_path / "multi"
    assert main(["calibrate", "--model", model, "--dev", str(dev), "--output", str(multi), "--multi-label"]) == 0
    assert "multi-label thresholds" in capsys.readouterr().err
    assert main(["classify", "rain today", "--model", str(multi), "--labels", "weather,food", "--multi-label"]) == 0


@pytest.mark.integration
def test_the_multi_label_example_chooses_politics():
    # examples/multi_label_and_descriptions.py with the default model and its measured multi-label shift
    clf = Classifier.from_pretrained(device="cpu")
    text = "The team's new stadium deal was approved by the city council after a heated vote"
    labels = {"sports": "sports, teams, matches and athletes", "politics": "politics, governments, councils and votes",
              "business": "business deals, companies and money", "weather": "weather, rain, storms and temperatures"}
    p = clf.classify(text, labels, multi_label=True, threshold={"sports": 0.5, "politics": 0.5, "business": 0.6, "weather": 0.5})
    assert "politics" in p.labels and "weather" not in p.labels
