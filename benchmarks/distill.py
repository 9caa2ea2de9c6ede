"""Distil MPNet's geometry into a MiniLM-speed student (issue #13, item 3), judged by ``benchmarks.unseen``.

The student reads the frozen all-MiniLM-L6-v2 embedding and maps it with a small head ``g``
(a linear map plus a residual MLP, 384 -> 768) into the space of all-mpnet-base-v2; texts and
labels go through the same head, and a text's label scores are ``20 cos(g(f(x)), g(f(y)))``.
So the text is still encoded once by MiniLM (throughput: MiniLM's plus one small matmul).

Training rows, none from an evaluation family of ``benchmarks.unseen`` (texts that also occur in
one are dropped): SNLI premises and hypotheses, WordNet definitions and usage examples, BBC News
sentences, VADER tweets, Rotten Tomatoes snippets; label strings: WordNet noun lemmas (no label
name of an evaluation set), bare and in the template "This text is about {}.". Losses:

* ``cos``: 1 - cos(g(f(x)), F(x)) on texts and label strings (F = MPNet), and
* ``kl``: KL(teacher || student) over random label sets of 2-32 lemmas per text, the teacher being
  MPNet's softmax(20 cos) (bare or templated labels, as the student is shown).

The head starts from the least-squares linear map (ridge), so step 0 is already a distilled
student. Every recipe runs with 3 seeds (head init of the MLP, batch order, label sets).

    python -m benchmarks.distill                      # 3 seeds, ~10 min after the one-time embedding
    python -m benchmarks.distill --quick              # smoke test
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.unseen import (TEMPLATE, Scorer, build_protocol, embed, evaluate, label_embedder,
                               render)

COMMAND = "python -m benchmarks.distill"
SCALE = 20.0
CANDIDATES = Path(__file__).resolve().parent / "results" / "candidates"


# ---------------------------------------------------------------------------------------------- data
def corpus(n_texts: int = 15000, n_labels: int = 8000, seed: int = 0) -> tuple[list[str], list[str]]:
    """Generic texts and label-like strings for distillation, from families outside the evaluation."""
    from benchmarks.datasets import WORDNET_NOUNS, _fingerprint, fetch, load, load_snli
    from benchmarks.unseen import SETS
    from benchmarks.wordnet import parse_data_file

    rng = random.Random(f"distill:{seed}")
    evaluation = {_fingerprint(t) for name in SETS for t in load(name).texts}
    eval_labels = {x.lower() for name in SETS for x in load(name).label_names}
    snli = load_snli("train")
    synsets = parse_data_file(fetch("wordnet") / WORDNET_NOUNS).values()
    bbc = {line.strip() for text in load("bbc_news").texts for line in text.split(". ") if 6 <= len(line.split()) <= 40}
    pools = [sorted(set(snli.premises)), sorted(set(snli.hypotheses)),
             sorted({s.definition for s in synsets if len(s.definition.split()) >= 4}),
             sorted({e for s in synsets for e in s.examples}), sorted(bbc),
             sorted(load("vader_tweets").texts), sorted(load("rotten_tomatoes").texts)]
    per = n_texts // len(pools)
    texts = [t for pool in pools for t in rng.sample(pool, min(per, len(pool))) if _fingerprint(t) not in evaluation]
    lemmas = sorted({w for s in synsets for w in s.words[:2] if len(w.split()) <= 3 and w.lower() not in eval_labels
                     and w.replace(" ", "").replace("-", "").isalpha()})
    return list(dict.fromkeys(texts)), rng.sample(lemmas, min(n_labels, len(lemmas)))


# ---------------------------------------------------------------------------------------------- model
class Head(nn.Module):
    """g(e) = W e + b + MLP(e): MiniLM embedding (384) -> MPNet space (768); the MLP starts at zero."""

    def __init__(self, d_in: int = 384, d_out: int = 768, hidden: int = 1536):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)
        self.mlp = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.linear(e) + self.mlp(e)  # (..., d_out)

    @torch.no_grad()
    def least_squares(self, x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-2) -> None:
        X = torch.cat([x, torch.ones(len(x), 1)], 1).double()  # (N, d_in + 1)
        A = torch.linalg.solve(X.T @ X + ridge * torch.eye(X.shape[1], dtype=X.dtype), X.T @ y.double())
        self.linear.weight.copy_(A[:-1].T.float())
        self.linear.bias.copy_(A[-1].float())


def train_head(data: dict, seed: int, steps: int, kl_weight: float, cos_weight: float, hidden: int,
               lr: float = 1e-3, batch: int = 64, log=print) -> Head:
    """``data``: minilm/mpnet embeddings of texts, labels and templated labels."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    head = Head(data["t_s"].shape[1], data["t_t"].shape[1], hidden)
    head.least_squares(torch.cat([data["t_s"], data["l_s"], data["lt_s"]]), torch.cat([data["t_t"], data["l_t"], data["lt_t"]]))
    if steps == 0:
        return head.eval()
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50) * max(0.0, 1 - s / steps))
    n_t, n_l = len(data["t_s"]), len(data["l_s"])
    started = time.perf_counter()
    for step in range(steps):
        ti = torch.tensor(rng.sample(range(n_t), batch))
        li = torch.tensor(rng.sample(range(n_l), batch))
        xs, xt = data["t_s"][ti], data["t_t"][ti]
        loss = torch.zeros(())
        if cos_weight:
            for s, t in ((xs, xt), (data["l_s"][li], data["l_t"][li]), (data["lt_s"][li], data["lt_t"][li])):
                loss = loss + cos_weight * (1 - F.cosine_similarity(head(s), t, dim=-1)).mean()
        if kl_weight:
            k = rng.randint(2, 32)
            sets = torch.tensor([rng.sample(range(n_l), k) for _ in range(batch)])  # (B, k)
            gx = F.normalize(head(xs), dim=-1)  # (B, 768)
            for key in ("l", "lt"):
                gl = F.normalize(head(data[f"{key}_s"][sets]), dim=-1)  # (B, k, 768)
                student = SCALE * torch.einsum("bd,bkd->bk", gx, gl)
                teacher = SCALE * torch.einsum("bd,bkd->bk", F.normalize(xt, dim=-1), F.normalize(data[f"{key}_t"][sets], dim=-1))
                loss = loss + kl_weight * F.kl_div(student.log_softmax(-1), teacher.log_softmax(-1), log_target=True,
                                                   reduction="batchmean")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 500 == 0:
            log(f"  seed {seed} step {step + 1}: loss {loss.item():.4f} ({time.perf_counter() - started:.0f} s)")
    return head.eval()


def head_scorer(name: str, head: Head, label_emb, encoder: str = "minilm") -> Scorer:
    @torch.inference_mode()
    def logits(q: torch.Tensor, labels: list[str]) -> torch.Tensor:
        return SCALE * F.normalize(head(q), dim=-1) @ F.normalize(head(label_emb(labels)), dim=-1).T  # (N, L)

    return Scorer(name, encoder, logits, trained=True)


def mean_sd(rows: list[dict]) -> dict:
    """Per-set mean of several seeds' rows (same model/variant), with the sd of the unseen mean."""
    out = json.loads(json.dumps(rows[0]))
    for half in ("dev", "test"):
        for name in rows[0][half]:
            if isinstance(rows[0][half][name], dict):
                for k in ("macro_f1", "accuracy"):
                    out[half][name][k] = round(statistics.mean(r[half][name][k] for r in rows), 2)
        means = [r[half]["unseen mean"]["macro_f1"] for r in rows]
        out[half]["sd"] = round(statistics.stdev(means), 2) if len(means) > 1 else 0.0
        out[half]["seeds"] = [round(m, 2) for m in means]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--kl-weight", type=float, default=1.0)
    parser.add_argument("--cos-weight", type=float, default=1.0)
    parser.add_argument("--hidden", type=int, default=1536)
    parser.add_argument("--texts", type=int, default=15000)
    parser.add_argument("--labels", type=int, default=8000)
    parser.add_argument("--tag", default="head", help="name of this recipe in the results")
    parser.add_argument("--save", action="store_true", help="save seed 0's head under results/candidates/<tag>")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from benchmarks.models import fetch as fetch_model
    from udtc import Classifier
    from udtc.defaults import COSINE_MINILM

    started = time.perf_counter()
    minilm = Classifier.from_pretrained(COSINE_MINILM, device="cpu").backend
    # --quick (a smoke test of the code path) uses MiniLM as its own teacher: no 400 MB MPNet download
    mpnet = minilm if args.quick else Classifier.from_pretrained(str(fetch_model("all-mpnet-base-v2")), device="cpu").backend
    texts, labels = corpus(200 if args.quick else args.texts, 100 if args.quick else args.labels)
    templated = [TEMPLATE.replace("{}", x) for x in labels]
    data = {}
    for key, strings in (("t", texts), ("l", labels), ("lt", templated)):
        data[f"{key}_s"] = embed(minilm, "minilm", strings)
        data[f"{key}_t"] = embed(mpnet, "minilm" if args.quick else "mpnet", strings)
    print(f"{len(texts)} texts, {len(labels)} labels embedded by both encoders "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    protocol = build_protocol({"minilm": minilm}, args.quick)
    bare, tmpl = label_embedder(minilm, "minilm"), label_embedder(minilm, "minilm", TEMPLATE)
    per_seed: dict[tuple, list[dict]] = {}
    times = []
    for seed in args.seeds:
        t0 = time.process_time()
        head = train_head(data, seed, 50 if args.quick else args.steps, args.kl_weight, args.cos_weight, args.hidden)
        times.append(round(time.process_time() - t0, 1))
        for name, emb in ((f"{args.tag}", bare), (f"{args.tag} + template", tmpl)):
            for row in evaluate(protocol, [head_scorer(name, head, emb)], log=lambda m: None):
                # a dev-tuned reference row may pick another size/alpha per seed: grouped as one recipe
                tuned = "tuned" if row["tuned_on_dev"] else (row.get("ref_size"), row.get("alpha"))
                per_seed.setdefault((name, row["variant"], tuned), []).append(row)
        if args.save and seed == args.seeds[0] and not args.quick:
            from safetensors.torch import save_file

            folder = CANDIDATES / args.tag
            folder.mkdir(parents=True, exist_ok=True)
            save_file({k: v.detach().contiguous() for k, v in head.state_dict().items()}, folder / "head.safetensors")
            (folder / "head.json").write_text(json.dumps({"d_in": 384, "d_out": 768, "hidden": args.hidden,
                                                          "scale": SCALE, "recipe": vars(args)}, indent=1) + "\n")
    per_seed_f = {key: rows for key, rows in per_seed.items() if key[1] != "ref" or key[2] == "tuned"}
    summary = [mean_sd(rows) for rows in per_seed_f.values() if len(rows) == len(args.seeds)]
    for r in summary:
        if r["variant"] == "ref":
            r["chosen_per_seed"] = [(row["ref_size"], row["alpha"]) for row in per_seed[(r["model"], "ref", "tuned")]]
    table = render(summary, [s.name for s in protocol.sets], {})
    print(table)
    out = Path(__file__).resolve().parent / "results" / f"distill_{args.tag}{'_quick' if args.quick else ''}.json"
    out.write_text(json.dumps({"command": " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])]),
                               "seeds": args.seeds, "train_cpu_seconds": times, "rows": summary,
                               "seconds": round(time.perf_counter() - started, 1)}, indent=1) + "\n")
    out.with_suffix(".md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
