"""Few-shot fine-tuning: route support tickets to the team that handles them, from 9 examples per team.

    python examples/finetune_few_shot.py            # seconds on a laptop CPU

The team names (finance, logistics, engineering, identity) say little about how tickets are
worded, so zero-shot routing misses some. ``udtc.finetune`` trains the default model (cosine
similarity on all-MiniLM-L6-v2; its method is LoRA through peft, ``udtc[train]``) on
``data/few_shot.csv`` (36 hand-written tickets), then the script compares both on tickets it never
saw and reloads the saved folder, which knows its labels: ``classify(text)`` needs no label list.
Output goes to ``out/finetune_few_shot`` (replaced). For udtc's SCE model, pass
``udtc.defaults.SCE_MINILM`` as the model (method "full": the small SCE encoder, the embedder frozen).
"""

from __future__ import annotations

from pathlib import Path

import udtc
from udtc import Classifier

DATA = Path(__file__).parent / "data" / "few_shot.csv"
OUTPUT = Path("out") / "finetune_few_shot"
TEAMS = ["finance", "logistics", "engineering", "identity"]
UNSEEN = [
    ("Can I get an invoice with my company name on it?", "finance"),
    ("Why was my discount code not applied to the total?", "finance"),
    ("You took the subscription fee from my card two times.", "finance"),
    ("Where is my refund for the returned jacket?", "finance"),
    ("Two items in my order were the wrong colour.", "logistics"),
    ("My package went to the wrong town.", "logistics"),
    ("Nobody was home so the driver took my parcel back.", "logistics"),
    ("The delivery van never showed up and the tracking page is blank.", "logistics"),
    ("The screen flickers when I scroll.", "engineering"),
    ("Every time I press save the program shows an error and quits.", "engineering"),
    ("The battery drains in an hour since the new version.", "engineering"),
    ("I never got the confirmation email for my new profile.", "identity"),
    ("I'd like to close my profile permanently.", "identity"),
    ("I am stuck on the sign-in screen because my code is not accepted.", "identity"),
    ("My daughter changed my password and now I cannot get in.", "identity"),
]


def main() -> None:
    texts = [text for text, _ in UNSEEN]
    before = Classifier.from_pretrained().classify(texts, TEAMS)

    clf, metrics = udtc.finetune(None, DATA, epochs=10, batch_size=12, output_dir=OUTPUT, overwrite=True,
                                 progress=False)
    after = clf.classify(texts)  # the trained labels are the model's own now

    print(f"trained on {metrics['train_examples']} tickets in {metrics['wall_time_s']:.0f} s "
          f"(final train loss {metrics['train_loss']:.3f})\n")
    print(f"{'team':<12} {'zero-shot':<12} {'fine-tuned':<12} ticket")
    for (text, gold), b, a in zip(UNSEEN, before, after):
        print(f"{gold:<12} {b.label:<12} {a.label:<12} {text}")
    hits = [sum(p.label == gold for p, (_, gold) in zip(preds, UNSEEN)) for preds in (before, after)]
    print(f"\ncorrect on unseen tickets: zero-shot {hits[0]}/{len(UNSEEN)}, fine-tuned {hits[1]}/{len(UNSEEN)}")

    reloaded = Classifier.from_pretrained(OUTPUT)  # labels come from udtc_config.json
    print(f"reloaded from {OUTPUT}: {reloaded.classify('I was billed for an order I cancelled.')}")


if __name__ == "__main__":
    main()
