"""Labels written as identifiers: what reading ``play_music`` as ``play music`` is worth (``udtc.inputs.label_words``).

Data sets name their classes as identifiers (``alarm_set``, ``card_arrival``, ``Sci/Tech``, ``AnnualCrop``),
and users pass those names to ``classify``. This runs the unseen-label protocol's sets (``benchmarks.unseen``:
the six, Amazon polarity and the Debian software sections) with every label name rewritten in one form, and
scores each form two ways: read as written (a ``{name: name}`` dict, which ``classify`` reads as given) and read
as ``classify`` reads a bare name. Models: cosine MiniLM and the default, on the embeddings
``benchmarks.unseen`` caches (labels embedded here, through ``udtc.inputs.one_label_set``). TEST halves,
macro-F1.

    python -m benchmarks.label_forms            # ~2 min with the unseen protocol's embeddings cached
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

COMMAND = "python -m benchmarks.label_forms"
FORMS = {  # how a data set might write "alarms and reminders"
    "words (as the protocol)": lambda x: x,
    "snake_case": lambda x: "_".join(x.split()),
    "UPPER_SNAKE": lambda x: "_".join(x.split()).upper(),
    "CamelCase": lambda x: "".join(w[:1].upper() + w[1:] for w in x.split()),
    "kebab-case": lambda x: "-".join(x.split()),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of each half")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    from benchmarks.common import write_results
    from benchmarks.unseen import EXTRA, SETS, UNSEEN, baselines, cosine_scorer, label_embedder, metrics
    from udtc.inputs import one_label_set

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    protocol, _, classifiers = baselines(args.quick, names=(*SETS, *EXTRA), default=True, mpnet=False)
    encoders = {enc: title for enc, title in (("minilm", "cosine MiniLM"),) + tuple(
        (e, "default (TUNED_MINILM)") for e in protocol.text_emb if e.startswith("tuned-minilm"))}
    rows = []
    for enc, title in encoders.items():
        backend = classifiers[title].backend
        embedder = label_embedder(backend, enc)
        for form, write in FORMS.items():
            for reading in ("as written", "as classify reads it"):
                scores = {}
                for s in protocol.sets:
                    names = [write(x) for x in s.test.labels]
                    read = list(one_label_set(names if reading != "as written" else dict(zip(names, names)), "labels")[1])
                    scorer = cosine_scorer(title, enc, lambda labels, m=dict(zip(names, read)): embedder([m[x] for x in labels]))
                    q = protocol.text_emb[enc][s.name][1]  # (N, D) test texts
                    scores[s.name] = metrics(scorer.logits(q, names).argmax(-1), s.test.gold)["macro_f1"]
                scores["unseen mean"] = round(statistics.mean(scores[n] for n in UNSEEN), 2)
                rows.append({"model": title, "form": form, "reading": reading, "test_macro_f1": scores})
                print(f"{title} | {form} | {reading}: mean {scores['unseen mean']:.1f}", flush=True)
    set_names = [s.name for s in protocol.sets]
    lines = ["| model | labels written as | read | " + " | ".join(set_names) + " | **unseen mean (6)** |",
             "|---|---|---|" + "---|" * len(set_names) + "---|"]
    for r in rows:
        f1 = r["test_macro_f1"]
        lines.append(f"| {r['model']} | {r['form']} | {r['reading']} | "
                     + " | ".join(f"{f1[n]:.1f}" for n in set_names) + f" | **{f1['unseen mean']:.1f}** |")
    example = {form: write(protocol.sets[5].test.labels[0]) for form, write in FORMS.items()}
    lines += ["", "Forms of ovos_commands' first label: " + ", ".join(f"{k}: `{v}`" for k, v in example.items())]
    payload = {"command": " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])]), "quick": args.quick,
               "rows": rows, "seconds": round(time.perf_counter() - started, 1)}
    write_results("label_forms" + ("_quick" if args.quick else ""), payload, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
