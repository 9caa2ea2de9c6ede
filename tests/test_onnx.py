"""ONNX export (udtc/onnx_export.py) and ONNX Runtime inference (udtc/onnx_runtime.py), on the tiny random
checkpoints of tests/factories.py; integration tests on the models shipped inside udtc."""

from __future__ import annotations

import json
import os
import sys

import pytest
from factories import ROWS

pytest.importorskip("onnxruntime", reason='ONNX export needs onnxruntime: pip install "udtc[onnx]"')
pytest.importorskip("onnx", reason='ONNX export needs onnx: pip install "udtc[onnx]"')

import udtc  # noqa: E402
from udtc import Classifier  # noqa: E402
from udtc.cli import main  # noqa: E402
from udtc.config import CONFIG_NAME  # noqa: E402
from udtc.safety import UnsafeFolderError  # noqa: E402

EXPORTABLE = ["cosine", "sce", "nli", "gliclass"]
TEXTS = ["the team won the match with a late goal", "rain and wind in the city", "a new phone from the market",
         "food", "the " * 700 + "end"]  # different lengths: padded batches; the last is truncated
LABELS = ["sports", "weather", "technology news", "food", "a long label about the city market"]


@pytest.fixture(scope="module")
def pair(tiny_models, tmp_path_factory):
    """(torch classifier, its ONNX export loaded back, the export folder) per backend, built once."""
    cache = {}

    def get(name: str, quantize: str | None = None):
        if (name, quantize) not in cache:
            clf = Classifier.from_pretrained(tiny_models(name), device="cpu")
            out = udtc.export(clf, tmp_path_factory.mktemp("onnx") / f"{name}-{quantize}", quantize=quantize)
            cache[name, quantize] = clf, Classifier.from_pretrained(out), out
        return cache[name, quantize]

    return get


@pytest.mark.parametrize("name", EXPORTABLE)
@pytest.mark.parametrize("multi_label", [False, True])
def test_fp32_export_scores_equal_torch(pair, name, multi_label):
    clf, onnx_clf, _ = pair(name)
    assert onnx_clf.backend_name == name
    for batch_size in (32, 2):
        a = clf.classify(TEXTS, LABELS, multi_label=multi_label, batch_size=batch_size)
        b = onnx_clf.classify(TEXTS, LABELS, multi_label=multi_label, batch_size=batch_size)
        for x, y in zip(a, b):
            assert x.truncated == y.truncated
            assert list(x.scores) == list(y.scores)
            for label in LABELS:
                assert y.scores[label] == pytest.approx(x.scores[label], abs=1e-4), (name, x.scores, y.scores)
    assert a[-1].truncated


@pytest.mark.parametrize("name", EXPORTABLE)
def test_permuting_labels_permutes_onnx_scores(pair, name):
    _, onnx_clf, _ = pair(name)
    permuted = [LABELS[i] for i in (3, 0, 4, 2, 1)]
    for x, y in zip(onnx_clf.classify(TEXTS, LABELS), onnx_clf.classify(TEXTS, permuted)):
        assert list(y.scores) == permuted
        for label in LABELS:
            assert y.scores[label] == pytest.approx(x.scores[label], abs=1e-5)


@pytest.mark.parametrize("quantize", ["int8", "fp16"])
def test_quantized_exports_run_close_to_torch(pair, quantize):
    clf, onnx_clf, folder = pair("cosine", quantize)
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert config["runtime"]["quantize"] == quantize
    for x, y in zip(clf.classify(TEXTS, LABELS), onnx_clf.classify(TEXTS, LABELS)):
        for label in LABELS:
            assert y.scores[label] == pytest.approx(x.scores[label], abs=0.05)


def test_export_folder_round_trip_and_refusals(pair, tmp_path):
    clf, onnx_clf, folder = pair("cosine")
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert config["runtime"] == {"name": "onnxruntime", "quantize": None,
                                 "modules": [{"module": "model", "file": "model.onnx", "output": "last_hidden_state"}]}
    suffixes = {p.suffix for p in folder.rglob("*") if p.is_file()}
    assert suffixes <= {".onnx", ".safetensors", ".json", ".txt", ".md"}, suffixes
    again = Classifier.from_pretrained(folder)
    assert again.classify(TEXTS, LABELS)[0].scores == onnx_clf.classify(TEXTS, LABELS)[0].scores
    with pytest.raises(ValueError, match="ONNX export"):
        onnx_clf.save_pretrained(tmp_path / "copy")
    with pytest.raises(ValueError, match="ONNX export"):
        udtc.export(onnx_clf, tmp_path / "again")
    from huggingface_hub import HfApi

    created = []
    with pytest.MonkeyPatch.context() as mp:  # a refused upload creates no (empty) Hub repo
        mp.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: created.append(repo_id))
        with pytest.raises(ValueError, match="push_to_hub needs the torch model.*ONNX export"):
            onnx_clf.push_to_hub("me/x", token="hf_test")
    assert created == []
    with pytest.raises(ValueError, match="ONNX export"):
        udtc.finetune(onnx_clf, ROWS, method="full", output_dir=tmp_path / "ft")
    with pytest.raises(ValueError, match="cannot be fine-tuned"):
        udtc.finetune(str(folder), ROWS, method="full", output_dir=tmp_path / "ft")
    with pytest.raises(FileExistsError):
        udtc.export(clf, folder)
    with pytest.raises(ValueError, match="quantize"):
        udtc.export(clf, tmp_path / "q", quantize="int4")


def test_export_folder_never_reads_outside_itself(pair, tmp_path):
    import shutil

    import onnx
    from onnx.external_data_helper import set_external_data

    folder = shutil.copytree(pair("cosine")[2], tmp_path / "export")
    (tmp_path / "outside.bin").write_bytes(b"\0" * 64)
    graph = onnx.load(str(folder / "model.onnx"))
    tensor = graph.graph.initializer[0]
    set_external_data(tensor, location="../outside.bin")
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    (folder / "model.onnx").write_bytes(graph.SerializeToString())
    with pytest.raises(ValueError, match="external data"):
        Classifier.from_pretrained(folder)

    config = json.loads((folder / CONFIG_NAME).read_text())
    config["runtime"]["modules"][0]["file"] = "../outside.onnx"
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(UnsafeFolderError):
        Classifier.from_pretrained(folder)
    config["runtime"]["modules"][0].update(file="model.onnx", module="tokenizer")
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="not one the 'cosine' backend runs"):
        Classifier.from_pretrained(folder)


def test_a_sparse_initializer_with_external_data_is_refused(pair, tmp_path, monkeypatch):
    # onnx's own tensor walk skips sparse initializers, and ONNX Runtime would read the file from the working directory
    import shutil

    import onnx
    from onnx import TensorProto, helper

    folder = shutil.copytree(pair("cosine")[2], tmp_path / "export")
    (tmp_path / ".env").write_bytes(b"SECRET")
    values = TensorProto(name="v", data_type=TensorProto.UINT8, dims=[6], data_location=TensorProto.EXTERNAL)
    for key, value in {"location": ".env", "offset": "0", "length": "6"}.items():
        entry = values.external_data.add()
        entry.key, entry.value = key, value
    graph = onnx.load(str(folder / "model.onnx"))
    graph.graph.sparse_initializer.append(
        helper.make_sparse_tensor(values, helper.make_tensor("i", TensorProto.INT64, [6], list(range(6))), [6]))
    (folder / "model.onnx").write_bytes(graph.SerializeToString())
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="external data"):
        Classifier.from_pretrained(folder)


def test_missing_onnxruntime_names_the_extra(pair, tiny_models, tmp_path, monkeypatch):
    folder = pair("cosine")[2]
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r'pip install "udtc\[onnx\]"'):
        Classifier.from_pretrained(folder)
    with pytest.raises(ImportError, match=r'pip install "udtc\[onnx\]"'):
        udtc.export(tiny_models("cosine"), tmp_path / "out")


def test_backends_without_export_are_refused(tiny_models, tmp_path):
    with pytest.raises(ValueError, match="cannot be exported to ONNX; these can: gliclass, nli, sce, cosine"):
        udtc.export(tiny_models("llm-head"), tmp_path / "out")


def test_cli_export(tiny_models, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export", str(tiny_models("nli")), str(out), "--quantize", "int8"]) == 0
    assert Classifier.from_pretrained(out).classify("the match", ["sports", "rain"]).label in ("sports", "rain")
    assert main(["export", str(tiny_models("nli")), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(tiny_models("nli")), str(out), "--overwrite"]) == 0


@pytest.mark.integration
def test_int8_export_of_the_default_model_agrees_with_torch(tmp_path, one_thread):
    clf = Classifier.from_pretrained(None, device="cpu")
    int8 = Classifier.from_pretrained(udtc.export(clf, tmp_path / "int8", quantize="int8"))
    assert sum(f.stat().st_size for f in (tmp_path / "int8").glob("*.onnx")) < 30e6  # int8 weights: ~23 MB of 90
    texts = ["The striker scored twice and the club won the league title.",
             "Heavy rain and strong winds are expected across the region tomorrow.",
             "The central bank raised interest rates to curb inflation.",
             "Bake the bread in a hot oven for forty minutes.",
             "The new smartphone has a faster chip and a better camera.",
             "Parliament passed the bill after a long debate among lawmakers."]
    labels = ["sports", "weather", "economy", "cooking", "technology", "politics"]
    expected = clf.classify(texts, labels)
    assert [p.label for p in expected] == labels  # the texts are clear-cut
    assert [p.label for p in int8.classify(texts, labels)] == labels


def test_gliclass_with_average_class_token_pooling_exports(tmp_path):
    # the shipped GLICLASS_MINILM pools each label's tokens ("average"); its scatter of a bool once broke the tracer
    from factories import tiny_encoder

    from udtc.backends.gliclass import GLiClassBackend

    GLiClassBackend.from_encoder(tiny_encoder(tmp_path / "encoder"), seed=0, pooling_strategy="avg",
                                 class_token_pooling="average", initializer_range=0.2).save(tmp_path / "model")
    clf = Classifier.from_pretrained(tmp_path / "model", device="cpu")
    assert clf.backend.model.config.class_token_pooling == "average"
    onnx_clf = Classifier.from_pretrained(udtc.export(clf, tmp_path / "onnx"))
    for multi_label in (False, True):
        for x, y in zip(clf.classify(TEXTS, LABELS, multi_label=multi_label), onnx_clf.classify(TEXTS, LABELS, multi_label=multi_label)):
            for label in LABELS:
                assert y.scores[label] == pytest.approx(x.scores[label], abs=1e-4)


@pytest.mark.integration
@pytest.mark.parametrize("name", ["TUNED_MINILM", "SCE_MINILM", "NLI_MINILM", "GLICLASS_MINILM"])
def test_every_shipped_model_exports_and_scores_as_torch(name, tmp_path, one_thread):
    from udtc import defaults

    clf = Classifier.from_pretrained(getattr(defaults, name), device="cpu")
    onnx_clf = Classifier.from_pretrained(udtc.export(clf, tmp_path / "onnx"))
    assert onnx_clf.backend_name == clf.backend_name
    texts, labels = TEXTS[:3], ["sports", "weather", "technology", "food"]
    for x, y in zip(clf.classify(texts, labels), onnx_clf.classify(texts, labels)):
        assert y.label == x.label
        for label in labels:
            assert y.scores[label] == pytest.approx(x.scores[label], abs=1e-4)


def test_int8_export_prints_no_quantizer_advice_and_leaves_the_root_logger_alone(tiny_models, tmp_path):
    # onnxruntime's quantizer warns through the root logger ("Please consider to run pre-processing ..."); with no
    # handler there, logging.warning() would also configure the root logger for the rest of the user's process
    import logging
    import subprocess

    script = ("import logging, sys, udtc; from udtc import Classifier; "
              "udtc.export(Classifier.from_pretrained(sys.argv[1], device='cpu'), sys.argv[2], quantize='int8'); "
              "print(len(logging.getLogger().handlers), len(logging.getLogger().filters))")
    run = subprocess.run([sys.executable, "-c", script, str(tiny_models("cosine")), str(tmp_path / "int8")],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert run.returncode == 0, run.stderr
    assert "pre-processing" not in run.stderr and run.stdout.split() == ["0", "0"]
    import onnxruntime.quantization

    from udtc.onnx_export import _quiet_quantizer

    inside = os.path.join(os.path.dirname(onnxruntime.quantization.__file__), "quantize.py")
    record = lambda level, path: logging.LogRecord("root", level, path, 1, "advice", None, None)  # noqa: E731
    root = logging.getLogger()
    before = (list(root.handlers), list(root.filters))
    with _quiet_quantizer():  # the quantizer's advice is dropped; its errors and everyone else's records are kept
        assert not root.filter(record(logging.WARNING, inside))
        assert root.filter(record(logging.ERROR, inside)) and root.filter(record(logging.WARNING, __file__))
    assert (list(root.handlers), list(root.filters)) == before


def test_export_starts_from_float32_on_the_cpu(tiny_models, tmp_path):
    half = Classifier.from_pretrained(tiny_models("cosine"), device="cpu", dtype="bfloat16")
    with pytest.raises(ValueError, match="float32 weights on the CPU"):
        udtc.export(half, tmp_path / "out")


def test_gliclass_prompt_runs_through_the_export(pair):
    clf, onnx_clf, _ = pair("gliclass")
    a = clf.classify(TEXTS[:3], LABELS, prompt="Classify the topic:")
    b = onnx_clf.classify(TEXTS[:3], LABELS, prompt="Classify the topic:")
    for x, y in zip(a, b):
        for label in LABELS:
            assert y.scores[label] == pytest.approx(x.scores[label], abs=1e-4)


def test_a_hub_export_downloads_its_own_graphs_and_no_other_onnx_file(pair, tmp_path, monkeypatch):
    """The first pass skips every .onnx file (repos ship many); an udtc export's listed graphs come in a second."""
    import fnmatch
    import shutil

    import huggingface_hub

    torch_clf, _, folder = pair("cosine")
    repo = shutil.copytree(folder, tmp_path / "repo")
    (repo / "onnx").mkdir()
    (repo / "onnx" / "model_O4.onnx").write_bytes(b"not ours")
    (repo / "other.onnx").write_bytes(b"not ours")
    calls = []

    def fake_snapshot_download(repo_id, *, revision=None, token=None, ignore_patterns=None, allow_patterns=None):
        """A local stand-in for the Hub with huggingface_hub's pattern rules (fnmatch on repo-relative paths)."""
        calls.append((ignore_patterns, allow_patterns))
        local = tmp_path / "snapshot"
        for file in repo.rglob("*"):
            name = file.relative_to(repo).as_posix()
            if file.is_dir() or any(fnmatch.fnmatch(name, p) for p in ignore_patterns or []) or (
                    allow_patterns is not None and not any(fnmatch.fnmatch(name, p) for p in allow_patterns)):
                continue
            (local / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, local / name)
        return str(local)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    clf = Classifier.from_pretrained("someone/tiny-onnx")
    assert calls[1][1] == ["model.onnx"]
    got = sorted(p.relative_to(tmp_path / "snapshot").as_posix() for p in (tmp_path / "snapshot").rglob("*.onnx"))
    assert got == ["model.onnx"]
    a = clf.classify_proba(TEXTS[:2], LABELS[:3])
    b = torch_clf.classify_proba(TEXTS[:2], LABELS[:3])
    assert abs(a - b).max() < 1e-4



def test_a_calibrated_classifier_exports_with_its_calibration(tiny_models, tmp_path):
    # export traces with labels of its own, which a calibration fitted on other labels would refuse
    clf = Classifier.from_pretrained(tiny_models("cosine"), device="cpu")
    labels = sorted({r["label"] for r in ROWS})
    calibrated = clf.calibrate(ROWS)
    udtc.export(calibrated, tmp_path / "ex")
    onnx_clf = Classifier.from_pretrained(tmp_path / "ex")
    assert (tmp_path / "ex" / "calibration.json").exists() and onnx_clf.calibration is not None
    texts = [r["text"] for r in ROWS[:4]]
    for a, b in zip(calibrated.classify(texts, labels), onnx_clf.classify(texts, labels)):
        assert a.scores == pytest.approx(b.scores, abs=1e-4)


def test_an_export_never_replaces_the_model_it_exports(tiny_models, tmp_path):
    import shutil

    folder = shutil.copytree(tiny_models("cosine"), tmp_path / "model")
    before = sorted(p.name for p in folder.iterdir())
    for out in (folder, folder / "onnx"):
        with pytest.raises(ValueError, match="holds the model being exported"):
            udtc.export(str(folder), out, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == before
    assert main(["export", str(folder), str(folder), "--overwrite"]) == 2
    with pytest.raises(ValueError, match="export folder is empty"):
        udtc.export(str(folder), "")


def test_an_export_loaded_for_a_gpu_says_it_runs_on_the_cpu(pair, udtc_logs):
    folder = pair("cosine")[2]
    clf = Classifier.from_pretrained(folder, device="cuda:3", dtype="float16")
    assert "runs float32 on the CPU" in udtc_logs.text
    assert clf.classify("rain", ["a", "b"]).scores == Classifier.from_pretrained(folder).classify("rain", ["a", "b"]).scores
