"""Distil MPNet into MiniLM itself with LoRA (issue #13, item 3), judged by ``benchmarks.unseen``.

Where ``benchmarks.distill`` trains a head over FROZEN MiniLM embeddings, this trains LoRA adapters
inside all-MiniLM-L6-v2 (query/key/value/dense of every layer) so that the student's own
embeddings carry MPNet's geometry; the result is a plain cosine model (mean pooling, normalised,
exactly MiniLM's architecture and speed, the adapter merged or loaded by udtc's LoRA support).

Per step: 32 texts and 64 label strings (32 WordNet lemmas bare, 32 others in "This text is
about {}."), all from families outside the evaluation (``benchmarks.distill.corpus``), through
the student; teacher = cached all-mpnet-base-v2 embeddings. Losses:

* ``align``: 1 - cos(P s, t) for texts and labels, P a 384 -> 768 linear map (starts from the
  least-squares map, trained with the adapter, used only in training);
* ``kl``: KL(teacher || student) of each text's softmax(20 cos) over the 32 bare and over the 32
  templated labels (the teacher's scores in MPNet space, the student's in its own).

    python -m benchmarks.distill_lora --steps 1500 --seeds 0 1 2     # ~15 min per seed, 1 thread
    python -m benchmarks.distill_lora --quick
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

from benchmarks.distill import CANDIDATES, SCALE, corpus, mean_sd
from benchmarks.unseen import TEMPLATE, build_protocol, cosine_scorer, embed, evaluate, label_embedder, render

COMMAND = "python -m benchmarks.distill_lora"
MAX_LENGTH = 256  # all-MiniLM-L6-v2's max_seq_length


class Student:
    """all-MiniLM-L6-v2 (mean pooling, normalised) with LoRA adapters; ``embed`` as a CosineBackend's."""

    def __init__(self, folder: Path, r: int, alpha: float, seed: int):
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModel, AutoTokenizer

        torch.manual_seed(seed)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        base = AutoModel.from_pretrained(folder, use_safetensors=True)
        config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0,
                            target_modules=["query", "key", "value", "attention.output.dense", "intermediate.dense",
                                            "output.dense"])
        self.model = get_peft_model(base, config)

    def forward(self, texts: list[str]) -> torch.Tensor:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        hidden = self.model(**enc).last_hidden_state  # (B, T, H)
        m = enc["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
        return F.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)  # (B, H)

    def embed(self, texts: list[str], batch_size: int = 32) -> tuple[torch.Tensor, list[bool]]:
        self.model.eval()
        with torch.inference_mode():
            out = torch.cat([self.forward(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)])
        return out, [False] * len(texts)


def train(student: Student, data: dict, texts: list[str], labels: list[str], seed: int, steps: int, lr: float,
          kl_weight: float, align_weight: float, log=print) -> dict:
    rng = random.Random(seed)
    proj = nn.Linear(data["t_s"].shape[1], data["t_t"].shape[1])
    with torch.no_grad():  # least-squares start: P f(x) ~ F(x) on the frozen student
        x = torch.cat([data["t_s"], data["l_s"]])
        X = torch.cat([x, torch.ones(len(x), 1)], 1).double()
        A = torch.linalg.solve(X.T @ X + 1e-2 * torch.eye(X.shape[1], dtype=X.dtype),
                               X.T @ torch.cat([data["t_t"], data["l_t"]]).double())
        proj.weight.copy_(A[:-1].T.float())
        proj.bias.copy_(A[-1].float())
    params = [p for p in student.model.parameters() if p.requires_grad] + list(proj.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100) * max(0.0, 1 - s / steps))
    templated = [TEMPLATE.replace("{}", x) for x in labels]
    student.model.train()
    started, losses = time.perf_counter(), []
    for step in range(steps):
        ti = rng.sample(range(len(texts)), 32)
        li = rng.sample(range(len(labels)), 64)
        bare, tmpl = li[:32], li[32:]
        s = student.forward([texts[i] for i in ti] + [labels[i] for i in bare] + [templated[i] for i in tmpl])
        sx, sb, st = s[:32], s[32:64], s[64:]  # (32, H) each
        tx, tb, tt = data["t_t"][ti], data["l_t"][bare], data["lt_t"][tmpl]  # (32, 768) each
        loss = align_weight * (1 - F.cosine_similarity(proj(s), torch.cat([tx, tb, tt]), dim=-1)).mean()
        for sl, tl in ((sb, tb), (st, tt)):
            student_logits = SCALE * sx @ sl.T  # (32, 32): each text against one 32-label set
            teacher_logits = SCALE * F.normalize(tx, dim=-1) @ F.normalize(tl, dim=-1).T
            loss = loss + kl_weight * F.kl_div(student_logits.log_softmax(-1), teacher_logits.log_softmax(-1),
                                               log_target=True, reduction="batchmean")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % 100 == 0:
            log(f"  seed {seed} step {step + 1}: loss {sum(losses[-100:]) / 100:.4f} "
                f"({time.perf_counter() - started:.0f} s)")
    student.model.eval()
    return {"seconds": round(time.perf_counter() - started, 1), "loss": [round(x, 4) for x in losses[::50]]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--kl-weight", type=float, default=1.0)
    parser.add_argument("--align-weight", type=float, default=1.0)
    parser.add_argument("--tag", default="lora")
    parser.add_argument("--save", action="store_true", help="save seed 0's adapter under results/candidates/<tag>")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from benchmarks.models import fetch as fetch_model
    from benchmarks.models import locate
    from udtc import Classifier
    from udtc.defaults import COSINE_MINILM

    started = time.perf_counter()
    minilm = Classifier.from_pretrained(COSINE_MINILM, device="cpu").backend
    # --quick (a smoke test of the code path) uses MiniLM as its own teacher: no 400 MB MPNet download
    mpnet = minilm if args.quick else Classifier.from_pretrained(str(fetch_model("all-mpnet-base-v2")), device="cpu").backend
    texts, labels = corpus(200 if args.quick else 15000, 100 if args.quick else 8000)
    templated = [TEMPLATE.replace("{}", x) for x in labels]
    data = {}
    for key, strings in (("t", texts), ("l", labels), ("lt", templated)):
        data[f"{key}_s"] = embed(minilm, "minilm", strings)
        data[f"{key}_t"] = embed(mpnet, "minilm" if args.quick else "mpnet", strings)
    protocol = build_protocol({"minilm": minilm}, args.quick)
    folder = locate("all-minilm-l6-v2")
    rows_by_key: dict[tuple, list[dict]] = {}
    records = []
    for seed in args.seeds:
        student = Student(folder, args.rank, 2.0 * args.rank, seed)
        record = train(student, data, texts, labels, seed, 10 if args.quick else args.steps, args.lr,
                       args.kl_weight, args.align_weight)
        records.append(record)
        enc = f"{args.tag}-seed{seed}{'-quick' if args.quick else ''}-{args.steps}"
        seed_protocol = build_protocol({enc: student}, args.quick, log=lambda m: None)
        protocol.text_emb[enc], protocol.ref_emb[enc] = seed_protocol.text_emb[enc], seed_protocol.ref_emb[enc]
        for name, template in ((args.tag, "{}"), (f"{args.tag} + template", TEMPLATE)):
            scorer = cosine_scorer(name, enc, label_embedder(student, enc, template))
            scorer.trained = True
            for row in evaluate(protocol, [scorer], log=lambda m: None):
                tuned = "tuned" if row["tuned_on_dev"] else (row.get("ref_size"), row.get("alpha"))
                rows_by_key.setdefault((name, row["variant"], tuned), []).append(row)
        print(f"seed {seed}: trained in {record['seconds']:.0f} s; dev unseen mean (none) "
              f"{rows_by_key[(args.tag, 'none', (None, None))][-1]['dev']['unseen mean']['macro_f1']:.1f}", flush=True)
        if args.save and seed == args.seeds[0] and not args.quick:
            out = CANDIDATES / args.tag
            student.model.save_pretrained(out / "adapter")
            (out / "recipe.json").write_text(json.dumps(vars(args), indent=1) + "\n")
    summary = []
    for (name, variant, tuned), rows in rows_by_key.items():
        if len(rows) == len(args.seeds) and (variant != "ref" or tuned == "tuned"):
            row = mean_sd(rows)
            if variant == "ref":
                row["chosen_per_seed"] = [(r["ref_size"], r["alpha"]) for r in rows]
            summary.append(row)
    table = render(summary, [s.name for s in protocol.sets], {})
    print(table)
    out = Path(__file__).resolve().parent / "results" / f"distill_{args.tag}{'_quick' if args.quick else ''}.json"
    out.write_text(json.dumps({"command": " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])]),
                               "seeds": args.seeds, "training": records, "rows": summary,
                               "seconds": round(time.perf_counter() - started, 1)}, indent=1) + "\n")
    out.with_suffix(".md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
