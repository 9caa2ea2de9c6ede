"""A label-set head over frozen MiniLM embeddings, trained with a label-prior penalty (issue #13, items 2b/3).

    score(x, y) = s * cos(A f(x) + a, B f(y) + b)       f = frozen all-MiniLM-L6-v2, A = B = I at step 0

A and B are 384 x 384 (1.2 MB together); the text pays one matmul over cosine MiniLM, labels are
cached: MiniLM speed, label-set invariant by construction (each label is scored on its own).

Training rows (no evaluation family of ``benchmarks.unseen``, none of its label names):
WordNet hypernym rows (``benchmarks.wordnet``: a definition or usage example, its hypernym vs that
hypernym's siblings, sets filled with other rows' labels), the training mixture's label sets (BBC
topics; positive/negative of tweets and movie snippets) and SNLI premises (entailed vs
contradicting hypothesis). Loss per step:

* cross-entropy over each row's candidate set;
* ``--kl``: KL to the frozen cosine teacher's softmax(20 cos) on random sets of WordNet lemmas
  (keeps what cosine knows about label sets never trained on);
* ``--prior``: the label-set prior penalty: for each batch's candidate set, the mean over generic
  reference texts (``benchmarks.unseen.reference_texts``) of the softmax should be uniform:
  KL(uniform || mean_r p(. | r)). It penalises exactly what the one-text reference debiasing
  subtracts, so the model learns not to have it.

    python -m benchmarks.train_head --seeds 0 1 2        # minutes after the one-time embedding
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.distill import CANDIDATES, mean_sd
from benchmarks.unseen import (SETS, TEMPLATE, Scorer, build_protocol, embed, evaluate, label_embedder, load,
                               reference_texts, render)

COMMAND = "python -m benchmarks.train_head"
SCALE = 20.0


class LabelSetHead(nn.Module):
    def __init__(self, d: int = 384):
        super().__init__()
        self.text, self.label = nn.Linear(d, d), nn.Linear(d, d)
        for layer in (self.text, self.label):
            nn.init.eye_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x (B, D) texts, y (B, L, D) or (L, D) labels -> logits (B, L)."""
        tx = F.normalize(self.text(F.normalize(x, dim=-1)), dim=-1)
        ty = F.normalize(self.label(F.normalize(y, dim=-1)), dim=-1)
        if ty.dim() == 2:
            return SCALE * tx @ ty.T
        return SCALE * torch.einsum("bd,bld->bl", tx, ty)


def rows(n_wordnet: int, n_snli: int, cap: int, seed: int) -> list[tuple[str, str, list[str]]]:
    """(text, gold, fixed negatives) rows; mixture rows get their source's other labels."""
    from benchmarks.train_sce import capped_mixture, snli_rows
    from benchmarks.wordnet import hypernym_rows

    unseen = {x for name in SETS for x in load(name).label_names}
    out = hypernym_rows(n_wordnet, seed, exclude_labels=unseen) + snli_rows(n_snli, seed)
    by_source: dict[str, list[str]] = {}
    mixture = capped_mixture(cap, seed)
    for _, label, source in mixture:
        by_source.setdefault(source, [])
        if label not in by_source[source]:
            by_source[source].append(label)
    out += [(text, label, [x for x in by_source[source] if x != label]) for text, label, source in mixture]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--kl", type=float, default=1.0)
    parser.add_argument("--prior", type=float, default=1.0)
    parser.add_argument("--wordnet", type=int, default=15000)
    parser.add_argument("--snli", type=int, default=3000)
    parser.add_argument("--cap", type=int, default=2000, help="rows per mixture source")
    parser.add_argument("--max-labels", type=int, default=12)
    parser.add_argument("--tag", default="lsh")
    parser.add_argument("--save", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from udtc import Classifier
    from udtc.defaults import COSINE_MINILM

    started = time.perf_counter()
    minilm = Classifier.from_pretrained(COSINE_MINILM, device="cpu").backend
    data = rows(300 if args.quick else args.wordnet, 50 if args.quick else args.snli, 100 if args.quick else args.cap, 0)
    texts = [t for t, _, _ in data]
    pool = sorted({x for _, g, neg in data for x in (g, *neg)})
    from benchmarks.distill import corpus

    _, lemmas = corpus(200 if args.quick else 15000, 100 if args.quick else 8000)
    q_all = embed(minilm, "minilm", texts)  # (N, D)
    strings = pool + lemmas
    emb_all = embed(minilm, "minilm", strings)
    index = {x: i for i, x in enumerate(strings)}
    lemma_ids = [index[x] for x in lemmas]
    ref = embed(minilm, "minilm", reference_texts(1024))
    print(f"{len(data)} rows, {len(pool)} label strings, {len(lemmas)} lemmas ({time.perf_counter() - started:.0f} s)",
          flush=True)
    protocol = build_protocol({"minilm": minilm}, args.quick)
    bare, tmpl = label_embedder(minilm, "minilm"), label_embedder(minilm, "minilm", TEMPLATE)
    by_key: dict[tuple, list[dict]] = {}
    times = []
    for seed in args.seeds:
        rng = random.Random(seed)
        torch.manual_seed(seed)
        head = LabelSetHead(q_all.shape[1])
        opt = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=0.0)
        steps = 30 if args.quick else args.steps
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100) * max(0.0, 1 - s / steps))
        t0 = time.process_time()
        for step in range(steps):
            batch = rng.sample(range(len(data)), 32)
            sets, gold = [], []
            for i in batch:
                _, g, neg = data[i]
                cand = list(dict.fromkeys([g, *neg]))
                size = rng.randint(len(cand), max(len(cand), args.max_labels))
                while len(cand) < size:
                    x = pool[rng.randrange(len(pool))]
                    if x not in cand:
                        cand.append(x)
                rng.shuffle(cand)
                sets.append([index[x] for x in cand])
                gold.append(cand.index(g))
            width = max(len(s) for s in sets)
            ids = torch.tensor([s + [s[0]] * (width - len(s)) for s in sets])  # (B, L)
            mask = torch.tensor([[True] * len(s) + [False] * (width - len(s)) for s in sets])
            logits = head(q_all[batch], emb_all[ids]).masked_fill(~mask, -1e4)  # (B, L)
            loss = F.cross_entropy(logits, torch.tensor(gold))
            if args.kl:
                k = rng.randint(2, 32)
                lid = torch.tensor([rng.sample(lemma_ids, k) for _ in range(16)])  # (16, k)
                student = head(q_all[batch[:16]], emb_all[lid])
                teacher = SCALE * torch.einsum("bd,bkd->bk", F.normalize(q_all[batch[:16]], dim=-1),
                                               F.normalize(emb_all[lid], dim=-1))
                loss = loss + args.kl * F.kl_div(student.log_softmax(-1), teacher.log_softmax(-1), log_target=True,
                                                 reduction="batchmean")
            if args.prior:
                r = ref[torch.tensor(rng.sample(range(len(ref)), 64))]  # (64, D)
                penalty = 0.0
                for s in sets[:8]:  # the label-set prior over generic texts should be uniform
                    p = head(r, emb_all[torch.tensor(s)]).softmax(-1).mean(0)  # (L,)
                    penalty = penalty + (-(p.clamp_min(1e-9).log()).mean() - torch.log(torch.tensor(float(len(s)))))
                loss = loss + args.prior * penalty / 8
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if (step + 1) % 500 == 0:
                print(f"  seed {seed} step {step + 1}: loss {loss.item():.3f}", flush=True)
        head.eval()
        times.append(round(time.process_time() - t0, 1))

        def scorer(name: str, emb) -> Scorer:
            @torch.inference_mode()
            def logits(q: torch.Tensor, labels: list[str]) -> torch.Tensor:
                return head(q, emb(labels))

            return Scorer(name, "minilm", logits, trained=True)

        for name, emb in ((args.tag, bare), (f"{args.tag} + template", tmpl)):
            for row in evaluate(protocol, [scorer(name, emb)], log=lambda m: None):
                tuned = "tuned" if row["tuned_on_dev"] else (row.get("ref_size"), row.get("alpha"))
                by_key.setdefault((name, row["variant"], tuned), []).append(row)
        print(f"seed {seed}: {times[-1]:.0f} s CPU; dev unseen mean {by_key[(args.tag, 'none', (None, None))][-1]['dev']['unseen mean']['macro_f1']:.1f}, "
              f"test {by_key[(args.tag, 'none', (None, None))][-1]['test']['unseen mean']['macro_f1']:.1f}", flush=True)
        if args.save and seed == args.seeds[0] and not args.quick:
            from safetensors.torch import save_file

            out = CANDIDATES / args.tag
            out.mkdir(parents=True, exist_ok=True)
            save_file({k: v.detach().contiguous() for k, v in head.state_dict().items()}, out / "head.safetensors")
            (out / "recipe.json").write_text(json.dumps({"command": COMMAND, **vars(args)}, indent=1) + "\n")
    summary = []
    for (name, variant, tuned), group in by_key.items():
        if len(group) == len(args.seeds) and (variant != "ref" or tuned == "tuned"):
            row = mean_sd(group)
            if variant == "ref":
                row["chosen_per_seed"] = [(r["ref_size"], r["alpha"]) for r in group]
            summary.append(row)
    table = render(summary, [s.name for s in protocol.sets], {})
    print(table)
    path = Path(__file__).resolve().parent / "results" / f"head_{args.tag}{'_quick' if args.quick else ''}.json"
    path.write_text(json.dumps({"command": " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])]),
                                "seeds": args.seeds, "train_cpu_seconds": times, "rows": summary,
                                "seconds": round(time.perf_counter() - started, 1)}, indent=1) + "\n")
    path.with_suffix(".md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
