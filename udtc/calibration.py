"""Calibration: scores a user can threshold, fitted in seconds from a few labelled examples per label.

``Classifier.calibrate(dev)`` scores a small labelled dev set once with the frozen model and fits:

* single-label: a temperature ``T`` and a bias per label ``b_y``, applied before the softmax as
  ``p = softmax((z + b) / T)`` (temperature scaling, "On Calibration of Modern Neural Networks",
  arXiv 1706.04599, Sec. 4.2, with the bias vector of its vector scaling tied to one scale). ``b``
  corrects each label name's prior (a label the model favours on every text gets a negative bias).
  The biases are the penalised-likelihood fit ``NLL + l2 * sum(b^2) / n`` (a zero-mean Gaussian prior
  on each bias), with ``l2`` chosen by 4-fold cross-validation; the temperature and the optional
  abstain threshold (the smallest top probability at which the kept predictions reach
  ``abstain_precision``) are fitted on the out-of-fold scores, because biases fitted on the same few
  examples make them look easier than new texts are (an in-sample temperature comes out too low:
  overconfident). T is kept in [1/20, 20]: a handful of examples can be separable;
* multi-label: one threshold per label on its sigmoid score, the one that maximises that label's
  F1 on the dev set; a label with fewer than ``min_positives`` positive (or no negative) dev
  examples gets the fallback: the single threshold that maximises the micro-F1 pooled over all labels.

Every parameter is keyed by label name, never by position, so permuting labels permutes scores.
At classify time a label the calibration has no parameter for is refused (no silent fallback);
a calibration fitted in one mode leaves the other mode's scores as they were.
Saved as ``calibration.json`` next to ``udtc_config.json``; unknown keys are an error.
"""

from __future__ import annotations

import hashlib
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
L2_GRID = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)  # bias penalties tried by cross-validation (l2=None)
FOLDS = 4  # cross-validation folds of the single-label fit


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
def fit_single_label(log_p: torch.Tensor, gold: torch.Tensor, labels: Sequence[str], *, l2: float | None = None,
                     abstain_precision: float | None = None, fit_bias: bool = True, folds: int = FOLDS,
                     keys: Sequence[str] | None = None) -> SingleLabelCalibration:
    """Biases by penalised likelihood, a temperature and the abstain threshold by cross-fitting.

    ``log_p`` (n, L): the uncalibrated log-probabilities (logits up to a constant per row, which the
    softmax ignores); ``gold`` (n,): index of each row's label in ``labels``; ``keys`` (n,): what
    the folds are drawn from (the texts; default: the row numbers).

    With a few examples per label, biases fitted on the same rows as the temperature make those rows
    look easier than new ones are, and the temperature comes out too low (overconfident). So:

    1. ``b`` and ``T`` minimise ``NLL(softmax((z + b) / T)) + l2 * sum(b^2) / n`` (a Gaussian prior on
       each bias, mean 0: a label with few examples keeps a small correction). ``l2=None`` chooses it
       from :data:`L2_GRID` by ``folds``-fold cross-validation (stratified by label): the value whose
       out-of-fold predictions have the lowest NLL.
    2. The temperature is refitted on the out-of-fold logits ``z_i + b_(-fold(i))`` of that value, so
       it sees the biases as new texts will; the abstain threshold is read off the same out-of-fold
       probabilities.
    """
    z = log_p.double()  # (n, L)
    n, num_labels = z.shape
    if not fit_bias:
        temperature = float(_fit(z[None], gold, torch.ones(1, n), torch.zeros(1), fit_bias=False)[1][0])
        out_of_fold, bias = z, torch.zeros(num_labels, dtype=torch.float64)  # (n, L), (L,)
    else:
        grid = torch.tensor(L2_GRID if l2 is None else (l2,), dtype=torch.float64)  # (G,)
        fold = _folds(gold, folds, keys if keys is not None else [str(i) for i in range(n)])  # (n,)
        held_out = fold[None] == torch.arange(folds)[:, None]  # (K, n)
        # every (penalty, fold) pair is its own problem; their losses add up, so one L-BFGS run solves them all
        keep = (~held_out).double().repeat(len(grid), 1)  # (G*K, n): the rows each problem is fitted on
        b = _fit(z.expand(len(keep), n, num_labels), gold, keep, grid.repeat_interleave(folds))[0]  # (G*K, L)
        shift = held_out.double().T @ b.view(len(grid), folds, num_labels)  # (n, K) @ (G, K, L) -> (G, n, L)
        oof = z[None] + shift  # (G, n, L): each row shifted by the biases fitted without its fold
        t = _fit(oof, gold, torch.ones(len(grid), n), torch.zeros(len(grid)), fit_bias=False)[1]  # (G,)
        nll = torch.stack([torch.nn.functional.cross_entropy(oof[g] / t[g], gold) for g in range(len(grid))])  # (G,)
        best = int(nll.argmin())
        bias = _fit(z[None], gold, torch.ones(1, n), grid[best : best + 1])[0][0]  # (L,)
        out_of_fold, temperature = oof[best], float(t[best])
    bias = bias - bias.mean()  # a common shift changes no probability
    if not math.isfinite(temperature) or not all(math.isfinite(x) for x in bias.tolist()):
        raise RuntimeError("calibration did not converge (non-finite temperature or bias); check the dev set")
    counts = torch.bincount(gold, minlength=len(labels)).tolist()
    cal = SingleLabelCalibration(temperature, {x: float(v) for x, v in zip(labels, bias.tolist())} if fit_bias else {},
                                 examples=dict(zip(labels, counts)))
    if abstain_precision is not None:
        p = torch.softmax(out_of_fold / temperature, dim=-1)  # (n, L), out of fold: what new texts would get
        cal.abstain = abstain_threshold(p.max(-1).values, p.argmax(-1) == gold, abstain_precision)
    return cal


def _fit(z: torch.Tensor, gold: torch.Tensor, weight: torch.Tensor, l2: torch.Tensor, fit_bias: bool = True
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """P independent problems solved at once: (b_p, T_p) minimising, for each p,
    ``mean_i[weight_pi * NLL_i(softmax((z_pi + b_p) / T_p))] + l2_p * sum(b_p^2) / n_p``.

    ``z`` (P, n, L), ``gold`` (n,), ``weight`` (P, n) 0/1 rows of each problem, ``l2`` (P,).
    Returns b (P, L) and T (P,), T kept in [1/20, 20]."""
    num, rows, num_labels = z.shape
    weight = weight.double()
    count = weight.sum(1).clamp_min(1)  # (P,)
    bias = torch.zeros(num, 1, num_labels, dtype=torch.float64, requires_grad=fit_bias)  # (P, 1, L)
    log_t = torch.zeros(num, 1, 1, dtype=torch.float64, requires_grad=True)  # T = exp(log_t), starts at 1
    target = gold.expand(num, rows)  # (P, n)
    optimizer = torch.optim.LBFGS([bias, log_t] if fit_bias else [log_t], lr=1.0, max_iter=100,
                                  tolerance_grad=1e-6, line_search_fn="strong_wolfe")

    def loss_fn() -> torch.Tensor:
        optimizer.zero_grad()
        log_t.data.clamp_(-LOG_T_LIMIT, LOG_T_LIMIT)  # a separable (or hopeless) dev set would drive T to 0 (or inf)
        log_p = torch.log_softmax((z + bias) / log_t.exp(), dim=-1)  # (P, n, L)
        nll = -log_p.gather(2, target[..., None])[..., 0]  # (P, n)
        loss = ((nll * weight).sum(1) + l2 * bias.pow(2).sum((1, 2))) / count  # (P,)
        loss.sum().backward()
        return loss.sum()

    with torch.enable_grad():
        optimizer.step(loss_fn)
    return bias.detach()[:, 0], log_t.detach().clamp(-LOG_T_LIMIT, LOG_T_LIMIT).exp().flatten()


def _folds(gold: torch.Tensor, folds: int, keys: Sequence[str]) -> torch.Tensor:
    """A fold index per row (n,): each label's rows, ordered by a hash of their key (the text), dealt
    round-robin; so the folds depend on neither the row order nor the label order."""
    fold = torch.empty(len(gold), dtype=torch.long)
    for label in gold.unique().tolist():
        rows = sorted((gold == label).nonzero().flatten().tolist(),
                      key=lambda i: hashlib.sha256(keys[i].encode("utf-8")).hexdigest())
        fold[rows] = torch.arange(len(rows)) % folds
    return fold


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
              template: str | None = None, batch_size: int = 32, l2: float | None = None,
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
        l2: single-label: weight of the penalty ``l2 * sum(b^2) / n`` on the biases (larger keeps them
            nearer 0); None (default) chooses it by cross-validation on the dev set from
            ``udtc.calibration.L2_GRID``.
        abstain_precision: single-label: also fit an abstain threshold, the smallest top probability
            at which the kept dev predictions reach this precision (read off the out-of-fold
            probabilities, so not the optimistic in-sample ones).
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
    raw = clf.uncalibrated()  # the same weights, uncalibrated scores
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
                                  abstain_precision=abstain_precision, fit_bias=bias, keys=list(dev.texts))
        new = Calibration(fitted, old.multi_label)
    return type(clf)(clf.backend, labels=clf.labels, base_model=clf.base_model, calibration=new, source=clf.source)
