"""Training aids for the Soft Contextualized Encoder (Maheshwari & Raina, Sec. 2.2, synonym augmentation).

``SYNONYMS`` is a preset for ``udtc.finetune(label_synonyms=...)``. The SCE training hooks
(``trainable_module``, ``training_logits`` with the frozen embedder's text cache, App. R/S) are in
``backend.py``; the recipe that trained the shipped default model is ``benchmarks/sce_train.py``.
"""

from __future__ import annotations

#: Synonym preset for the labels of udtc's training mixture; ``udtc.finetune(label_synonyms=SYNONYMS)`` uses it;
#: ``benchmarks/sce_train.py``'s ``SCETrainConfig.synonyms`` overrides it.
SYNONYMS: dict[str, list[str]] = {
    "business": ["business", "economy", "finance", "markets", "companies", "commerce", "economics", "trade",
                 "business news", "corporate", "money and markets"],
    "entertainment": ["entertainment", "showbiz", "movies and music", "celebrities", "arts and culture", "film",
                      "music", "television", "culture", "entertainment news"],
    "politics": ["politics", "government", "elections", "political news", "policy", "parliament", "politicians",
                 "public affairs"],
    "sports": ["sports", "sport", "athletics", "games and matches", "football", "sports news", "competition",
               "teams and players"],
    "technology": ["technology", "tech", "computers", "internet", "gadgets", "software", "science and technology",
                   "digital", "technology news", "IT"],
    "positive": ["positive", "good", "praise", "happy", "favorable", "positive sentiment", "good review", "pleased",
                 "satisfied", "love it", "great", "approval", "liked it"],
    "negative": ["negative", "bad", "criticism", "unhappy", "unfavorable", "negative sentiment", "bad review",
                 "disappointed", "complaint", "hate it", "terrible", "disapproval", "disliked it"],
}
