"""Cosine backend vs sentence-transformers on the same model, same texts, same batch size, one run.

udtc classifies the texts against a repeated label set (label embeddings cached after the first
call); sentence-transformers only *encodes* the texts. Ratio = udtc texts/s / ST texts/s: at least
1.0 means classifying costs no more than encoding alone.

    python -m benchmarks.cosine_speed            # default: 512 texts x 3 runs, 8 labels
    python -m benchmarks.cosine_speed --quick    # CI smoke test
"""

from __future__ import annotations

import argparse

from benchmarks.common import best_of, synthetic_texts, write_results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", default=None, help="sentence-transformers folder (default: udtc's default MiniLM)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from sentence_transformers import SentenceTransformer

    from udtc import Classifier
    from udtc.hub import resolve

    folder = resolve(args.model)
    clf = Classifier.from_pretrained(folder, device="cpu")
    st = SentenceTransformer(str(folder), device="cpu")
    labels = ["business", "entertainment", "politics", "sports", "technology", "health", "science", "travel"]
    rows = []
    sizes = [(32, 12)] if args.quick else [(512, 12), (512, 48), (256, 160)]
    repeats = 1 if args.quick else args.repeats
    for n, words in sizes:
        texts = synthetic_texts(n, words)
        t_udtc = best_of(lambda: clf.classify(texts, labels, batch_size=args.batch_size, progress=False), repeats)
        t_st = best_of(lambda: st.encode(texts, batch_size=args.batch_size, show_progress_bar=False), repeats)
        rows.append({"texts": n, "words_per_text": words, "udtc_texts_per_s": n / t_udtc, "st_texts_per_s": n / t_st,
                     "ratio": t_st / t_udtc})
    table = ["| texts | words/text | udtc classify (texts/s) | ST encode (texts/s) | ratio udtc/ST |", "|---|---|---|---|---|"]
    table += [f"| {r['texts']} | {r['words_per_text']} | {r['udtc_texts_per_s']:.1f} | {r['st_texts_per_s']:.1f} | {r['ratio']:.2f} |" for r in rows]
    print("\n".join(table))
    write_results("cosine_speed" + ("_quick" if args.quick else ""), {"model": str(folder), "batch_size": args.batch_size,
                  "repeats": repeats, "labels": len(labels), "rows": rows}, "\n".join(table))
    return {"rows": rows}


if __name__ == "__main__":
    main()
