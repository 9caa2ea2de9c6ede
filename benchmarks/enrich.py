"""Label enrichment at inference (issue #13, item 3), judged by ``benchmarks.unseen``: nothing is trained.

* ``templates``: a label's embedding is the normalised mean of its embeddings in several templates
  (``TEMPLATES``, the bare label among them);
* ``wordnet``: the label's embedding plus ``beta`` x the embedding of the WordNet definition of its
  first noun sense (labels WordNet does not know keep their bare embedding); ``beta`` is chosen on
  the dev halves;
* ``mix`` (``--models`` only): the bare label's embedding plus ``gamma`` x its embedding in ``MIX_TEMPLATE``
  (the template helps software domains and spam and hurts question types; a mix may keep the first),
  ``gamma`` chosen on the dev halves.

Both for cosine on MiniLM and on MPNet (the encoders' cached embeddings of ``benchmarks.unseen``),
each with the debiasing variants of the protocol.

    python -m benchmarks.enrich
    python -m benchmarks.enrich --models     # the same two and the mix on every cosine model, the default among them

``--models`` scores the three on every cosine model of ``benchmarks.unseen`` (the shipped default, cosine MiniLM and
MPNet) and on the software-domain set too, beta chosen on the dev halves (``benchmarks.debias.dev_chosen``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.unseen import Protocol, build_protocol, cosine_scorer, embed, evaluate, render

COMMAND = "python -m benchmarks.enrich"
TEMPLATES = ("{}", "This text is about {}.", "A text about {}.", "The topic is {}.", "This is {}.", "{}, in short.")
BETAS = (0.25, 0.5, 1.0)
#: ``--models``' third kind: the bare label plus gamma x the label in this template (gamma in BETAS, dev-chosen)
MIX_TEMPLATE = "This text is about {}."


def definitions() -> dict[str, str]:
    """Lower-cased WordNet noun lemma -> definition of its first listed sense (synsets in file order)."""
    from benchmarks.datasets import WORDNET_NOUNS, fetch
    from benchmarks.wordnet import parse_data_file

    out: dict[str, str] = {}
    for synset in parse_data_file(fetch("wordnet") / WORDNET_NOUNS).values():
        for word in synset.words:
            out.setdefault(word.lower(), synset.definition)
    return out


def ensemble_embedder(embed_texts: Callable[[list[str]], torch.Tensor], templates=TEMPLATES,
                      weights: tuple[float, ...] | None = None):
    """Labels -> the normalised (weighted) mean of their normalised embeddings in every template (``embed_texts``:
    texts -> (n, D); ``weights``: one per template, uniform when None)."""
    memo: dict[str, torch.Tensor] = {}
    w = torch.tensor(weights or [1.0] * len(templates))[:, None, None]  # (T, 1, 1)

    def emb(labels: list[str]) -> torch.Tensor:
        missing = [x for x in labels if x not in memo]
        if missing:
            parts = [F.normalize(embed_texts([t.replace("{}", x) for x in missing]), dim=-1) for t in templates]
            memo.update(zip(missing, F.normalize((w * torch.stack(parts)).sum(0), dim=-1)))  # (T, M, D) -> (M, D)
        return torch.stack([memo[x] for x in labels])  # (L, D)

    return emb


def wordnet_embedder(embed_texts: Callable[[list[str]], torch.Tensor], glosses: dict[str, str], beta: float):
    """Labels -> their embedding plus ``beta`` x their WordNet definition's (labels WordNet lacks: bare)."""
    def emb(labels: list[str]) -> torch.Tensor:
        bare = F.normalize(embed_texts(labels), dim=-1)  # (L, D)
        known = [i for i, x in enumerate(labels) if x.lower() in glosses]
        if known:
            gloss = F.normalize(embed_texts([glosses[labels[i].lower()] for i in known]), dim=-1)
            bare = bare.clone()
            bare[known] = F.normalize(bare[known] + beta * gloss, dim=-1)
        return bare

    return emb


def mix_embedder(embed_texts: Callable[[list[str]], torch.Tensor], template: str, gamma: float):
    """Labels -> their bare embedding plus ``gamma`` x their embedding in ``template`` (both normalised first)."""
    return ensemble_embedder(embed_texts, ("{}", template), (1.0, gamma))


def on_models(argv: list[str] | None) -> int:
    """``--models``: template ensemble and WordNet definitions on every bare cosine model, the default among them."""
    from benchmarks.debias import dev_chosen

    glosses = definitions()

    def make(protocol, base, kind, _):
        if base.name.endswith("+ template"):
            return []  # the label side is already a template
        if kind == "mix":
            return [(f"gamma {g:g}", cosine_scorer(f"{base.name}: + gamma {g:g} x template", base.encoder,
                                                   mix_embedder(base.label_emb, MIX_TEMPLATE, g))) for g in BETAS]
        if kind == "ensemble":
            return [(f"{len(TEMPLATES)} templates",
                     cosine_scorer(f"{base.name}: ensemble", base.encoder, ensemble_embedder(base.label_emb)))]
        return [(f"beta {b:g}", cosine_scorer(f"{base.name}: WordNet beta {b:g}", base.encoder,
                                              wordnet_embedder(base.label_emb, glosses, b))) for b in BETAS]

    return dev_chosen(argv, "enrich_models", {"ensemble": f"template ensemble ({len(TEMPLATES)})",
                                              "wordnet": "label + beta x its WordNet definition",
                                              "mix": f"label + gamma x the label in {MIX_TEMPLATE!r}"}, make)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", action="store_true",
                        help="both enrichments on every cosine model of benchmarks.unseen (the default among them)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.models:
        return on_models(argv)
    from benchmarks.models import fetch as fetch_model
    from udtc import Classifier
    from udtc.defaults import COSINE_MINILM

    started = time.perf_counter()
    encoders = {"minilm": Classifier.from_pretrained(COSINE_MINILM, device="cpu").backend}
    if not args.quick:
        encoders["mpnet"] = Classifier.from_pretrained(str(fetch_model("all-mpnet-base-v2")), device="cpu").backend
    protocol: Protocol = build_protocol(encoders, args.quick)
    glosses = definitions()
    rows = []
    for enc, backend in encoders.items():
        title = {"minilm": "MiniLM", "mpnet": "MPNet"}[enc]
        scorers = [cosine_scorer(f"cosine {title}, template ensemble ({len(TEMPLATES)})", enc,
                                 ensemble_embedder(lambda texts: embed(backend, enc, texts)))]
        best = None
        for beta in BETAS:  # beta chosen on the dev halves (no debiasing)
            s = cosine_scorer(f"cosine {title} + WordNet definition (beta {beta:g}, dev-chosen)", enc,
                              wordnet_embedder(lambda texts: embed(backend, enc, texts), glosses, beta))
            f1 = protocol.run(s, "none", "dev")["unseen mean"]["macro_f1"]
            best = max(best or (f1, beta, s), (f1, beta, s), key=lambda x: x[0])
        scorers.append(best[2])
        rows += evaluate(protocol, scorers)
    sets = [s.name for s in protocol.sets]
    table = render(rows, sets, {})
    known = {s.name: [x for x in s.dev.labels if x.lower() in glosses] for s in protocol.sets}
    print(table)
    out = Path(__file__).resolve().parent / "results" / f"enrich{'_quick' if args.quick else ''}.json"
    out.write_text(json.dumps({"command": " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])]),
                               "templates": TEMPLATES, "labels_with_a_wordnet_definition": known, "rows": rows,
                               "seconds": round(time.perf_counter() - started, 1)}, indent=1) + "\n")
    out.with_suffix(".md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
