"""udtc.finetune / ``udtc finetune``: data handling, the loop, checkpoints and resume, saving, the Hub.

Every model here is a tiny random checkpoint from tests/factories.py; the two-process DDP run is
marked integration.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from logcheck import expect_log
import torch
from factories import ROWS, TRAIN

import udtc
from udtc import Classifier
from udtc.backends import get_backend
from udtc.backends.base import Trainable
from udtc.cli import main
from udtc.training import checkpoint as ckpt
from udtc.training.data import check_eval, load_examples, sample_shots
from udtc.training.metrics import classification_metrics

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["a goal for the team", "rain and wind in the city", "a recipe with food"]
FAST = {"epochs": 2, "batch_size": 4, "progress": False, "learning_rate": 5e-3}


@pytest.fixture(scope="module")
def tiny(tiny_models):
    return tiny_models("cosine")


pytestmark = pytest.mark.usefixtures("one_thread")  # on a busy CPU, thread hand-offs cost tiny models 50x


def _scores(clf, texts=TEXTS, labels=None):
    return [[p.scores[k] for k in sorted(p.scores)] for p in clf.classify(texts, labels)]


# ---------------------------------------------------------------------------------------------- data
def test_missing_column_names_the_columns_found(tmp_path):
    with pytest.raises(ValueError, match=r"no column 'label'.*columns found: text, category"):
        load_examples([{"text": "a", "category": "b"}])
    path = tmp_path / "d.csv"
    path.write_text("sentence,label\nhello,x\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"no column 'text'.*columns found: sentence, label"):
        load_examples(path)


def test_empty_rows_are_skipped_and_counted():
    rows = ROWS[:4] + [{"text": "  ", "label": "sports"}, {"text": "x", "label": ""}, {"text": "y", "label": None},
                       {"text": float("nan"), "label": "food"}]
    with expect_log("skipped 4 row"):
        data = load_examples(rows)
    assert len(data) == 4 and data.skipped == 4


def test_non_utf8_file_is_a_clear_error(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\ncaf\xe9,food\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        load_examples(path)


def test_eval_labels_that_train_lacks_are_reported():
    train = load_examples(ROWS)
    with expect_log(r"labels the train data lacks: \['music'\]"):
        kept = check_eval(load_examples(ROWS[:2] + [{"text": "a song", "label": "music"}], what="eval"), train)
    assert len(kept) == 2 and kept.labels == train.labels


def test_shots_sample_per_label_with_the_seed_and_warn_when_short():
    data = load_examples(ROWS + [{"text": "a song", "label": "music"}])
    with expect_log(r"'music' \(1\)"):
        few = sample_shots(data, 3, seed=0)
    assert few.counts() == {"sports": 3, "weather": 3, "food": 3, "music": 1}
    with expect_log():
        again = sample_shots(data, 3, seed=0)
    with expect_log():
        other = sample_shots(data, 3, seed=1)
    assert again.texts == few.texts and other.texts != few.texts


def test_label_separator_makes_multi_label(tmp_path):
    path = tmp_path / "m.tsv"
    path.write_text("text\ttags\nrain and food\tweather|food\nthe match\tsports\n", encoding="utf-8")
    data = load_examples(path, label_column="tags", label_separator="|")
    assert data.multi_label and data.targets == [("weather", "food"), ("sports",)]
    with pytest.raises(ValueError, match="label_separator"):
        load_examples([{"text": "a", "label": ["x", "y"]}, {"text": "b", "label": "z"}], label_separator="")


def test_dataframe_and_dataset_are_duck_typed():
    class FakeFrame:  # the two things udtc uses of a pandas.DataFrame
        columns = ("text", "label")

        def to_dict(self, orient):
            assert orient == "records"
            return ROWS

    class ClassLabel:
        names = ("sports", "weather")

    class FakeDataset:  # datasets.Dataset with a ClassLabel column
        column_names = ("text", "label")
        features: ClassVar[dict] = {"text": object(), "label": ClassLabel()}

        def to_list(self):
            return [{"text": "the match", "label": 0}, {"text": "rain", "label": 1}]

    assert len(load_examples(FakeFrame())) == len(ROWS)
    assert load_examples(FakeDataset()).targets == [("sports",), ("weather",)]

    class FakeDatasetDict:
        column_names: ClassVar[dict] = {"train": ["text", "label"]}
        features: ClassVar[dict] = {}

    with pytest.raises(TypeError, match="DatasetDict"):
        load_examples(FakeDatasetDict())
    with pytest.raises(TypeError, match="labels must be names"):
        load_examples([{"text": "a", "label": 3}])
    with pytest.raises(TypeError, match="list of dicts"):
        load_examples(42)


def test_metrics_match_hand_computed_values():
    m = classification_metrics(["a", "b", "b", "a"], ["a", "a", "b", "c"], ["a", "b", "c"])
    # per label F1: a 1/2, b 2/3, c 0 (sklearn f1_score(average="macro") gives 0.3889)
    assert m["accuracy"] == pytest.approx(0.5) and m["micro_f1"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0) / 3)
    multi = classification_metrics([("a", "b"), ("b",)], [("a",), ("b", "c")], ["a", "b", "c"])
    # tp: a1 b1; fp: b1; fn: c1 -> micro 2*2/(4+1+1); macro over a (1), b (2/3), c (0)
    assert multi["accuracy"] == 0.0 and multi["micro_f1"] == pytest.approx(4 / 6)
    assert multi["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)


# ---------------------------------------------------------------------------------------------- contract
def test_unsupported_or_unknown_method_fails_before_any_work(tiny, tmp_path):
    with pytest.raises(ValueError, match=r"not supported by the 'cosine' backend; it supports: full, lora"):
        udtc.finetune(tiny, ROWS, method="head", output_dir=tmp_path / "o")
    with pytest.raises(ValueError, match="unknown method 'bogus'"):
        udtc.finetune(tiny, ROWS, method="bogus", output_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_qlora_without_cuda_fails_at_once(tmp_path):
    start = time.perf_counter()
    with pytest.raises(ValueError, match="qlora.*needs a CUDA GPU"):
        udtc.finetune("no/such-model", ROWS, method="qlora", output_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists() and time.perf_counter() - start < 5


# ---------------------------------------------------------------------------------------------- every backend
TRAINABLE = [(name, method) for name in udtc.available_backends() if issubclass(get_backend(name), Trainable)
             for method in sorted(get_backend(name).supported_methods - {"qlora"})]


@pytest.mark.parametrize(("name", "method"), TRAINABLE)
def test_every_trainable_backend_fine_tunes_saves_and_reloads(tiny_models, tmp_path, name, method):
    """The optional training contract, generated from the registry: one epoch, save, reload, same scores."""
    clf, metrics = udtc.finetune(tiny_models(name), ROWS, method=method, epochs=1, batch_size=6, progress=False,
                                 output_dir=tmp_path / "o")  # a listed method that trains nothing is an error
    assert metrics["epochs_run"] == 1 and np.isfinite(metrics["train_loss"])
    again = Classifier.from_pretrained(tmp_path / "o", device="cpu")
    assert again.labels == ["sports", "weather", "food"]
    np.testing.assert_allclose(_scores(again), _scores(clf), atol=1e-4)


# ---------------------------------------------------------------------------------------------- results
def test_a_card_lists_the_first_labels_of_a_model_trained_on_thousands():
    from udtc.card import CARD_LABELS, ModelCard

    names = [f"label {i}" for i in range(CARD_LABELS + 10)]
    card = ModelCard(backend="cosine", labels=names).render()
    assert f"| label {CARD_LABELS - 1} |" in card and f"| label {CARD_LABELS} |" not in card
    assert f"10 more labels are not listed here; all {CARD_LABELS + 10} are in `udtc_config.json`" in card
    assert "more labels" not in ModelCard(backend="cosine", labels=names[:3]).render()


def test_lora_saves_an_adapter_that_loads_with_its_labels(tiny, tmp_path):
    out = tmp_path / "lora"
    base = Classifier.from_pretrained(tiny, device="cpu")
    clf, metrics = udtc.finetune(tiny, ROWS, eval=ROWS, output_dir=out, lora_dropout=0.0, **FAST)
    files = sorted(p.name for p in out.iterdir())
    # a local base is copied into the folder (base/), which never names a path outside itself (README, Safety)
    assert files == ["README.md", "adapter_config.json", "adapter_model.safetensors", "base", "metrics.json",
                     "udtc_config.json"]
    config = json.loads((out / "udtc_config.json").read_text())
    assert config["base_model"] == "base" and config["labels"] == ["sports", "weather", "food"]
    assert str(tmp_path) not in (out / "README.md").read_text() + (out / "udtc_config.json").read_text()
    assert json.loads((out / "metrics.json").read_text())["history"] == metrics["history"]
    assert set(metrics["eval"]) == {"accuracy", "macro_f1", "micro_f1", "examples"} and metrics["epochs_run"] == 2
    card = (out / "README.md").read_text()
    for needle in ("| sports | the team won the match |", "lora_r", "eval macro_f1", "hu2022lora", "examples per label"):
        assert needle in card
    again = Classifier.from_pretrained(out, device="cpu")
    assert again.labels == clf.labels == ["sports", "weather", "food"]
    np.testing.assert_allclose(_scores(again), _scores(clf), atol=1e-5)  # classify(text) with the trained labels
    assert not np.allclose(_scores(base, labels=clf.labels), _scores(clf), atol=1e-4)


@pytest.mark.parametrize("method,merge", [("full", False), ("lora", True)])
def test_full_weights_and_merged_lora_save_a_self_contained_folder(tiny, tmp_path, method, merge):
    out = tmp_path / method
    clf, _ = udtc.finetune(tiny, ROWS, method=method, merge=merge, output_dir=out, **FAST)
    assert (out / "model.safetensors").exists() and not (out / "adapter_config.json").exists()
    assert not (out / "checkpoints").exists()
    again = Classifier.from_pretrained(out, device="cpu")
    np.testing.assert_allclose(_scores(again), _scores(clf), atol=1e-5)


def test_training_learns_the_training_set(tiny, tmp_path):
    _, metrics = udtc.finetune(tiny, ROWS, eval=ROWS, method="full", epochs=4, batch_size=6, learning_rate=2e-3,
                               output_dir=tmp_path / "o", progress=False)
    first, best = metrics["history"][0]["eval"]["accuracy"], metrics["eval"]["accuracy"]
    assert best == 1.0 and metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    assert best >= first


def test_a_loaded_classifier_is_trained_in_place_without_stale_label_cache(tiny, tmp_path):
    clf = Classifier.from_pretrained(tiny, device="cpu")
    labels = ["sports", "weather", "food"]
    before = _scores(clf, labels=labels)  # fills the label-embedding cache
    trained, _ = udtc.finetune(clf, ROWS, method="full", output_dir=tmp_path / "o", **FAST)
    assert trained.backend is clf.backend
    after = _scores(clf, labels=labels)
    assert not np.allclose(before, after, atol=1e-4)
    np.testing.assert_allclose(after, _scores(Classifier.from_pretrained(tmp_path / "o", device="cpu"), labels=labels),
                               atol=1e-5)
    with pytest.raises(ValueError, match="fine-tuned already"):  # an adapter over the wrong base weights
        udtc.finetune(trained, ROWS, method="lora", output_dir=tmp_path / "p", **FAST)
    loaded = Classifier.from_pretrained(tmp_path / "o", device="cpu")  # the saved folder holds these weights
    assert loaded.source == str(tmp_path / "o")
    again, _ = udtc.finetune(loaded, ROWS, method="lora", output_dir=tmp_path / "p", **FAST)
    np.testing.assert_allclose(_scores(again, labels=labels),
                               _scores(Classifier.from_pretrained(tmp_path / "p", device="cpu"), labels=labels), atol=1e-5)


def test_multi_label_training(tiny, tmp_path):
    rows = [{"text": r["text"], "label": r["label"] + ("|food" if "recipe" in r["text"] else "")} for r in ROWS]
    _, metrics = udtc.finetune(tiny, rows, eval=rows, label_separator="|", method="full", output_dir=tmp_path / "o",
                                 **FAST)
    assert set(metrics["eval"]) == {"accuracy", "macro_f1", "micro_f1", "examples"}
    again = Classifier.from_pretrained(tmp_path / "o", device="cpu")
    pred = again.classify("a recipe for the team", multi_label=True)
    assert list(pred.scores) == ["sports", "weather", "food"]


def test_gradient_accumulation_equals_the_larger_batch(tiny, tmp_path):
    from safetensors.torch import load_file

    common = {"epochs": 2, "learning_rate": 5e-3, "lora_dropout": 0.0, "progress": False}
    udtc.finetune(tiny, ROWS[:16], batch_size=8, output_dir=tmp_path / "a", **common)
    _, metrics = udtc.finetune(tiny, ROWS[:16], batch_size=4, gradient_accumulation_steps=2, output_dir=tmp_path / "b",
                               **common)
    a, b = (load_file(tmp_path / x / "adapter_model.safetensors") for x in "ab")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
    assert metrics["history"][-1]["learning_rate"] == 0.0  # linear decay ends at 0 after 2 x 2 optimizer steps


def test_early_stopping_keeps_the_best_epoch(tiny, tmp_path):
    _, metrics = udtc.finetune(tiny, ROWS, eval=ROWS, method="full", epochs=8, batch_size=6, learning_rate=2e-3,
                               patience=1, output_dir=tmp_path / "o", progress=False)
    assert metrics["stopped_early"] and metrics["epochs_run"] < 8
    best = max(r["eval"]["macro_f1"] for r in metrics["history"])
    assert metrics["eval"]["macro_f1"] == best


# ---------------------------------------------------------------------------------------------- output folder
def test_output_dir_rule(tiny, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty.*notes.txt"):
        udtc.finetune(tiny, ROWS, output_dir=busy, **FAST)
    assert (busy / "notes.txt").read_text() == "mine"
    done = tmp_path / "done"
    udtc.finetune(tiny, ROWS, method="full", output_dir=done, **FAST)
    with pytest.raises(FileExistsError, match="finished udtc model"):
        udtc.finetune(tiny, ROWS, method="full", output_dir=done, **FAST)
    udtc.finetune(tiny, ROWS, method="full", output_dir=busy, overwrite=True, **FAST)
    assert not (busy / "notes.txt").exists() and (busy / "udtc_config.json").exists()


def test_an_unfinished_run_resumes_only_with_the_same_settings(tmp_path):
    settings = {"method": "lora", "epochs": 3, "lora_target_modules": ("query",)}
    assert ckpt.inspect_output_dir(tmp_path / "new", settings, overwrite=False) is False
    ckpt.claim_output_dir(tmp_path / "run", settings, resume=False, overwrite=False)
    assert ckpt.inspect_output_dir(tmp_path / "run", settings, overwrite=False) is True
    with pytest.raises(FileExistsError, match=r"other settings \(epochs: 3 -> 4\)"):
        ckpt.inspect_output_dir(tmp_path / "run", {**settings, "epochs": 4}, overwrite=False)
    assert ckpt.inspect_output_dir(tmp_path / "run", {**settings, "epochs": 4}, overwrite=True) is False


_CHILD = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import torch
    import udtc
    from udtc import Classifier

    tiny, out, marker, kill_at = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    rows, options = json.loads(sys.argv[5]), json.loads(sys.argv[6])
    clf = Classifier.from_pretrained(tiny, device="cpu")
    real, calls = clf.backend.training_logits, [0]

    def logits(*args, **kwargs):  # count training steps; at kill_at, say so and wait for SIGKILL
        if torch.is_grad_enabled():
            calls[0] += 1
            if calls[0] == kill_at:
                marker.write_text("ready")
                time.sleep(120)
        return real(*args, **kwargs)

    clf.backend.training_logits = logits
    _, metrics = udtc.finetune(clf, rows, eval=rows, epochs=4, batch_size=4, learning_rate=5e-3, lora_dropout=0.2,
                               output_dir=out, progress=False, **options)
    print(json.dumps(metrics))
""")


# lora (cosine's default), instruction tuning (llm-prompt's only method), sparse (its selection pass makes 5 more
# training_logits calls with autograd on before step 1), PPO (3 policy steps per batch of 4: 15 per epoch)
PPO = {"objective": "ppo", "method": "full", "label_separator": "|"}
PPO_ROWS = [{"text": r["text"], "label": r["label"] + ("|food" if "recipe" in r["text"] else "")} for r in ROWS]


@pytest.mark.parametrize(("name", "options", "kill_at", "weights"), [
    ("cosine", {}, 13, "adapter_model.safetensors"), ("llm-prompt", {}, 13, "adapter_model.safetensors"),
    ("cosine", {"method": "sparse"}, 18, "sparse_delta.safetensors"), ("gliclass", PPO, 37, "model.safetensors")])
def test_a_killed_run_resumes_where_it_stopped(tiny_models, tmp_path, name, options, kill_at, weights):
    """SIGKILL in the middle of epoch 3, rerun: same result as a run that was never interrupted."""
    from safetensors.torch import load_file

    tiny = tiny_models(name)
    out, marker = tmp_path / "killed", tmp_path / "marker"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", _CHILD, str(tiny), str(out), str(marker)]
    rows = PPO_ROWS if options.get("objective") == "ppo" else ROWS
    child = subprocess.Popen([*cmd, str(kill_at), json.dumps(rows), json.dumps(options)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:  # 18 rows / batch 4 = 5 steps per epoch: step 13 is inside epoch 3
        deadline = time.monotonic() + 240
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), child.stderr.read().decode()[-2000:] if child.poll() is not None else "timeout"
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["epoch"] == 2
    files = {p.name for p in (out / "checkpoints" / "epoch-0002").iterdir()}
    assert files == {"trainable.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"}
    assert not (out / "udtc_config.json").exists()

    resumed = subprocess.run([*cmd, "-1", json.dumps(rows), json.dumps(options)], check=False, env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    metrics = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert metrics["resumed_from_epoch"] == 2 and metrics["epochs_run"] == 4

    clf = Classifier.from_pretrained(tiny, device="cpu")
    _, reference = udtc.finetune(clf, rows, eval=rows, epochs=4, batch_size=4, learning_rate=5e-3, lora_dropout=0.2,
                                 output_dir=tmp_path / "straight", progress=False, **options)
    for got, want in zip(metrics["history"], reference["history"]):
        assert got["train_loss"] == pytest.approx(want["train_loss"], abs=1e-6)
        assert got["eval"] == pytest.approx(want["eval"], abs=1e-6)
    a, b = load_file(out / weights), load_file(tmp_path / "straight" / weights)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_finetune(tiny, tmp_path, capsys):
    path = tmp_path / "train.csv"
    path.write_text("text,label\n" + "\n".join(f"{r['text']},{r['label']}" for r in ROWS) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    code = main(["finetune", "--model", str(tiny), "--train", str(path), "--output", str(out), "--method", "full",
                 "--epochs", "1", "--batch-size", "6", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert "saved to" in capsys.readouterr().err
    assert Classifier.from_pretrained(out, device="cpu").classify("rain in the city").label in TRAIN
    assert main(["finetune", "--model", str(tiny), "--train", str(path), "--output", str(tmp_path / "x"),
                 "--label-column", "category"]) == 2
    assert "columns found: text, label" in capsys.readouterr().err


def test_cli_finetune_passes_every_training_option(monkeypatch, tmp_path):
    import udtc.training

    seen = {}

    def fake(model, train, **kwargs):
        seen.update(kwargs, model=model)
        return None, {"eval": None, "train_examples": 1, "labels": ["a"], "epochs_run": 1, "output_dir": "x"}

    monkeypatch.setattr(udtc.training, "finetune", fake)
    synonyms = tmp_path / "syn.json"
    synonyms.write_text('{"sports": ["athletics"]}', encoding="utf-8")
    main(["finetune", "--train", "t.csv", "--output", str(tmp_path / "o"), "--lora-dropout", "0.05", "--optim",
          "adamw_8bit", "--gradient-checkpointing", "--loss", "focal", "--focal-alpha", "0.5", "--focal-gamma", "1",
          "--negatives", "3", "--label-synonyms", str(synonyms), "--synonym-rate", "0.25", "--sparse-fraction", "0.02",
          "--sparse-tokens", "8", "--objective", "ppo", "--ppo-clip", "0.1", "--ppo-iterations", "2", "--no-progress"])
    assert seen["model"] is None and seen["method"] is None  # the default model and its preferred method
    assert (seen["lora_r"], seen["lora_alpha"], seen["lora_dropout"]) == (None, None, 0.05)  # None: the backend's
    assert (seen["optim"], seen["gradient_checkpointing"], seen["loss"]) == ("adamw_8bit", True, "focal")
    assert (seen["focal_alpha"], seen["focal_gamma"], seen["negatives"]) == (0.5, 1.0, 3)
    assert (seen["label_synonyms"], seen["synonym_rate"]) == ({"sports": ["athletics"]}, 0.25)
    assert (seen["sparse_fraction"], seen["sparse_tokens"]) == (0.02, 8)
    assert (seen["objective"], seen["ppo_clip"], seen["ppo_iterations"]) == ("ppo", 0.1, 2)
    assert main(["finetune", "--train", "t.csv", "--output", str(tmp_path / "p"), "--label-synonyms",
                 str(tmp_path / "missing.json")]) == 2  # a clear one-line error, not a traceback


def test_example_data_is_a_small_labelled_csv():
    data = load_examples(ROOT / "examples" / "data" / "few_shot.csv")
    assert 3 <= len(data.labels) <= 4 and all(8 <= n <= 10 for n in data.counts().values()) and data.skipped == 0


# ---------------------------------------------------------------------------------------------- Hub
class _Hub(BaseHTTPRequestHandler):
    """Just the Hub endpoints create_repo + upload_folder use (regular, non-LFS uploads)."""

    calls: ClassVar[list[tuple[str, dict]]] = []
    files: ClassVar[dict[str, bytes]] = {}
    fail_commit = False

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        endpoint = f"http://{self.server.server_address[0]}:{self.server.server_address[1]}"
        if self.path == "/api/repos/create":
            body = json.loads(raw)
            type(self).calls.append(("create", body))
            return self._reply(200, {"url": f"{endpoint}/{body['organization']}/{body['name']}"})
        if self.path == "/api/validate-yaml":
            return self._reply(200, {"errors": [], "warnings": []})
        if "/preupload/" in self.path:
            files = json.loads(raw)["files"]
            return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                               for f in files]})
        if "/commit/" in self.path:
            type(self).calls.append(("commit", {"path": self.path}))
            if type(self).fail_commit:
                return self._reply(500, {"error": "the test server refuses this commit"})
            for line in raw.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    type(self).files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            return self._reply(200, {"commitUrl": f"{endpoint}/u/m/commit/{'a' * 40}", "commitOid": "a" * 40,
                                     "pullRequestUrl": None})
        return self._reply(404, {"error": f"unexpected {self.path}"})


@pytest.fixture
def hub(monkeypatch):
    from huggingface_hub import constants, hf_api

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    _Hub.calls, _Hub.files, _Hub.fail_commit = [], {}, False
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_api, "is_xet_available", lambda: False)  # the plain commit API, not the xet pipeline
    yield _Hub
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_push_to_hub_creates_a_private_repo_and_uploads_the_folder(tiny, tmp_path, hub):
    out = tmp_path / "o"
    _, metrics = udtc.finetune(tiny, ROWS, method="full", output_dir=out, push_to_hub="me/tiny", hub_token="hf_test",
                               **FAST)
    assert metrics["hub"]["url"].endswith("/me/tiny") and metrics["hub"]["private"] is True
    assert hub.calls[0] == ("create", {"name": "tiny", "organization": "me", "visibility": "private"})
    assert {"udtc_config.json", "README.md", "metrics.json", "model.safetensors"} <= set(hub.files)
    assert hub.files["udtc_config.json"] == (out / "udtc_config.json").read_bytes()


def test_a_failed_upload_keeps_the_local_folder(tiny, tmp_path, hub):
    hub.fail_commit = True
    out = tmp_path / "o"
    with expect_log(f"kept in {out}"):
        _, metrics = udtc.finetune(tiny, ROWS, method="full", output_dir=out, push_to_hub="me/tiny",
                                   hub_token="hf_test", **FAST)
    assert "500" in metrics["hub"]["error"] or "Server" in metrics["hub"]["error"]
    assert Classifier.from_pretrained(out, device="cpu").labels == ["sports", "weather", "food"]


def test_push_to_hub_without_a_token_fails_before_training(tiny, tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(ValueError, match="needs a Hugging Face token"):
        udtc.finetune(tiny, ROWS, method="full", output_dir=tmp_path / "o", push_to_hub="me/tiny", **FAST)
    with pytest.raises(ValueError, match="local path"):  # an adapter over a local base is useless on the Hub
        udtc.finetune(tiny, ROWS, method="lora", output_dir=tmp_path / "o", push_to_hub="me/tiny", hub_token="x", **FAST)
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------- distributed
_DDP_CHILD = textwrap.dedent("""
    import json, sys
    import udtc
    tiny, out, rows = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    batch = int(sys.argv[4])
    _, metrics = udtc.finetune(tiny, rows, epochs=2, batch_size=batch, learning_rate=5e-3, lora_dropout=0.0,
                               warmup_ratio=0.0, output_dir=out, progress=False, device="cpu")
    print(json.dumps(metrics["history"]))
""")


@pytest.mark.integration
def test_two_process_ddp_equals_one_process_with_the_combined_batch(tiny, tmp_path):
    """torchrun, 2 CPU processes (gloo), batch 4 each == 1 process, batch 8: same LoRA weights."""
    from safetensors.torch import load_file

    rows = ROWS[:16]  # 16 rows = 2 optimizer steps of 8 per epoch, no padding
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    script = tmp_path / "child.py"
    script.write_text(_DDP_CHILD)
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          str(script), str(tiny), str(tmp_path / "ddp"), json.dumps(rows), "4"],
                         check=False, env=env, capture_output=True, text=True, timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run([sys.executable, str(script), str(tiny), str(tmp_path / "one"), json.dumps(rows), "8"],
                            check=False, env=env, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    a = load_file(tmp_path / "ddp" / "adapter_model.safetensors")
    b = load_file(tmp_path / "one" / "adapter_model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
    assert not (tmp_path / "ddp" / "checkpoints").exists()
