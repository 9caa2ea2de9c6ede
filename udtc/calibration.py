"""Calibration: scores a user can threshold, fitted in seconds from a few labelled examples per label.

``Classifier.calibrate(dev)`` scores a small labelled dev set once with the frozen model and fits:

* single-label: a temperature ``T`` and a bias per label ``b_y``, applied before the softmax as
  ``p = softmax((z + b) / T)`` (temperature scaling, "On Calibration of Modern Neural Networks",
  arXiv 1706.04599, Sec. 4.2, with the bias vector of its vector scaling tied to one scale), fitted by
  minimising the dev negative log-likelihood plus ``l2 * (mean(b^2) + log(T)^2)`` (T kept in [1/20, 20]:
  a handful of examples can be separable, which alone would send T to 0); ``b`` corrects each label
  name's prior (a label the model favours on every text gets a negative bias); optionally an
  abstain threshold (the smallest top probability at which the kept dev predictions reach
  ``abstain_precision``);
* multi-label: one threshold per label on its sigmoid score, the one that maximises that label's
  F1 on the dev set; a label with fewer than ``min_positives`` positive (or no negative) dev
  examples gets the fallback: the single threshold that maximises the micro-F1 pooled over all labels.

Every parameter is keyed by label name, never by position, so permuting labels permutes scores.
At classify time a label the calibration has no parameter for is refused (no silent fallback);
a calibration fitted in one mode leaves the other mode's scores as they were.
Saved as ``calibration.json`` next to ``udtc_config.json``; unknown keys are an error.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from udtc._version import __version__

CALIBRATION_NAME = "calibration.json"
LOG_T_LIMIT = math.log(20.0)  # the temperature stays in [1/20, 20]


@dataclass
class SingleLabelCalibration:
    temperature: float
    bias: dict[str, float]  # label -> added to its logit before dividing by the temperature; {}: temperature only
    abstain: float | None = None  # top probability below it -> Prediction.label is None
    examples: dict[str, int] = field(default_factory=dict)  # dev examples per label


@dataclass
class MultiLabelCalibration:
    thresholds: dict[str, float]  # label -> sigmoid score at or above which it is chosen
    fallback_threshold: float  # pooled micro-F1 threshold, used for labels with too few examples
    fallback_labels: list[str] = field(default_factory=list)  # labels that got the fallback
    examples: dict[str, int] = field(default_factory=dict)  # positive dev examples per label


@dataclass
class Calibration:
    """What ``Classifier.calibrate`` fitted: a single-label part, a multi-label part, or both."""

    single_label: SingleLabelCalibration | None = None
    multi_label: MultiLabelCalibration | None = None
    udtc_version: str = __version__

    # ------------------------------------------------------------------ applying
    def check(self, label_sets: Sequence[Sequence[str]], multi_label: bool, threshold_given: bool) -> None:
        """Refuse labels that need a per-label parameter this calibration does not have."""
        if multi_label and self.multi_label is not None and not threshold_given:
            known, what = set(self.multi_label.thresholds), "a calibrated threshold (or pass threshold=)"
        elif not multi_label and self.single_label is not None and self.single_label.bias:
            known, what = set(self.single_label.bias), "a calibrated bias"
        else:
            return
        unseen = sorted({x for names in label_sets for x in names if x.strip() not in known})
        if unseen:
            raise ValueError(f"labels {unseen} were not in the calibration dev set, and each label needs {what}; "
                             f"calibrated labels: {sorted(known)}. Calibrate again with examples of them, or use "
                             "the uncalibrated model (Classifier.uncalibrated())")

    def thresholds(self, multi_label: bool) -> dict[str, float] | float | None:
        """The calibrated thresholds of ``classify`` (used when the caller passes none)."""
        if multi_label:
            return dict(self.multi_label.thresholds) if self.multi_label else None
        return self.single_label.abstain if self.single_label else None

    def adjust(self, logits: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
        """Single-label logits (n, L) -> (logits + bias[label]) / T, label by label."""
        cal = self.single_label
        if cal is None:
            return logits
        bias = torch.tensor([cal.bias[x.strip()] if cal.bias else 0.0 for x in names], dtype=logits.dtype)  # (L,)
        return (logits + bias) / cal.temperature

    # ------------------------------------------------------------------ saving
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, folder: Path) -> None:
        (folder / CALIBRATION_NAME).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> Calibration | None:
        """The calibration saved in ``folder``; None when it has none."""
        path = folder / CALIBRATION_NAME
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls.from_dict(data)
        except (json.JSONDecodeError, TypeError, ValueError) as err:
            raise ValueError(f"{path} is not a valid udtc calibration ({err}); fix or delete it") from None

    @classmethod
    def from_dict(cls, data: Any) -> Calibration:
        _check_keys(data, cls, "calibration")
        single, multi = data.get("single_label"), data.get("multi_label")
        if single is not None:
            _check_keys(single, SingleLabelCalibration, "single_label")
            single = SingleLabelCalibration(**single)
            if not single.temperature > 0:
                raise ValueError(f"temperature must be > 0, got {single.temperature}")
        if multi is not None:
            _check_keys(multi, MultiLabelCalibration, "multi_label")
            multi = MultiLabelCalibration(**multi)
        return cls(single, multi, data.get("udtc_version", __version__))

    def summary(self) -> dict[str, Any]:
        """A few lines for the model card."""
        out: dict[str, Any] = {}
        if self.single_label:
            s = self.single_label
            out["single-label temperature"] = round(s.temperature, 4)
            out["single-label bias"] = {k: round(v, 4) for k, v in s.bias.items()}
            out["abstain below"] = s.abstain if s.abstain is None else round(s.abstain, 4)
            out["single-label dev examples"] = s.examples
        if self.multi_label:
            m = self.multi_label
            out["multi-label thresholds"] = {k: round(v, 4) for k, v in m.thresholds.items()}
            out["multi-label fallback threshold"] = round(m.fallback_threshold, 4)
            out["labels on the fallback"] = m.fallback_labels
        return out


def _check_keys(data: Any, cls: type, where: str) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a JSON object")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown}; known keys are {sorted(known)}")


# ---------------------------------------------------------------------------------------------- fitting
def fit_single_label(log_p: torch.Tensor, gold: torch.Tensor, labels: Sequence[str], *, l2: float = 0.01,
                     abstain_precision: float | None = None, fit_bias: bool = True) -> SingleLabelCalibration:
    """Temperature and biases minimising NLL + ``l2 * (mean(b^2) + log(T)^2)`` on the dev set.

    ``log_p`` (n, L): the uncalibrated log-probabilities (logits up to a constant per row, which the
    softmax ignores); ``gold`` (n,): index of each row's label in ``labels``."""
    z = log_p.double()  # (n, L)
    bias = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=fit_bias)  # (L,)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)  # T = exp(log_t), starts at 1
    params = [bias, log_t] if fit_bias else [log_t]
    optimizer = torch.optim.LBFGS(params, lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def loss_fn() -> torch.Tensor:
        optimizer.zero_grad()
        log_t.data.clamp_(-LOG_T_LIMIT, LOG_T_LIMIT)  # a separable (or hopeless) dev set would drive T to 0 (or inf)
        penalty = l2 * (bias.pow(2).mean() + log_t.pow(2))
        loss = torch.nn.functional.cross_entropy((z + bias) / log_t.exp(), gold) + penalty
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(loss_fn)
    b = bias.detach() - bias.detach().mean()  # a common shift changes no probability
    temperature = float(log_t.detach().clamp(-LOG_T_LIMIT, LOG_T_LIMIT).exp())
    if not math.isfinite(temperature) or not all(math.isfinite(x) for x in b.tolist()):
        raise RuntimeError("calibration did not converge (non-finite temperature or bias); check the dev set")
    counts = torch.bincount(gold, minlength=len(labels)).tolist()
    cal = SingleLabelCalibration(temperature, {x: float(v) for x, v in zip(labels, b.tolist())} if fit_bias else {},
                                 examples=dict(zip(labels, counts)))
    if abstain_precision is not None:
        p = torch.softmax((z + b) / temperature, dim=-1)  # (n, L)
        cal.abstain = abstain_threshold(p.max(-1).values, p.argmax(-1) == gold, abstain_precision)
    return cal


def abstain_threshold(top: torch.Tensor, correct: torch.Tensor, precision: float) -> float | None:
    """The smallest top probability whose kept predictions (top >= it) reach ``precision``; None if none does."""
    order = torch.argsort(top, descending=True)
    hits = correct[order].double().cumsum(0) / torch.arange(1, len(top) + 1, dtype=torch.float64)  # (n,)
    ok = (hits >= precision).nonzero().flatten()
    if len(ok) == 0:
        warnings.warn(f"no abstain threshold reaches precision {precision} on the dev set; the calibrated model "
                      "never abstains", stacklevel=3)
        return None
    return float(top[order][ok[-1]])


def best_threshold(scores: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """The threshold on ``scores`` (m,) maximising F1 against ``truth`` (m,) bool -> (threshold, F1).

    Candidates are midpoints between neighbouring distinct scores; ties go to the middle candidate."""
    values = torch.unique(scores.double())  # sorted
    candidates = torch.cat([values[:1] - 1e-6, (values[1:] + values[:-1]) / 2, values[-1:] + 1e-6]).clamp(0, 1)
    on = scores.double()[None] >= candidates[:, None]  # (C, m)
    tp = (on & truth[None]).sum(1).double()
    f1 = 2 * tp / (on.sum(1) + truth.sum()).double().clamp_min(1)  # (C,)
    best = (f1 == f1.max()).nonzero().flatten()
    i = int(best[len(best) // 2])
    return float(candidates[i]), float(f1[i])


def fit_multi_label(probs: torch.Tensor, truth: torch.Tensor, labels: Sequence[str], *,
                    min_positives: int = 3) -> MultiLabelCalibration:
    """Per-label F1-optimal thresholds on the sigmoid scores ``probs`` (n, L); ``truth`` (n, L) bool."""
    fallback, _ = best_threshold(probs.flatten(), truth.flatten())
    thresholds, fallback_labels = {}, []
    positives = truth.sum(0).tolist()
    for j, label in enumerate(labels):
        if positives[j] < min_positives or positives[j] == len(truth):
            thresholds[label] = fallback
            fallback_labels.append(label)
        else:
            thresholds[label] = best_threshold(probs[:, j], truth[:, j])[0]
    return MultiLabelCalibration(thresholds, fallback, fallback_labels, dict(zip(labels, (int(x) for x in positives))))


def calibrate(clf: Any, data: Any, *, labels: Sequence[str] | dict[str, str] | None = None, multi_label: bool = False,
              text_column: str = "text", label_column: str = "label", label_separator: str | None = None,
              template: str | None = None, batch_size: int = 32, l2: float = 0.01,
              abstain_precision: float | None = None, min_positives: int = 3, bias: bool = True,
              **options: Any) -> Any:
    """Fit a calibration on a labelled dev set; returns a NEW calibrated Classifier (this one is untouched).

    Args:
        data: labelled texts in any form ``finetune`` reads: a .csv/.tsv/.jsonl path, a list of
            dicts, a pandas DataFrame or a ``datasets.Dataset`` (columns ``text_column``/``label_column``;
            multi-label rows hold a list of labels, or a string split on ``label_separator``).
        labels: the label set to calibrate (names, or a dict name -> description); default: the
            model's own labels, else the labels found in ``data``. Every label needs dev examples.
        multi_label: fit per-label thresholds for ``classify(..., multi_label=True)`` instead of a
            temperature and biases for single-label classification.
        template, batch_size, **options: as in ``classify`` (use the same ones when classifying).
        l2: weight of the penalty on the biases and log(T) (single-label); larger keeps them nearer 0 and 1.
        abstain_precision: single-label: also fit an abstain threshold, the smallest top probability
            at which the kept dev predictions reach this precision (in-sample, so optimistic).
        min_positives: multi-label: labels with fewer positive dev examples (or no negative one) get
            the pooled fallback threshold.
        bias: single-label: fit the per-label biases. They assume the dev set's label mix is the one
            you will classify (a balanced dev set pushes a rare label up: it hurt SMS spam, 12 % spam,
            in docs/benchmarks.md); ``bias=False`` fits the temperature only, which needs no
            per-label parameter, so it takes any label at classify time.

    The new classifier shares this one's weights; ``save_pretrained`` writes ``calibration.json``.
    A calibration of the other mode (single/multi-label) already present is kept.
    """
    from udtc.training.data import load_examples

    for name, value, low, high in (("l2", l2, 0.0, math.inf), ("abstain_precision", abstain_precision, 0.0, 1.0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high):
            raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    if isinstance(min_positives, bool) or not isinstance(min_positives, int) or min_positives < 1:
        raise ValueError(f"min_positives must be a positive integer, got {min_positives!r}")
    dev = load_examples(data, text_column=text_column, label_column=label_column, label_separator=label_separator,
                        what="dev")
    if dev.multi_label and not multi_label:
        raise ValueError("the dev data has rows with several labels; pass multi_label=True to fit multi-label thresholds")
    spec = labels if labels is not None else (clf.labels or dev.labels)
    names = [x.strip() for x in (spec if isinstance(spec, dict) else list(spec))]
    outside = sorted({x for target in dev.targets for x in target} - set(names))
    if outside:
        raise ValueError(f"the dev data has labels that are not in the label set: {outside}; label set: {names}. "
                         "Add them to labels=..., or drop those rows")
    counts = dev.counts()
    missing = [x for x in names if counts.get(x, 0) == 0]
    if missing:
        raise ValueError(f"labels {missing} have no example in the dev data, so nothing can be fitted for them; "
                         "add examples of them, or leave them out of labels=...")
    if not multi_label and len(names) < 2:
        raise ValueError(f"single-label calibration needs at least two labels, got {names}")
    raw = type(clf)(clf.backend, labels=clf.labels, base_model=clf.base_model)  # uncalibrated scores
    preds = raw.classify(list(dev.texts), spec, multi_label=multi_label, template=template, batch_size=batch_size,
                         progress=False, **options)
    scores = torch.tensor([[p.scores[x] for x in names] for p in preds], dtype=torch.float64)  # (n, L)
    old = clf.calibration or Calibration()
    if multi_label:
        truth = torch.tensor([[x in target for x in names] for target in dev.targets])  # (n, L)
        new = Calibration(old.single_label, fit_multi_label(scores, truth, names, min_positives=min_positives))
    else:
        gold = torch.tensor([names.index(target[0]) for target in dev.targets])  # (n,)
        fitted = fit_single_label(scores.clamp_min(1e-300).log(), gold, names, l2=l2,
                                  abstain_precision=abstain_precision, fit_bias=bias)
        new = Calibration(fitted, old.multi_label)
    return type(clf)(clf.backend, labels=clf.labels, base_model=clf.base_model, calibration=new)
