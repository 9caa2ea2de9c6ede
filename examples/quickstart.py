"""Classify a few texts with the embedded default model (offline)."""

from udtc import Classifier

clf = Classifier.from_pretrained()
labels = ["sports", "politics", "cooking", "technology"]
texts = [
    "The striker scored twice in the final",
    "Parliament voted on the new budget late last night",
    "Whisk the eggs, then fold in the flour and bake for twenty minutes",
    "The new phone has a faster chip and a better camera",
]
for prediction in clf.classify(texts, labels):
    print(f"{prediction.label:12s} {prediction.scores[prediction.label]:.2f}  {prediction.text}")
