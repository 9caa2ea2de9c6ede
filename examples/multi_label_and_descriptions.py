"""Multi-label scoring with per-label thresholds, label descriptions and a template."""

from udtc import Classifier

clf = Classifier.from_pretrained()
text = "The team's new stadium deal was approved by the city council after a heated vote"
labels = {
    "sports": "sports, teams, matches and athletes",
    "politics": "politics, governments, councils and votes",
    "business": "business deals, companies and money",
    "weather": "weather, rain, storms and temperatures",
}
prediction = clf.classify(text, labels, multi_label=True, threshold={"sports": 0.5, "politics": 0.5, "business": 0.6, "weather": 0.5})
print("chosen:", prediction.labels)
for label, score in prediction.ranked:
    print(f"  {label:10s} {score:.3f}")

templated = clf.classify(text, list(labels), template="This text is about {}.", top_k=2)
print("top 2 with a template:", templated.labels)
