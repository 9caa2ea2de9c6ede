"""Smoke tests of the benchmark commands: every ``benchmarks/*.py`` with a ``main`` and a ``--quick`` flag
runs in quick mode, completes, writes its ``*_quick`` result files and leaves the real results alone.

They check that the commands work, not the numbers. Modules are discovered, so a new benchmark
script is covered as soon as it exists.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
RESULTS = BENCHMARKS / "results"

# the quick runs write benchmarks/results/*_quick.*: one xdist worker runs them all, one after another
pytestmark = pytest.mark.xdist_group("benchmarks")


def quick_modules() -> list[str]:
    """Names of benchmark modules that define ``main`` and accept ``--quick``."""
    found = []
    for path in sorted(BENCHMARKS.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        if re.search(r"^def main\(", source, re.MULTILINE) and '"--quick"' in source:
            found.append(path.stem)
    return found


def _snapshot(pattern: str) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in RESULTS.glob(pattern)} if RESULTS.is_dir() else {}


def test_the_benchmark_commands_are_discovered():
    modules = quick_modules()
    assert {"accuracy", "speed", "precision"} <= set(modules), modules
    assert not {"common", "datasets", "models"} & set(modules)


@pytest.mark.integration
@pytest.mark.parametrize("name", quick_modules())
def test_quick_mode_completes_and_writes_quick_results(name, monkeypatch):
    # the module's own real results (benchmarks/results/<name>*.json|md) must not change
    real_before = {p: t for p, t in _snapshot(f"{name}*").items() if not p.stem.endswith("_quick")}
    module = importlib.import_module(f"benchmarks.{name}")
    written = _record_writes(monkeypatch)  # what THIS run writes (other test processes may write quick files too)

    if inspect.signature(module.main).parameters:  # main(argv)
        module.main(["--quick"])
    else:  # main() reads sys.argv
        monkeypatch.setattr(sys, "argv", [f"benchmarks/{name}.py", "--quick"])
        module.main()

    real_after = {p: t for p, t in _snapshot(f"{name}*").items() if not p.stem.endswith("_quick")}
    assert real_after == real_before, f"--quick changed real results: {sorted(set(real_after.items()) ^ set(real_before.items()))}"
    if "write_results(" in Path(module.__file__).read_text(encoding="utf-8"):
        assert written, f"benchmarks.{name} --quick wrote no results under {RESULTS}"
        for path in written:
            assert path.stem.endswith("_quick"), f"benchmarks.{name} --quick wrote {path.name}, not a *_quick file"
            payload = json.loads(path.read_text(encoding="utf-8"))
            assert "machine" in payload
            assert path.with_suffix(".md").exists()


def _record_writes(monkeypatch) -> list[Path]:
    """Route every ``write_results`` the benchmark modules hold through a recorder; returns the list it fills."""
    import benchmarks.common

    original, written = benchmarks.common.write_results, []
    original = getattr(original, "original", original)

    def recording(name: str, payload: dict, table: str) -> Path:
        path = original(name, payload, table)
        written.append(path)
        return path

    recording.records_writes = True  # type: ignore[attr-defined]
    recording.original = original  # type: ignore[attr-defined]

    def is_write_results(obj) -> bool:
        # the function itself, or an earlier test's recorder that a module imported during that test kept
        return getattr(obj, "records_writes", False) or (
            getattr(obj, "__module__", None) == "benchmarks.common" and getattr(obj, "__name__", None) == "write_results")

    for loaded in [m for key, m in list(sys.modules.items()) if key == "benchmarks" or key.startswith("benchmarks.")]:
        if is_write_results(getattr(loaded, "write_results", None)):
            monkeypatch.setattr(loaded, "write_results", recording)
    return written


def test_accuracy_metrics_match_hand_counts():
    import numpy as np

    from benchmarks.accuracy import accuracy, macro_f1, shift_f1

    gold, pred = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0])
    assert accuracy(gold, pred) == pytest.approx(0.6)
    # label 0: tp 1 fp 1 fn 1 -> 0.5; label 1: tp 2 fp 1 fn 0 -> 0.8; label 2: tp 0 fn 1 -> 0
    assert macro_f1(gold, pred, 3) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    cos = np.array([[0.5, 0.1], [0.2, 0.4]])
    f1 = shift_f1(cos, np.array([0, 1]), [0.05, 0.3, 0.6])
    assert f1.tolist() == pytest.approx([2 / 3, 1.0, 0.0])


@pytest.mark.integration
def test_accuracy_render_rewrites_tables_from_a_result_file():
    from benchmarks.accuracy import main

    path = RESULTS / "accuracy_quick.json"
    if not path.exists():
        main(["--quick"])
    payload = main(["--render", str(path)])
    assert payload["results"] and all("held_out_mean_accuracy" in row for row in payload["results"])
    assert "all_on_f1" in next(iter(payload["datasets"].values()))
    assert "### Accuracy" in path.with_suffix(".md").read_text(encoding="utf-8")


def test_ppo_benchmark_metrics_and_task_match_hand_counts():
    import numpy as np

    from benchmarks.datasets import Dataset
    from benchmarks.ppo import compose, dev_thresholds, f1s, lead

    gold = np.array([[1, 0], [1, 1], [0, 1]], dtype=bool)
    pred = np.array([[1, 1], [0, 1], [0, 0]], dtype=bool)
    # label 0: tp 1 fn 1 -> 2/3; label 1: tp 1 fp 1 fn 1 -> 1/2; micro: tp 2 fp 1 fn 2 -> 4/7
    micro, macro, per = f1s(gold, pred)
    assert per == pytest.approx([2 / 3, 1 / 2]) and macro == pytest.approx(7 / 12) and micro == pytest.approx(4 / 7)
    probs = np.array([[0.3, 0.2], [0.35, 0.9], [0.1, 0.6]])
    # perfect from 0.15 to 0.30 (label 0) and from 0.25 to 0.60 (label 1): the lowest of the ties
    assert dev_thresholds(gold, probs).tolist() == pytest.approx([0.15, 0.25])

    assert lead("Title\n\nFirst one. Second one.\n\nMore.") == "First one."
    assert lead("Title\n\n" + " ".join(["w"] * 20)) == " ".join(["w"] * 16) + "..."
    texts = [f"T{i}\n\n{topic} article {i}." for topic in ("a", "b", "c") for i in range(4)]
    pool = Dataset("toy", texts, [t.split()[1] for t in texts], ("a", "b", "c"), "", "")
    rows = compose(pool, 30, seed=0)
    assert rows == compose(pool, 30, seed=0) and {len(r["label"]) for r in rows} == {1, 2, 3}
    for row in rows:  # each topic's snippet is in the text, and only the gold topics' snippets
        assert len(set(row["label"])) == len(row["label"])
        assert {w for w in row["text"].split() if w in {"a", "b", "c"}} == set(row["label"])


def test_ece_floor_is_the_ece_of_labels_drawn_from_the_scores():
    import numpy as np

    from benchmarks.calibration import ece, ece_floor

    sure = np.eye(3)[np.arange(30) % 3]  # (30, 3) one-hot: every draw is the top label
    assert ece_floor(sure) == 0.0
    probs = np.tile([0.8, 0.2], (2000, 1))  # (2000, 2): about 80 % of the draws are label 0
    assert ece_floor(probs) < 0.03
    assert ece(probs, np.ones(2000, dtype=int)) == pytest.approx(0.8)  # always wrong: the floor is not the ECE
    few = np.tile([0.8, 0.2], (20, 1))
    assert ece_floor(few) > ece_floor(probs)  # fewer rows, more noise


def test_instruction_runs_only_the_approaches_asked_for(monkeypatch):
    import benchmarks.instruction as instruction

    calls, written = [], []

    def fake_run_dataset(name, **kw):
        calls.append((name, kw["methods"], kw["model"], kw["batch_size"]))
        return {"runs": [{"macro_f1": 0.5, "accuracy": 0.6, "train_wall_s": 1.0, "train_cpu_s": 1.0, "saved_mb": 2.0}]}

    monkeypatch.setattr(instruction, "run_dataset", fake_run_dataset)
    monkeypatch.setattr(instruction, "write_results", lambda name, payload, text: written.append((name, text)) or Path(name))
    assert instruction.main(["--shots", "8", "--datasets", "sms_spam", "--approaches", "instruction", "--out", "x"]) == 0
    assert calls == [("sms_spam", ["instruction"], "smollm2-instruction", None)]
    assert written[-1][0] == "x" and "| SMS" in written[-1][1] and "instruction (llm-prompt" in written[-1][1]
    calls.clear()
    assert instruction.main(["--shots", "8", "--datasets", "trec6"]) == 0
    assert [c[1] for c in calls] == [["lora"], ["instruction"]]  # both by default, head first


def test_a_shipped_adapter_at_wise_lambda_embeds_as_the_interpolated_weights(tiny_models, tmp_path):
    from benchmarks.train_contrastive import save_scaled
    from benchmarks.unseen import embed_all
    from udtc import Classifier
    from udtc.training.lora import add_lora, merge_lora

    texts = ["a goal for the team", "rain and wind in the city"]
    clf = Classifier.from_pretrained(tiny_models("cosine"), device="cpu")
    start = {k: v.detach().clone() for k, v in clf.backend.model.state_dict().items()}
    peft_model = add_lora(clf.backend, r=4, alpha=4, dropout=0.0, target_modules=["query", "key", "value", "dense"])
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in clf.backend.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a trained-looking adapter (B starts at zero)
    save_scaled(clf, peft_model, tmp_path / "m", 0.5)
    assert json.loads((tmp_path / "m" / "adapter_config.json").read_text())["base_model_name_or_path"] is None  # no path
    merge_lora(peft_model, clf.backend)
    tuned = {k: v.detach().clone() for k, v in clf.backend.model.state_dict().items()}
    clf.backend.model.load_state_dict({k: start[k] + 0.5 * (tuned[k] - start[k]) for k in tuned})
    clf.backend.clear_cache()
    with pytest.raises(ValueError, match="copy that model into the folder"):  # the base is named by its path
        Classifier.from_pretrained(tmp_path / "m", device="cpu")
    shutil.copytree(tiny_models("cosine"), tmp_path / "m" / "base")
    config = json.loads((tmp_path / "m" / "udtc_config.json").read_text())
    (tmp_path / "m" / "udtc_config.json").write_text(json.dumps({**config, "base_model": "base"}))
    shipped = Classifier.from_pretrained(tmp_path / "m", device="cpu").backend
    torch.testing.assert_close(embed_all(shipped, texts), embed_all(clf.backend, texts), atol=1e-5, rtol=0)
    clf.backend.model.load_state_dict(tuned)
    clf.backend.clear_cache()
    assert (embed_all(shipped, texts) - embed_all(clf.backend, texts)).abs().max() > 1e-3  # lambda 1 differs


@pytest.mark.integration
def test_unseen_extra_scores_the_shipped_default_and_baselines_on_the_extra_sets_only(monkeypatch, tiny_models, tmp_path):
    from benchmarks import unseen

    written = _record_writes(monkeypatch)
    shutil.copytree(tiny_models("cosine"), tmp_path / "my-recipe" / "model")  # as train_contrastive --save writes it
    assert unseen.main(["--extra", "--quick", "--candidate", str(tmp_path / "my-recipe" / "model")]) == 0
    assert [p.stem for p in written] == ["unseen_extra_candidates_quick"]
    payload = json.loads(written[0].read_text(encoding="utf-8"))
    assert set(payload["sets"]) == set(unseen.EXTRA) and not set(unseen.EXTRA) & set(unseen.SETS)
    assert {"cosine MiniLM", "default (TUNED_MINILM)", "SCE (shipped default)", "my-recipe",
            "my-recipe + template"} <= {r["model"] for r in payload["rows"]}
    with pytest.raises(SystemExit):
        unseen.main(["--candidate", str(tmp_path)])  # only with --extra or --paired
    with pytest.raises(SystemExit):
        unseen.main(["--out", "my_check"])
    assert {r["variant"] for r in payload["rows"]} == {"none", "batch", "ref"}
    assert all("unseen mean" not in r["test"] for r in payload["rows"])  # apart from the six-set mean
    assert unseen.main(["--extra", "--quick", "--out", "my_check"]) == 0  # a results file of its own
    assert [p.stem for p in written[1:]] == ["my_check_quick"]

    assert unseen.main(["--paired", "--quick", "--candidate", str(tmp_path / "my-recipe" / "model")]) == 0
    assert [p.stem for p in written[2:]] == ["unseen_paired_quick"]
    rows = json.loads(written[2].read_text(encoding="utf-8"))["rows"]
    assert [(r["model"], r["half"]) for r in rows] == [(m, h) for h in ("dev", "test")
                                                        for m in ("default (TUNED_MINILM)", "my-recipe")]
    for r in rows:  # every set of the six and of EXTRA, and the six-set mean, each with its interval
        assert set(r["delta_vs_cosine_minilm"]) == {*unseen.UNSEEN, *unseen.EXTRA, "unseen mean"}
        assert all(c["low"] <= c["high"] for c in r["delta_vs_cosine_minilm"].values())


@pytest.mark.parametrize("model", ["default", "cosine-minilm"])
def test_the_cosine_multi_label_shift_is_measured_on_the_models_own_embeddings(monkeypatch, model):
    # the shipped default's embeddings are cached under its adapter's hash, never under plain MiniLM's "minilm"
    from benchmarks import multi_label, unseen

    written, keys = _record_writes(monkeypatch), set()
    real_embed = unseen.embed

    def recording_embed(backend, encoder, texts, batch_size=32):
        keys.add(encoder)
        return real_embed(backend, encoder, texts, batch_size)

    monkeypatch.setattr(unseen, "embed", recording_embed)
    assert multi_label.main(["--backend", "cosine", "--model", model, "--quick"]) == 0
    assert keys == {unseen.tuned_key() if model == "default" else "minilm"} and unseen.tuned_key() != "minilm"
    payload = json.loads(written[-1].read_text(encoding="utf-8"))
    assert written[-1].stem == ("multi_label_default_quick" if model == "default" else "multi_label_cosine_quick")
    from udtc import Classifier
    from udtc.defaults import COSINE_MINILM, TUNED_MINILM

    shipped = Classifier.from_pretrained(TUNED_MINILM if model == "default" else COSINE_MINILM, device="cpu")
    assert payload["shipped_shift"] == round(shipped.backend.multi_label_shift, 2)


def test_resampled_f1_is_macro_f1_of_each_resample() -> None:
    from benchmarks.unseen import macro_f1, resampled_f1

    generator = torch.Generator().manual_seed(0)
    gold, pred = torch.randint(5, (40,), generator=generator), torch.randint(5, (40,), generator=generator)
    gold[gold == 4] = 3  # label 4 is predicted, never gold: it counts in no macro-F1
    idx = torch.randint(40, (6, 40), generator=generator)
    idx[0] = torch.arange(40)  # the identity draw: the whole half
    got = resampled_f1(pred, gold, idx, 5)
    assert got.shape == (6,)
    torch.testing.assert_close(got, torch.tensor([macro_f1(pred[i], gold[i]) for i in idx]), rtol=0, atol=1e-4)
    assert got[0].item() == pytest.approx(macro_f1(pred, gold), abs=1e-4)


def _toy_cosine(n_labels: int):
    """A seeded generator, n random 8-dim label vectors, their embedder and the cosine scorer over them."""
    from benchmarks.unseen import cosine_scorer

    g = torch.Generator().manual_seed(0)
    table = {f"l{i}": torch.randn(8, generator=g) for i in range(n_labels)}
    emb = lambda labels: torch.stack([table[x] for x in labels])  # noqa: E731
    return g, table, emb, cosine_scorer("cos", "enc", emb)


def test_label_set_corrections_read_one_text_and_the_label_set_only():
    from benchmarks.debias import LABEL_SET_KINDS, label_set_scorer

    g, table, _, base = _toy_cosine(5)
    q, labels = torch.randn(6, 8, generator=g), list(table)
    for kind in LABEL_SET_KINDS:
        assert torch.allclose(label_set_scorer(base, kind, 0.0).logits(q, labels), base.logits(q, labels), atol=1e-5)
        scorer = label_set_scorer(base, kind, 0.5)
        out = scorer.logits(q, labels)  # (N, L)
        assert not torch.allclose(out, base.logits(q, labels), atol=1e-3)
        assert torch.allclose(scorer.logits(q[2:3], labels), out[2:3], atol=1e-5)  # one text at a time
        perm = [3, 0, 4, 1, 2]
        assert torch.allclose(scorer.logits(q, [labels[i] for i in perm]), out[:, perm], atol=1e-5)
    # B: a label at the label set's centre loses exactly beta x its cosine to the centre (x scale)
    b = label_set_scorer(base, "B", 0.5)
    y = torch.nn.functional.normalize(torch.stack(list(table.values())), dim=-1)
    m = torch.nn.functional.normalize(y.mean(0), dim=-1)
    assert torch.allclose(base.logits(q, labels) - b.logits(q, labels), 20.0 * 0.5 * (y @ m)[None].expand(6, -1), atol=1e-4)


def test_hubness_discounts_labels_near_many_reference_texts_one_text_at_a_time():
    from benchmarks.debias import centred_scorer, hubness_scorer

    g, table, emb, base = _toy_cosine(5)
    q, labels, ref = torch.randn(6, 8, generator=g), list(table), torch.randn(30, 8, generator=g)
    ref[:10] = table["l3"] + 0.1 * torch.randn(10, 8, generator=g)  # l3 sits among ten references: a hub
    hub = hubness_scorer(base, ref, 5, 0.5)
    out = hub.logits(q, labels)  # (N, L)
    drop = (base.logits(q, labels) - out)[0]  # the same for every text
    assert torch.allclose(base.logits(q, labels) - out, drop.expand(6, -1), atol=1e-4)
    assert drop.argmax() == 3 and drop[3] > 20.0 * 0.5 * 0.9  # its 5 nearest references are all near it
    assert torch.allclose(hub.logits(q[2:3], labels), out[2:3], atol=1e-5)  # one text at a time
    perm = [3, 0, 4, 1, 2]
    assert torch.allclose(hub.logits(q, [labels[i] for i in perm]), out[:, perm], atol=1e-5)
    # k = every reference: the reference-mean correction (text centred by the mean reference), same ranking
    m = torch.nn.functional.normalize(ref, dim=-1).mean(0)
    every = hubness_scorer(base, ref, len(ref), 0.5).logits(q, labels)
    centred = centred_scorer("c", "enc", emb, m, torch.zeros(8, 0), 0.5).logits(q, labels)
    assert torch.allclose(every / every.norm(dim=-1, keepdim=True), centred / centred.norm(dim=-1, keepdim=True),
                          atol=1e-5)


def test_znorm_divides_each_labels_score_by_its_spread_over_the_reference_one_text_at_a_time():
    from benchmarks.debias import znorm_scorer

    g, table, emb, base = _toy_cosine(4)
    q, labels, ref = torch.randn(5, 8, generator=g), list(table), torch.randn(40, 8, generator=g)
    assert torch.allclose(znorm_scorer(base, ref, 40, 0.0, 0.0).logits(q, labels), base.logits(q, labels), atol=1e-5)
    out = znorm_scorer(base, ref, 40, 1.0, 1.0).logits(q, labels)  # (N, L)
    r = torch.nn.functional.normalize(ref, dim=-1)
    y = torch.nn.functional.normalize(emb(labels), dim=-1)
    c = y @ r.T  # (L, R)
    sd = c.std(-1)
    expected = 20.0 * (torch.nn.functional.normalize(q, dim=-1) @ y.T - c.mean(-1)[None]) / (sd / sd.mean())[None]
    assert torch.allclose(out, expected, atol=1e-4)
    z = znorm_scorer(base, ref, 10, 0.5, 1.0)
    assert torch.allclose(z.logits(q[1:2], labels), z.logits(q, labels)[1:2], atol=1e-5)  # one text at a time
    perm = [2, 0, 3, 1]
    assert torch.allclose(z.logits(q, [labels[i] for i in perm]), z.logits(q, labels)[:, perm], atol=1e-5)


def test_a_retrieved_pseudo_batch_removes_the_prior_of_the_label_sets_own_domain_one_text_at_a_time():
    from benchmarks.debias import retrieved_scorer
    from benchmarks.unseen import reference_bias

    g, table, emb, base = _toy_cosine(4)
    labels, q = list(table), torch.randn(5, 8, generator=g)
    far = -sum(table.values()) + 0.1 * torch.randn(40, 8, generator=g)  # away from the label set
    near = sum(table.values()) + table["l2"] + 0.1 * torch.randn(6, 8, generator=g)  # its domain, leaning to l2
    pool = torch.cat([far, near])
    for by in ("centroid", "any"):
        out = retrieved_scorer(base, pool, 6, 1.0, by).logits(q, labels)  # (N, L)
        drop = base.logits(q, labels) - out
        assert torch.allclose(drop, drop[0].expand(5, -1), atol=1e-4)  # one correction per label set
        assert torch.allclose(drop[0], reference_bias(base, labels, near)[0], atol=1e-4)  # over the 6 near texts
        assert drop[0].argmax() == 2
        assert torch.allclose(retrieved_scorer(base, pool, 6, 1.0, by).logits(q[1:2], labels), out[1:2], atol=1e-5)
        perm = [2, 0, 3, 1]
        assert torch.allclose(retrieved_scorer(base, pool, 6, 1.0, by).logits(q, [labels[i] for i in perm]),
                              out[:, perm], atol=1e-4)


def test_a_pseudo_batch_of_the_texts_own_neighbours_removes_their_prior_one_text_at_a_time():
    from benchmarks.debias import neighbour_scorer
    from benchmarks.unseen import reference_bias

    g, table, emb, base = _toy_cosine(4)
    labels = list(table)
    a, b = torch.randn(8, generator=g), torch.randn(8, generator=g)  # two domains, far apart
    pool = torch.cat([3 * a + 0.1 * torch.randn(5, 8, generator=g), 3 * b + 0.1 * torch.randn(5, 8, generator=g)])
    q = torch.stack([3 * a + 0.2 * torch.randn(8, generator=g), 3 * b + 0.2 * torch.randn(8, generator=g)])  # (2, 8)
    out = neighbour_scorer(base, pool, 5, 1.0).logits(q, labels)  # (N, L)
    drop = base.logits(q, labels) - out
    assert torch.allclose(drop[0], reference_bias(base, labels, pool[:5])[0], atol=1e-4)  # each text: its own domain
    assert torch.allclose(drop[1], reference_bias(base, labels, pool[5:])[0], atol=1e-4)
    assert torch.allclose(neighbour_scorer(base, pool, 5, 1.0).logits(q[1:2], labels), out[1:2], atol=1e-5)
    perm = [2, 0, 3, 1]
    assert torch.allclose(neighbour_scorer(base, pool, 5, 1.0).logits(q, [labels[i] for i in perm]), out[:, perm],
                          atol=1e-4)


def test_label_enrichment_mixes_templates_and_definitions_into_the_label_side():
    from benchmarks.enrich import ensemble_embedder, mix_embedder, wordnet_embedder

    g = torch.Generator().manual_seed(0)
    vectors: dict[str, torch.Tensor] = {}
    embed = lambda texts: torch.stack([vectors.setdefault(t, torch.randn(8, generator=g)) for t in texts])  # noqa: E731
    norm = torch.nn.functional.normalize
    both = ensemble_embedder(embed, ("{}", "About {}."))(["law", "chess"])  # (2, 8)
    assert torch.allclose(both[1], norm(norm(vectors["chess"], dim=0) + norm(vectors["About chess."], dim=0), dim=0))
    enriched = wordnet_embedder(embed, {"law": "the collection of rules"}, 0.5)(["Law", "zorb"])
    assert torch.allclose(enriched[0], norm(norm(vectors["Law"], dim=0)
                                             + 0.5 * norm(vectors["the collection of rules"], dim=0), dim=0))
    assert torch.allclose(enriched[1], norm(vectors["zorb"], dim=0))  # no definition: the bare label
    mixed = mix_embedder(embed, "About {}.", 0.5)(["law"])  # (1, 8)
    assert torch.allclose(mixed[0], norm(norm(vectors["law"], dim=0) + 0.5 * norm(vectors["About law."], dim=0), dim=0))


def test_train_contrastive_scores_one_coherent_label_set_per_step_with_groups(tiny_models):
    from argparse import Namespace

    from benchmarks.train_contrastive import frozen_teacher, train
    from udtc import Classifier

    clf = Classifier.from_pretrained(tiny_models("cosine"), device="cpu")
    teacher = frozen_teacher(Classifier.from_pretrained(tiny_models("cosine"), device="cpu").backend, 16)
    data = [("the court ruled on the appeal", "law", ["music"]), ("a slow tempo", "music", ["law", "chess"]),
            ("the king is in check", "chess", ["sport"]), ("he scored a touchdown", "sport", ["law"])]
    groups = [{"law": ["a jury verdict"], "music": ["a chord of three notes"], "chess": ["an opening gambit"]},
              {"dog": ["a curly poodle", "a short-legged hound"], "cat": ["a striped tabby"]}]
    label_calls: list[list[str]] = []
    embed_batch = clf.backend._embed_batch
    clf.backend._embed_batch = lambda texts: label_calls.append(list(texts)) or embed_batch(texts)
    args = Namespace(steps=4, batch=2, ref=2, lr=1e-3, kl=1.0, prior=1.0, max_length=16, groups=2, group_prior=1.0,
                     group_topics=0.5, label_templates=0.0, symmetric=0.0, scale=20.0, side="both")
    logs: list[str] = []
    train(clf, teacher, data, args, 0, log=logs.append, groups=groups)
    assert "group ce" in logs[0] and "group prior" in logs[0]
    group_labels = [c for c in label_calls if len(c) == 2 and any(set(c) <= set(g) for g in groups)]
    assert len(group_labels) >= 4  # every step scored one label set drawn from one group, with one text per label
    label_calls.clear()
    train(clf, teacher, data, args, 0, log=logs.append)  # no groups: only the rows' own label strings
    assert all(set(c) <= {x for _, g, n in data for x in (g, *n)} | {t for t, _, _ in data} for c in label_calls)


def test_the_label_to_text_loss_makes_each_gold_label_prefer_its_own_texts(tiny_models):
    from argparse import Namespace

    from benchmarks.train_contrastive import frozen_teacher, label_to_text_loss, train
    from udtc import Classifier

    logits = torch.tensor([[2.0, 0.0, 1.0], [1.0, 3.0, 0.0], [0.5, 0.0, 2.0]])  # (B=3 texts, U=3 labels)
    gold = torch.tensor([0, 1, 0])  # label 2 is nobody's gold: no term of its own
    p0 = logits[:, 0].softmax(0)  # label 0 over the texts; texts 0 and 2 are its own
    expected = -(torch.log(p0[0] + p0[2]) + logits[:, 1].log_softmax(0)[1]) / 2
    assert torch.allclose(label_to_text_loss(logits, gold), expected)
    hub = logits.clone()
    hub[1, 0] = 5.0  # label 0 scores label 1's text above its own texts
    assert label_to_text_loss(hub, gold) > label_to_text_loss(logits, gold) + 1
    perm = torch.tensor([2, 0, 1])  # relabelling the label set leaves it unchanged
    assert torch.allclose(label_to_text_loss(logits[:, perm], perm.argsort()[gold]), expected)
    clf = Classifier.from_pretrained(tiny_models("cosine"), device="cpu")
    teacher = frozen_teacher(Classifier.from_pretrained(tiny_models("cosine"), device="cpu").backend, 16)
    data = [("the court ruled on the appeal", "law", ["music"]), ("a slow tempo", "music", ["law", "chess"]),
            ("the king is in check", "chess", ["sport"]), ("he scored a touchdown", "sport", ["law"])]
    logs: list[str] = []
    args = Namespace(steps=2, batch=2, ref=0, lr=1e-3, kl=1.0, prior=0.0, max_length=16, label_templates=0.0,
                     symmetric=1.0, scale=20.0, side="both")
    train(clf, teacher, data, args, 0, log=logs.append)
    assert "label->text" in logs[0]


def test_scale_sharpens_the_cross_entropy_only(tiny_models):
    import re
    from argparse import Namespace

    from benchmarks.train_contrastive import frozen_teacher, train
    from udtc import Classifier

    teacher = frozen_teacher(Classifier.from_pretrained(tiny_models("cosine"), device="cpu").backend, 16)
    data = [("the court ruled on the appeal", "law", ["music"]), ("a slow tempo", "music", ["law", "chess"]),
            ("the king is in check", "chess", ["sport"]), ("he scored a touchdown", "sport", ["law"])]
    first: dict[float, dict[str, float]] = {}
    for scale in (20.0, 40.0):
        clf = Classifier.from_pretrained(tiny_models("cosine"), device="cpu")
        logs: list[str] = []
        args = Namespace(steps=1, batch=2, ref=0, lr=1e-3, kl=1.0, prior=0.0, max_length=16, label_templates=0.0,
                         symmetric=0.0, scale=scale, side="both")
        train(clf, teacher, data, args, 0, log=logs.append)
        first[scale] = {k: float(v) for k, v in re.findall(r"(ce|kl) (-?[0-9.]+)", logs[0])}
    assert first[20.0]["kl"] == first[40.0]["kl"]  # the same first batch, the KL at 20 either way
    assert first[20.0]["ce"] != first[40.0]["ce"]


def test_label_templates_frame_every_label_of_a_step_for_student_and_teacher_alike(tiny_models):
    from argparse import Namespace

    from benchmarks.train_contrastive import LABEL_TEMPLATES, train
    from udtc import Classifier

    clf = Classifier.from_pretrained(tiny_models("cosine"), device="cpu")
    data = [("the court ruled on the appeal", "law", ["music"]), ("a slow tempo", "music", ["law", "chess"]),
            ("the king is in check", "chess", ["sport"]), ("he scored a touchdown", "sport", ["law"])]
    names = {x for _, g, n in data for x in (g, *n)}
    framings = {t.replace("{}", x) for t in LABEL_TEMPLATES for x in names}
    seen: list[list[str]] = []

    def teacher(texts, labels):
        seen.append(list(labels))
        return torch.zeros(len(texts), len(labels))

    label_calls: list[list[str]] = []
    embed_batch = clf.backend._embed_batch
    clf.backend._embed_batch = lambda texts: label_calls.append(list(texts)) or embed_batch(texts)
    args = Namespace(steps=3, batch=2, ref=0, lr=1e-3, kl=1.0, prior=0.0, max_length=16, label_templates=1.0,
                     symmetric=0.0, scale=20.0, side="both")
    train(clf, teacher, data, args, 0, log=lambda m: None)
    labels = [c for c in label_calls if not set(c) & {t for t, _, _ in data}]  # the label side of each step
    assert len(seen) == 3 and all(set(c) <= framings for c in seen)  # every step framed, the teacher sees the same
    assert all(c in labels for c in seen)  # the student embeds the same framed strings
    frames = [{t for t in LABEL_TEMPLATES if all(any(t.replace("{}", x) == s for x in names) for s in c)} for c in seen]
    assert all(len(f) == 1 for f in frames)  # one template for all the labels of a step
    seen.clear()
    train(clf, teacher, data, Namespace(**{**vars(args), "label_templates": 0.0}), 0, log=lambda m: None)
    assert all(set(c) <= names for c in seen)  # P = 0: the bare names, as before


@pytest.mark.parametrize("side", ["label", "text"])
def test_side_trains_one_tower_and_embeds_the_other_with_the_frozen_base(tiny_models, side):
    from argparse import Namespace

    from benchmarks.train_contrastive import frozen_teacher, train
    from udtc import Classifier
    from udtc.training.lora import add_lora

    clf = Classifier.from_pretrained(tiny_models("cosine"), device="cpu")
    base = Classifier.from_pretrained(tiny_models("cosine"), device="cpu").backend
    teacher = frozen_teacher(Classifier.from_pretrained(tiny_models("cosine"), device="cpu").backend, 16)
    peft_model = add_lora(clf.backend, r=4, alpha=4, dropout=0.0, target_modules=["query", "key", "value", "dense"])
    data = [("the court ruled on the appeal", "law", ["music"]), ("a slow tempo", "music", ["law", "chess"]),
            ("the king is in check", "chess", ["sport"]), ("he scored a touchdown", "sport", ["law"])]
    texts, names = {t for t, _, _ in data}, {x for _, g, n in data for x in (g, *n)}
    calls: list[tuple[str, bool, bool]] = []  # (side, gradient on, adapter on)
    embed_batch = clf.backend._embed_batch

    def spy(strings):
        emb, cut = embed_batch(strings)
        what = "text" if set(strings) <= texts else "label" if set(strings) <= names else "?"
        off = torch.allclose(emb, base._embed_batch(strings)[0], atol=1e-6)
        calls.append((what, torch.is_grad_enabled(), not off))
        return emb, cut

    clf.backend._embed_batch = spy
    before = {k: v.clone() for k, v in peft_model.state_dict().items() if "lora_B" in k}
    args = Namespace(steps=3, batch=2, ref=2, lr=1e-2, kl=1.0, prior=1.0, max_length=16, label_templates=0.0,
                     symmetric=0.0, scale=20.0, side=side)
    base.max_length = 16
    train(clf, teacher, data, args, 0, log=lambda m: None, peft_model=peft_model)
    frozen = "text" if side == "label" else "label"
    assert {c[0] for c in calls} == {"text", "label"}
    assert all(not grad for what, grad, _ in calls if what == frozen)  # the frozen tower: no gradient ...
    assert all(not on for what, _, on in calls[2:] if what == frozen)  # ... and the base's embeddings (adapter off)
    assert all(grad for what, grad, _ in calls if what == side)
    assert any(on for what, _, on in calls[2:] if what == side)  # the trained tower moves off the base
    assert any(not torch.equal(before[k], v) for k, v in peft_model.state_dict().items() if k in before)


def test_concat_rows_join_texts_of_one_gold_into_longer_rows():
    from benchmarks.train_contrastive import concat_rows

    data = [("a jury verdict", "law", ["music"]), ("the appeal was heard.", "law", ["chess"]),
            ("a statute", "law", ["music"]), ("a slow tempo", "music", ["law"]), ("a chord!", "music", ["law"]),
            ("an opening gambit", "chess", ["law"])]  # chess has one text: never joined
    rows = concat_rows(data, 50, seed=1, parts=(2, 3))
    assert len(rows) == 50 and rows == concat_rows(data, 50, seed=1, parts=(2, 3))
    own = {g: {t.rstrip(".!") for t, gold, _ in data if gold == g} for g in ("law", "music")}
    for text, gold, negatives in rows:
        sentences = re.split(r"(?<=[.!?]) ", text)
        assert 2 <= len(sentences) <= 3 and all(x.endswith((".", "!", "?")) for x in sentences)
        assert {x.rstrip(".!") for x in sentences} <= own[gold] and len(set(sentences)) == len(sentences)
        assert gold not in negatives and any(negatives == n for t, g, n in data if g == gold)
    assert {g for _, g, _ in rows} == {"law", "music"}
    assert concat_rows(data, 0) == [] and concat_rows([("x", "a", ["b"])], 5) == []


def test_fortune_rows_keep_no_evaluation_label_name_or_text(monkeypatch):
    from types import SimpleNamespace

    import benchmarks.datasets as data_sets
    import benchmarks.train_contrastive as tc

    fortunes = [("Art is long.", "art"), ("Eat your greens!", "food"), ("A cat naps.", "pets"),
                ("What is a computer?!", "art")]
    monkeypatch.setattr(data_sets, "load", lambda name: SimpleNamespace(rows=lambda: fortunes))
    monkeypatch.setattr(tc, "evaluation_labels", lambda: frozenset({"food"}))  # an evaluation label name
    monkeypatch.setattr(tc, "load", lambda name: SimpleNamespace(texts=["what is a computer"]))  # an evaluation text
    rows = tc.fortune_rows(10, seed=0)
    assert sorted(rows) == [("A cat naps.", "pets", ["art"]), ("Art is long.", "art", ["pets"])]
    assert len(tc.fortune_rows(1, seed=0)) == 1 and tc.fortune_rows(0) == []


def test_a_born_again_student_is_taught_by_the_shipped_default(monkeypatch, tmp_path):
    # --teacher default: the KL target is the shipped default's cosine (bare labels), cached under its own key
    import benchmarks.train_contrastive as tc
    from benchmarks.unseen import tuned_key

    monkeypatch.setenv("UDTC_CACHE", str(tmp_path))  # the teacher's embeddings of the quick rows: a fresh cache
    seen = []
    real = tc.cached_teacher

    def recording(backend, encoder, data, templates, max_length):
        seen.append((backend.model.config.name_or_path, encoder, templates))
        return real(backend, encoder, data, templates, max_length)

    monkeypatch.setattr(tc, "cached_teacher", recording)
    from factories import ROWS

    labels = sorted({r["label"] for r in ROWS})
    rows = [(r["text"], r["label"], [x for x in labels if x != r["label"]]) for r in ROWS]
    monkeypatch.setattr(tc, "training_rows", lambda *a, **k: rows * 4)  # 18 texts: the teacher embeds little
    _record_writes(monkeypatch)
    assert tc.main(["--quick", "--teacher", "default", "--lora", "4", "--batch", "8"]) == 0
    assert [(key, templates) for _, key, templates in seen] == [(tuned_key(), ("{}",))]
    assert "default" in tc.TEACHERS and "born-again" in tc.TEACHERS["default"]


def test_a_cached_teacher_scores_texts_against_templated_labels_embedding_each_string_once(tiny_models, tmp_path,
                                                                                          monkeypatch):
    import torch.nn.functional as F

    from benchmarks.train_contrastive import cached_teacher
    from udtc import Classifier

    monkeypatch.setenv("UDTC_CACHE", str(tmp_path))
    backend = Classifier.from_pretrained(tiny_models("cosine"), device="cpu").backend
    data = [("the court ruled on the appeal", "law", ["music"]), ("a slow tempo", "music", ["law", "chess"])]
    calls: list[list[str]] = []
    embed = backend.embed
    backend.embed = lambda texts, batch_size=32: calls.append(list(texts)) or embed(texts, batch_size)
    scores = cached_teacher(backend, "big", data, ("About {}.",), 16)
    assert sorted(len(c) for c in calls) == [2, 3]  # two texts, three label strings: each embedded once
    got = scores(["a slow tempo"], ["chess", "law"])  # (1, 2)
    x = F.normalize(embed(["a slow tempo"])[0], dim=-1)
    y = F.normalize(embed(["About chess.", "About law."])[0], dim=-1)
    assert got.shape == (1, 2) and torch.allclose(got, 20.0 * x @ y.T, atol=1e-5)
    assert torch.allclose(scores(["a slow tempo"], ["law", "chess"]), got.flip(-1))  # permuting labels permutes scores
    calls.clear()
    cached_teacher(backend, "big", data, ("About {}.",), 16)
    assert calls == []  # the second run reads the cache
    ens = cached_teacher(backend, "big", data, ("About {}.", "{}"), 16)  # --teacher mpnet-ens: a template ensemble
    assert sorted(len(c) for c in calls) == [3]  # only the new template's label strings are embedded
    y2 = F.normalize(embed(["chess", "law"])[0], dim=-1)
    mean = F.normalize(y + y2, dim=-1)  # (2, D): the normalised mean of each label's normalised template embeddings
    assert torch.allclose(ens(["a slow tempo"], ["chess", "law"]), 20.0 * x @ mean.T, atol=1e-5)
    with pytest.raises(TypeError, match=r"\('About \{\}\.',\)"):
        cached_teacher(backend, "big", data, "About {}.", 16)  # one string would be read as one template per character


def test_kinds_counts_trec_once_adds_software_domains_and_averages_the_seeds_that_have_both(tmp_path):
    from benchmarks.unseen import EXTRA, UNSEEN, kinds

    def half(v: float) -> dict:
        cells = {n: {"macro_f1": v + i} for i, n in enumerate(UNSEEN)}  # trec6 v, trec50 v+1, ..., ovos v+5
        return {**cells, "unseen mean": {"macro_f1": v + 2.5}}

    for seed, v in ((0, 10.0), (1, 20.0), (2, 30.0)):  # seed 2 has no software-domain row: left out
        rows = [{"model": "r", "variant": "none", "dev": half(v), "test": half(v + 1)},
                {"model": "r", "variant": "batch", "dev": half(99.0), "test": half(99.0)}]
        (tmp_path / f"contrastive_r_s{seed}.json").write_text(json.dumps({"rows": rows}))
    (tmp_path / "contrastive_r_ship.json").write_text("{}")  # not a seed file
    extra = [{"model": f"r_seed{s}", "variant": "none", "dev": {n: {"macro_f1": d} for n in EXTRA},
              "test": {n: {"macro_f1": d + 1} for n in EXTRA}} for s, d in ((0, 40.0), (1, 60.0))]
    (tmp_path / "unseen_extra_candidates_x.json").write_text(json.dumps({"rows": extra}))
    dev = next(line for line in kinds(["r"], tmp_path).splitlines() if "| dev |" in line)
    cells = [c.strip(" *") for c in dev.split("|")[1:-1]]
    # seeds 0 and 1: TREC (v + v+1)/2 = 15.5; sms 17; brown 18; chit-chat 19; ovos 20; software domains 50
    assert cells[:3] == ["r", "0,1", "dev"] and cells[3:9] == ["15.5", "17.0", "18.0", "19.0", "20.0", "50.0"]
    assert cells[9:] == [f"{(15.5 + 17 + 18 + 19 + 20 + 50) / 6:.1f}", "17.5"]
    with pytest.raises(FileNotFoundError, match="--candidate"):
        kinds(["other"], tmp_path)


def test_a_soup_of_lora_adapters_loads_as_the_weighted_mean_of_their_changes(tiny_models, tmp_path):
    import udtc
    from benchmarks.soup import soup_adapter
    from factories import ROWS
    from udtc import Classifier

    adapters = []
    for seed, lr in ((0, 5e-2), (1, 2e-2)):
        out = tmp_path / f"lora{seed}"
        udtc.finetune(tiny_models("cosine"), ROWS, output_dir=out, method="lora", epochs=1, lora_dropout=0.0,
                      learning_rate=lr, seed=seed, progress=False)
        adapters.append(out)
    state = [Classifier.from_pretrained(f, device="cpu").backend.model.state_dict() for f in adapters]
    base = Classifier.from_pretrained(adapters[0] / "base", device="cpu").backend.model.state_dict()
    soup_adapter(adapters, [0.25, 0.75], tmp_path / "soup")
    got = Classifier.from_pretrained(tmp_path / "soup", device="cpu").backend.model.state_dict()
    changed = [k for k in base if not torch.equal(state[0][k], base[k])]
    assert changed  # the adapters change the weights
    for k in base:  # exactly theta0 + 0.25 (theta1 - theta0) + 0.75 (theta2 - theta0)
        torch.testing.assert_close(got[k], base[k] + 0.25 * (state[0][k] - base[k]) + 0.75 * (state[1][k] - base[k]),
                                   atol=1e-6, rtol=0)
    soup_adapter(adapters, [0.25, 0.75], tmp_path / "half", torch.float16)  # half the file, the same model
    half = Classifier.from_pretrained(tmp_path / "half", device="cpu").backend.model.state_dict()
    assert all(torch.allclose(half[k], got[k], atol=1e-4) for k in base)
    size = [(tmp_path / f / "adapter_model.safetensors").stat().st_size for f in ("half", "soup")]
    assert size[0] < 0.6 * size[1], size
    with pytest.raises(FileExistsError, match="never overwrites"):
        soup_adapter(adapters, [0.5, 0.5], tmp_path / "soup")
    with pytest.raises(ValueError, match="one weight per candidate"):
        soup_adapter(adapters, [1.0], tmp_path / "other")
    config = json.loads((adapters[1] / "adapter_config.json").read_text())
    (adapters[1] / "adapter_config.json").write_text(json.dumps(dict(config, modules_to_save=["head"])))
    with pytest.raises(ValueError, match="not a plain LoRA adapter"):  # a saved head cannot be stacked
        soup_adapter(adapters, [0.5, 0.5], tmp_path / "other")


def test_late_interaction_scores_are_maxsim_per_label_and_match_the_backends_embedding(tiny_models):
    import torch.nn.functional as F

    from benchmarks.late_interaction import States, by_kind, combined, match_scores, token_states
    from udtc import Classifier

    backend = Classifier.from_pretrained(tiny_models("cosine"), device="cpu").backend
    texts = ["the court ruled on the appeal today", "a slow tempo", "check"]
    states = token_states(backend, texts)
    emb, _ = backend.embed(texts)
    assert torch.allclose(torch.stack([s.pooled for s in states]), F.normalize(emb, dim=-1), atol=1e-5)
    n_tokens = [len(backend.tokenizer(t.lower() if backend.do_lower_case else t)["input_ids"]) - 2 for t in texts]
    assert [len(s.tokens) for s in states] == n_tokens  # [CLS] and [SEP] left out

    e = torch.eye(3)
    x = [States(e[0], e[[0, 1]]), States(e[2], e[[2]])]
    y = [States(e[1], e[[1, 2]]), States(e[0], e[[0]])]
    got = match_scores(x, y)
    assert torch.equal(got["cos"], torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
    assert torch.equal(got["ms"], torch.tensor([[0.5, 1.0], [0.5, 0.0]]))  # label tokens' best text token, averaged
    assert torch.equal(got["msp"], torch.tensor([[1.0, 1.0], [0.0, 0.0]]))  # best text token vs the pooled label
    swapped = match_scores(x, y[::-1])
    assert all(torch.equal(swapped[k], got[k].flip(1)) for k in got)  # permuting labels permutes columns
    ref = {"ms": torch.tensor([[1.0, 0.0], [0.0, 0.0]])}
    assert torch.equal(combined(got, ref, "ms", 1.0, 2.0), got["cos"] + 2.0 * (got["ms"] - torch.tensor([0.5, 0.0])))
    assert torch.equal(combined(got, ref, None, 1.0, 2.0), got["cos"])
    f1 = {"trec6": 40.0, "trec50": 20.0, "sms_spam": 60.0, "brown_genre": 10.0, "chatterbot_topics": 50.0,
          "ovos_commands": 80.0, "debian_sections": 50.0}
    assert by_kind(f1) == (pytest.approx(260 / 6), pytest.approx(280 / 6), pytest.approx(50.0))

    from benchmarks.late_interaction import chosen

    def row(reading, dev, six):
        return {"reading": reading, "f1": {"dev": dev}, "means": {"dev": {"six": six}}}

    low = {**f1, "brown_genre": 8.9}  # 1.1 below the floor: breaks the rule
    rows = [row("none", f1, 43.0), row("ms", low, 50.0), row("ms", f1, 45.0), row("msp", low, 44.0)]
    assert chosen(rows, f1) == [rows[0], rows[2], rows[3]]  # the best that passes; none passes for msp: its best


def test_lm_written_rows_keep_texts_about_their_domain_that_do_not_name_it(monkeypatch, tmp_path, tiny_models):
    import benchmarks.generate as gen
    from benchmarks.train_contrastive import lm_rows

    monkeypatch.setattr(gen, "domains", lambda: ["American football", "banking", "chess", "sailing"])
    assert gen.clean("Checkmate! My knight took her queen.\nMore text", "chess") == "Checkmate! My knight took her queen."
    assert gen.clean("\"The bank raised its rates again today.\"", "banking") == "The bank raised its rates again today."
    for raw in ("I love chess openings so much", "Chess: the game of kings and queens", "Fans of American footballs unite",
                "Footballs were thrown across the field", "Here is a question about it for you",
                "A rock 'n' roll night in town", "Short text", "El herrero, el alegrón de la plaza"):
        label = "rock 'n' roll" if "rock" in raw else "chess" if "ches" in raw.lower() or "Short" in raw else "American football"
        assert gen.clean(raw, label) is None, raw
    monkeypatch.setenv("UDTC_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="python -m benchmarks.generate --n 3 --seed 0"):
        gen.generated_rows(3, 0)
    lines = [{"label": "chess", "style": "a tweet", "raw": "My rook and bishop guard the king today"},
             {"label": "sailing", "style": "a tweet", "raw": "I'm happy to help with sailing!"},  # boilerplate
             {"label": "banking", "style": "a tweet", "raw": "The teller counted our deposit twice"}]
    for seed in (0, 1):
        path = gen.cache_path(3, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in lines[seed:]), encoding="utf-8")
    rows = gen.generated_rows(3, 0)
    assert [(t, y) for t, y, _ in rows] == [("My rook and bishop guard the king today", "chess"),
                                           ("The teller counted our deposit twice", "banking")]
    assert all(1 <= len(n) <= 4 and y not in n and set(n) <= set(gen.domains()) for _, y, n in rows)
    assert rows == gen.generated_rows(3, 0)  # negatives seeded
    # the relevance filter keeps a row when cosine ranks its label within the top k of every domain
    from udtc import Classifier

    monkeypatch.setattr("udtc.defaults.COSINE_MINILM", tiny_models("cosine"))
    backend = Classifier.from_pretrained(tiny_models("cosine"), device="cpu").backend
    from benchmarks.unseen import embed_all

    texts = [t for t, _, _ in rows]
    cos = (torch.nn.functional.normalize(embed_all(backend, texts), dim=-1)
           @ torch.nn.functional.normalize(embed_all(backend, gen.domains()), dim=-1).T)  # (2, 4)
    ranks = [int((cos[i] > cos[i, gen.domains().index(y)]).sum()) for i, (_, y, _) in enumerate(rows)]
    for top in (1, 2, 3, 4):
        assert gen.relevant(rows, top) == [r for r, k in zip(rows, ranks) if k < top]
    assert gen.relevant(rows, 0) == rows
    both = lm_rows(3, 3, 4, seed=0, files=(0, 1))  # both files' rows (the seed-0 file's 2 + the seed-1 file's 1)
    assert sorted(t for t, _, _ in both) == sorted([*texts, "The teller counted our deposit twice"])
    seven = lm_rows(7, 3, 4, files=(0, 1))  # fewer pass than asked: each twice, one of them a third time
    assert len(seven) == 7 and all(r in both for r in seven)
    assert sorted(seven.count(r) for r in both) == [2, 2, 3]
    assert len(lm_rows(1, 3, 4, files=(0, 1))) == 1 and lm_rows(0, 3, 4, files=(0, 1)) == []
    with pytest.raises(FileNotFoundError):
        lm_rows(1, 3, 4, files=(0, 2))


def test_generate_samples_seeded_texts_for_domains_and_styles_and_caches_them(monkeypatch, tmp_path, tiny_models):
    import benchmarks.generate as gen

    folder = tiny_models("llm-prompt")  # a tiny random causal LM with a ChatML template
    monkeypatch.setattr("benchmarks.models.fetch", lambda name: folder)
    monkeypatch.setattr("udtc.gguf.gguf_to_folder", lambda path: path)
    monkeypatch.setattr(gen, "domains", lambda: ["banking", "chess", "sailing"])
    monkeypatch.setenv("UDTC_DATA_DIR", str(tmp_path))
    rows = gen.generate(5, seed=0, batch=2, max_new_tokens=3, log=lambda m: None)
    assert len(rows) == 5 and all(r["label"] in gen.domains() and r["style"] in gen.STYLES for r in rows)
    assert all(isinstance(r["raw"], str) for r in rows)
    assert gen.generate(5, seed=0, batch=2, max_new_tokens=3, log=lambda m: None) == rows  # seeded
    assert gen.main(["--n", "3", "--seed", "1", "--threads", str(torch.get_num_threads())]) == 0
    written = [json.loads(line) for line in gen.cache_path(3, 1).read_text(encoding="utf-8").splitlines()]
    assert len(written) == 3 and set(written[0]) == {"label", "style", "raw"}
    assert not list(gen.cache_path(3, 1).parent.glob("*.tmp"))
