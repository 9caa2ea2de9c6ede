"""The ``udtc`` command line. Errors print one line and exit non-zero."""

from __future__ import annotations

import argparse
import itertools
import json
import re
import signal
import sys
from pathlib import Path
from typing import Any

from udtc import atomic
from udtc._version import __version__
from udtc.io import OUTPUT_SUFFIXES, RowWriter, Scan, iter_rows, result_columns, result_row, scan

EXIT_ERROR = 2
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a job scheduler) unwinds like Ctrl-C: half-written outputs are removed."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_ERROR
    from udtc.logs import get_logger, set_verbosity

    level = get_logger("udtc").level
    if args.quiet or args.verbose:
        set_verbosity("error" if args.quiet else "debug" if args.verbose > 1 else "info")
    # a command that handles SIGTERM itself (`udtc serve`: uvicorn shuts down gracefully, then re-raises it to the
    # handler it found) sets `own_sigterm`; the others unwind like Ctrl-C
    own = getattr(args, "own_sigterm", False)
    previous = signal.getsignal(signal.SIGTERM) if own else signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except KeyboardInterrupt as err:
        print("udtc: terminated" if isinstance(err, Terminated) else "udtc: interrupted", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(err, Terminated) else 130
    except Exception as err:  # noqa: BLE001 - one line, never a traceback, for the errors udtc expects
        full = atomic.disk_error(err, getattr(args, "output", None) or "the output")
        if full is None and not isinstance(err, (ValueError, TypeError, OSError, KeyError, RuntimeError, ImportError)):
            raise
        err = full or err
        message = str(err).splitlines()[0] if str(err) else err.__class__.__name__
        print(f"udtc: error: {cli_words(message)}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        signal.signal(signal.SIGTERM, previous)
        set_verbosity(level)


#: keyword arguments of the Python API that messages name, and the CLI flags that set them
_FLAGS = ("overwrite", "multi_label", "batch_size", "top_k", "threshold", "template", "text_column", "label_column",
          "label_separator", "hypothesis_column", "learning_rate", "max_length", "push_to_hub", "merge", "method",
          "epochs", "shots", "patience", "labels", "eval", "device", "backend", "optim", "loss", "negatives")


def cli_words(message: str) -> str:
    """A library message in the CLI's words: ``overwrite=True`` -> ``--overwrite``, ``top_k`` -> ``--top-k``."""
    names = "|".join(_FLAGS)
    message = re.sub(rf"\b({names})=True\b", lambda m: "--" + m[1].replace("_", "-"), message)
    message = re.sub(rf"\b({names})=\[\.\.\.\]", lambda m: f"--{m[1]} a,b", message)
    message = re.sub(rf"\b({names})=(?=[\w'\".])", lambda m: "--" + m[1].replace("_", "-") + " ", message)
    return re.sub(rf"(?<![\w-])({names})(?= must| is| needs)", lambda m: "--" + m[1].replace("_", "-"), message)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="udtc", description="User-defined text classification: name the labels at call time.")
    parser.add_argument("--version", action="version", version=f"udtc {__version__}")
    loud = parser.add_mutually_exclusive_group()
    loud.add_argument("-q", "--quiet", action="store_true", help="print errors only (env: UDTC_VERBOSITY=error)")
    loud.add_argument("-v", "--verbose", action="count", default=0, help="print info messages; -vv debug too "
                      "(env: UDTC_VERBOSITY=info|debug)")
    sub = parser.add_subparsers(metavar="command")

    c = sub.add_parser("classify", help="classify texts against labels you name",
                       description="Classify TEXT arguments, or the rows of --input, against --labels.")
    c.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify (or use --input)")
    c.add_argument("--labels", help="comma-separated labels, e.g. sports,politics,cooking")
    c.add_argument("--label", action="append", default=[], help="one label (repeatable; for labels that contain commas)")
    c.add_argument("--model", default=None, help="folder, .gguf file or Hub id (default: the embedded default model)")
    c.add_argument("--backend", default=None, help="force a backend (default: detected from the model)")
    c.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
    c.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16", "auto"),
                   help="weights' precision (default float32; auto: bfloat16 where the CPU has it natively)")
    c.add_argument("--input", type=Path, help="a .csv, .tsv, .jsonl, .txt or .parquet file of texts (read in chunks: "
                   "any size; .parquet needs udtc[parquet])")
    c.add_argument("--text-column", default="text", help="column (csv/tsv) or key (jsonl) holding the text")
    c.add_argument("--output", type=Path, help="write results to a .csv, .jsonl or .parquet file (complete when it "
                   "appears: written beside it and renamed at the end)")
    c.add_argument("--multi-label", action="store_true", help="score each label independently")
    c.add_argument("--threshold", type=float, default=None, help="score a label needs to be chosen, in [0, 1]")
    c.add_argument("--top-k", type=int, default=None, help="how many labels to list per text")
    c.add_argument("--template", default=None, help='how a label is phrased for the model, e.g. "This text is about {}."')
    c.add_argument("--batch-size", type=int, default=32)
    c.add_argument("--chunk-size", type=int, default=10000, help="rows of --input read, classified and written at "
                   "a time (memory is bounded by it, not by the file's size)")
    c.add_argument("--json", action="store_true", help="print one JSON object per text")
    c.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    c.add_argument("--prefix", default="", help="prefix of udtc's output columns (label, labels, score, scores, "
                   "truncated), e.g. udtc_, when the input has columns of those names")
    c.set_defaults(func=_classify)

    f = sub.add_parser("finetune", help="fine-tune a model on labelled texts (few-shot or full)",
                       description="Fine-tune --model on the labelled rows of --train and save it to --output "
                                   "(rerun the same command to resume an interrupted run). See docs/finetune.md.")
    f.add_argument("--model", default=None, help="folder or Hub id to start from (default: the embedded default model)")
    f.add_argument("--train", required=True, help="a .csv, .tsv or .jsonl file of labelled texts")
    f.add_argument("--eval", default=None, help="labelled texts evaluated after each epoch (keeps the best epoch)")
    f.add_argument("--output", required=True, type=Path, help="folder for checkpoints and the fine-tuned model")
    f.add_argument("--text-column", default="text")
    f.add_argument("--label-column", default="label")
    f.add_argument("--label-separator", default=None, help='split labels on it for multi-label, e.g. "|"')
    f.add_argument("--hypothesis-column", default=None, help="train an NLI cross-encoder on premise (--text-column) / "
                   "hypothesis pairs labelled entailment/neutral/contradiction (see docs/finetune.md)")
    f.add_argument("--shots", type=int, default=None, help="use N examples per label (sampled with --seed)")
    f.add_argument("--method", default=None, help="lora, qlora, full, head, sparse or instruction (llm-prompt), as the backend allows (default: the "
                   "first the backend supports of lora, full, head)")
    f.add_argument("--epochs", type=int, default=None, help="default: the backend's benchmarked recipe for the method "
                   "(e.g. cosine lora 10, gliclass full 20), else 10")
    f.add_argument("--learning-rate", type=float, default=None, help="default: the backend's benchmarked recipe for the "
                   "method (e.g. cosine lora 3e-3), else by method: full 5e-5, lora 1e-3, qlora 2e-4, head 1e-3")
    f.add_argument("--batch-size", type=int, default=16)
    f.add_argument("--gradient-accumulation-steps", type=int, default=1)
    f.add_argument("--max-length", type=int, default=None, help="token limit of the texts (default: the model's)")
    f.add_argument("--lr-scheduler", default="linear", help="linear, cosine or constant (after warmup)")
    f.add_argument("--warmup-ratio", type=float, default=0.1)
    f.add_argument("--patience", type=int, default=None, help="early stopping: epochs without a better eval macro-F1")
    f.add_argument("--lora-r", type=int, default=None, help="LoRA rank (default: the backend's, else 8)")
    f.add_argument("--lora-alpha", type=float, default=None, help="LoRA scale numerator (default: the backend's, else 16)")
    f.add_argument("--lora-dropout", type=float, default=None, help="LoRA dropout (default: the backend's, else 0.1)")
    f.add_argument("--optim", default="adamw", help="adamw, or adamw_8bit (bitsandbytes, CUDA)")
    f.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="recompute activations to save memory (default: on for qlora only)")
    f.add_argument("--loss", default="auto", help="auto (ce single-label, bce multi-label; nll for instruction), ce, bce, focal or nll")
    f.add_argument("--focal-alpha", type=float, default=0.7, help="focal loss weight of the positives")
    f.add_argument("--focal-gamma", type=float, default=2.0, help="focal loss exponent")
    f.add_argument("--label-synonyms", type=Path, default=None, metavar="JSON",
                   help='a JSON file {"label": ["other name", ...]}: labels shown as synonyms in training')
    f.add_argument("--synonym-rate", type=float, default=0.5, help="chance a label is shown as a synonym per batch")
    f.add_argument("--negatives", type=int, default=None,
                   help="train each batch on its gold labels plus N sampled others (default: all labels)")
    f.add_argument("--objective", default="supervised", help="supervised, or ppo (GLiClass's PPO; multi-label data)")
    f.add_argument("--ppo-clip", type=float, default=0.2, help="PPO clip range (default 0.2)")
    f.add_argument("--ppo-iterations", type=int, default=3, help="PPO policy steps per batch (default 3)")
    f.add_argument("--sparse-fraction", type=float, default=0.01,
                   help="method sparse: share of the weights that train (default 0.01)")
    f.add_argument("--sparse-tokens", type=int, default=64,
                   help="method sparse: task tokens whose embedding rows train (default 64)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--merge", action="store_true", help="LoRA: save merged full weights instead of the adapter")
    f.add_argument("--backend", default=None, help="force a backend (default: detected from the model)")
    f.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
    f.add_argument("--push-to-hub", default=None, metavar="REPO_ID", help="upload the result to this Hub repo")
    f.add_argument("--public", action="store_true", help="create the Hub repo public (default: private)")
    f.add_argument("--overwrite", action="store_true", help="replace a non-empty --output folder")
    f.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    f.set_defaults(func=_finetune)

    from udtc.calibration_command import add_calibrate_command  # `udtc calibrate` (udtc/calibration_command.py)
    from udtc.onnx_export import add_export_command  # `udtc export` (udtc/onnx_export.py; torch imported on use)
    from udtc.serve.command import add_serve_command  # `udtc serve` lives in udtc/serve (no web imports here)

    add_calibrate_command(sub)
    add_export_command(sub)
    add_serve_command(sub)
    return parser


def _synonyms(path: Path | None) -> dict | None:
    if path is None:
        return None
    if not path.is_file():
        raise FileNotFoundError(f"--label-synonyms: no such file {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"--label-synonyms: {path} is not valid JSON ({err})") from None


def _labels(args) -> list[str] | None:
    labels = [x.strip() for x in (args.labels or "").split(",") if x.strip()] + [x.strip() for x in args.label]
    return labels or None


def _check_classify_args(args) -> list[str] | None:
    """Every argument checked before a model loads (a typo costs no model loading); -> the labels."""
    from udtc.inputs import check_template, label_sets, positive_int, thresholds

    if args.texts and args.input:
        raise ValueError("give texts as arguments or --input, not both")
    if not args.texts and not args.input:
        raise ValueError("nothing to classify: give a TEXT argument or --input FILE")
    for i, text in enumerate(args.texts, start=1):
        if not text.strip():
            raise ValueError(f"TEXT {i} is empty; give it content or leave it out")
    if not args.input and args.text_column != "text":
        raise ValueError("--text-column names a column of --input; texts given as arguments have none")
    if not args.output and args.overwrite:
        raise ValueError("--overwrite replaces an --output file; there is no --output")
    if args.output and args.output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(f"--output must end in .csv, .jsonl or .parquet, got {args.output.name!r}")
    if args.output and args.output.is_dir():
        raise IsADirectoryError(f"--output {args.output} is a folder; name the file to write (.csv, .jsonl or .parquet)")
    if args.output and args.output.exists() and not args.overwrite:
        raise FileExistsError(f"{args.output} exists; pick another --output or pass --overwrite")
    positive_int(args.batch_size, "--batch-size")
    positive_int(args.chunk_size, "--chunk-size")
    positive_int(args.top_k, "--top-k", allow_none=True)
    if args.template is not None:
        check_template(args.template)
    labels = _labels(args)
    if labels is None and not _model_has_labels(args.model):
        raise ValueError("no labels: pass --labels a,b,c (or --label NAME, repeated); this model has none of its own")
    sets = label_sets(labels, 1) if labels is not None else []
    if args.threshold is not None:
        thresholds(args.threshold, sets, args.multi_label)
    return labels


def _model_has_labels(model: str | None) -> bool:
    """Whether a local model folder (or the default model) saves labels of its own; True when unknown
    (a Hub id: the model loads and says so itself)."""
    from udtc.config import CONFIG_NAME
    from udtc.defaults import DEFAULT_MODEL

    name = model or DEFAULT_MODEL
    if not name.startswith("package:") and not Path(name).expanduser().is_dir():
        return True
    try:
        from udtc.hub import resolve

        config = resolve(name) / CONFIG_NAME
        return config.is_file() and json.loads(config.read_text(encoding="utf-8")).get("labels") is not None
    except (OSError, ValueError):
        return True  # loading the model reports it


def _classify(args) -> int:
    """Rows stream through in chunks of --chunk-size: read, classify, written (or printed), so memory does not
    grow with the input; the whole input is scanned first, so a bad row fails before the model loads."""
    labels = _check_classify_args(args)
    if args.texts:
        column, found = "text", Scan(["text"], rows=len(args.texts))
    else:
        column, found = args.text_column, scan(args.input, args.text_column)
    names = result_columns(found.columns, args.prefix)
    if args.output and args.output.suffix.lower() == ".parquet":
        from udtc.io import pyarrow

        pyarrow()  # a missing extra is reported before any work
    out = atomic.AtomicFile(args.output) if args.output else None  # an unwritable --output fails before any work
    if found.empty:
        print(f"udtc: skipped {found.empty} empty row(s)", file=sys.stderr)
    from udtc.classifier import Classifier
    from udtc.logs import progress_bar

    bar = None
    try:
        clf = Classifier.from_pretrained(args.model, backend=args.backend, device=args.device, dtype=args.dtype)
        writer = RowWriter(out, found.columns, names, found) if out is not None else None
        rows = iter({"text": t} for t in args.texts) if args.texts else iter_rows(args.input, column)
        bar = progress_bar(found.rows - found.empty, None if args.input else False, args.batch_size)
        while chunk := list(itertools.islice(rows, args.chunk_size)):
            keep = [i for i, row in enumerate(chunk) if isinstance(row.get(column), str) and row[column].strip()]
            predictions = clf.classify([chunk[i][column] for i in keep], labels, multi_label=args.multi_label,
                                       threshold=args.threshold, top_k=args.top_k, template=args.template,
                                       batch_size=args.batch_size, progress=False) if keep else []
            by_row: dict[int, Any] = dict(zip(keep, predictions))
            if bar is not None:
                bar.update(len(keep))
            if writer is not None:
                writer.write(chunk, [by_row.get(i) for i in range(len(chunk))])
                atomic.fault("output:chunk-written")
            else:
                _print_rows(args, chunk, by_row, column, names)
        if bar is not None:
            bar.close()
            bar = None
        if writer is not None and out is not None:
            writer.close()
            out.commit()
            print(f"udtc: wrote {writer.rows} row(s) to {args.output}", file=sys.stderr)
    finally:
        if bar is not None:
            bar.close()  # before any error message, which is then the last line
        if out is not None:
            out.discard()
    return 0


def _print_rows(args, rows: list[dict[str, Any]], by_row: dict[int, Any], column: str, names: dict[str, str]) -> None:
    for i, row in enumerate(rows):
        p = by_row.get(i)
        if args.json:
            print(json.dumps(result_row(row, p, names), ensure_ascii=False))
        elif p is None:
            print(f"-\t\t{row.get(column, '')}")
        else:
            shown = p.labels if p.multi_label or args.top_k else [p.label] if p.label else []
            scores = ", ".join(f"{name}={p.scores[name]:.3f}" for name in shown) or f"(none >= threshold; best {p.ranked[0][0]}={p.ranked[0][1]:.3f})"
            print(f"{'|'.join(shown) or '-'}\t{scores}\t{_short(p.text)}")


def _finetune(args) -> int:
    from udtc.training import finetune

    _, metrics = finetune(
        args.model, args.train, eval=args.eval, text_column=args.text_column, label_column=args.label_column,
        label_separator=args.label_separator, hypothesis_column=args.hypothesis_column, shots=args.shots,
        method=args.method, epochs=args.epochs,
        learning_rate=args.learning_rate, batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps, max_length=args.max_length,
        lr_scheduler=args.lr_scheduler, warmup_ratio=args.warmup_ratio, patience=args.patience, lora_r=args.lora_r,
        lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, optim=args.optim,
        gradient_checkpointing=args.gradient_checkpointing, loss=args.loss, focal_alpha=args.focal_alpha,
        focal_gamma=args.focal_gamma, negatives=args.negatives, label_synonyms=_synonyms(args.label_synonyms),
        synonym_rate=args.synonym_rate, sparse_fraction=args.sparse_fraction, sparse_tokens=args.sparse_tokens,
        objective=args.objective, ppo_clip=args.ppo_clip, ppo_iterations=args.ppo_iterations,
        seed=args.seed, merge=args.merge, backend=args.backend, device=args.device,
        output_dir=args.output, push_to_hub=args.push_to_hub, hub_private=not args.public, overwrite=args.overwrite,
        progress=not args.no_progress)
    scores = ", ".join(f"{k} {v:.4f}" for k, v in (metrics["eval"] or {}).items() if k != "examples")
    print(f"udtc: fine-tuned on {metrics['train_examples']} example(s), {len(metrics['labels'])} labels, "
          f"{metrics['epochs_run']} epoch(s){'; best epoch ' + str(metrics['best_epoch']) + ': ' + scores if scores else ''}",
          file=sys.stderr)
    print(f"udtc: saved to {args.output} (load it with Classifier.from_pretrained({str(args.output)!r}))", file=sys.stderr)
    hub = metrics.get("hub")
    if hub and hub.get("error"):
        print(f"udtc: error: upload to {hub['repo_id']} failed ({hub['error']}); the model is kept in {args.output}",
              file=sys.stderr)
        return EXIT_ERROR
    if hub:
        print(f"udtc: uploaded to {hub['url']}", file=sys.stderr)
    return 0


def _short(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
