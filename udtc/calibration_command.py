"""The ``udtc calibrate`` subcommand: fit a calibration on a labelled dev file and save the calibrated model."""

from __future__ import annotations

import sys
from pathlib import Path


def add_calibrate_command(sub) -> None:
    """Register ``calibrate`` on the ``udtc`` CLI's subparsers (imports nothing heavy)."""
    c = sub.add_parser("calibrate", help="calibrate scores from a few labelled examples per label (seconds, CPU)",
                       description="Fit a temperature and per-label biases (single-label) or per-label thresholds "
                                   "(--multi-label) on the labelled rows of --dev, and save the calibrated model "
                                   "to --output. See README, Calibration.")
    c.add_argument("--model", default=None, help="folder or Hub id (default: the embedded default model)")
    c.add_argument("--dev", required=True, help="a .csv, .tsv or .jsonl file of labelled texts (a few per label)")
    c.add_argument("--output", required=True, type=Path, help="folder for the calibrated model")
    c.add_argument("--labels", default=None, help="comma-separated label set (default: the model's, else the dev data's)")
    c.add_argument("--multi-label", action="store_true", help="fit per-label thresholds for multi-label classification")
    c.add_argument("--text-column", default="text")
    c.add_argument("--label-column", default="label")
    c.add_argument("--label-separator", default=None, help='split labels on it for multi-label rows, e.g. "|"')
    c.add_argument("--template", default=None, help="the template you will classify with (default: the backend's)")
    c.add_argument("--no-bias", action="store_true",
                   help="single-label: fit the temperature only (no per-label biases; for a dev set whose label mix "
                        "differs from what you will classify)")
    c.add_argument("--abstain-precision", type=float, default=None,
                   help="single-label: also fit an abstain threshold reaching this precision on the dev set")
    c.add_argument("--backend", default=None, help="force a backend (default: detected from the model)")
    c.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
    c.add_argument("--overwrite", action="store_true", help="replace a non-empty --output folder")
    c.set_defaults(func=run_calibrate)


def run_calibrate(args) -> int:
    from udtc.classifier import Classifier

    out = Path(args.output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pick another --output or pass --overwrite")
    labels = [x.strip() for x in args.labels.split(",") if x.strip()] if args.labels is not None else None
    if labels == []:
        raise ValueError(f"--labels {args.labels!r} names no label; pass a,b,c or leave it out (the model's or the dev "
                         "data's labels)")
    clf = Classifier.from_pretrained(args.model, backend=args.backend, device=args.device)
    calibrated = clf.calibrate(args.dev, labels=labels, multi_label=args.multi_label, text_column=args.text_column,
                               label_column=args.label_column, label_separator=args.label_separator,
                               template=args.template, abstain_precision=args.abstain_precision,
                               bias=not args.no_bias)
    calibrated.save_pretrained(out, overwrite=args.overwrite)
    cal = calibrated.calibration
    if args.multi_label and cal and cal.multi_label:
        fitted = ", ".join(f"{k}={v:.3f}" for k, v in cal.multi_label.thresholds.items())
        print(f"udtc: multi-label thresholds {fitted}", file=sys.stderr)
    elif cal and cal.single_label:
        s = cal.single_label
        print(f"udtc: temperature {s.temperature:.3f}, biases "
              + ", ".join(f"{k}={v:+.3f}" for k, v in s.bias.items())
              + (f", abstain below {s.abstain:.3f}" if s.abstain is not None else ""), file=sys.stderr)
    print(f"udtc: saved to {out} (load it with Classifier.from_pretrained({str(out)!r}))", file=sys.stderr)
    return 0
