"""What a new user hit (issue 15): inputs from pandas/numpy, pipeline habits, messages, folders."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from logcheck import expect_log

from udtc import Classifier
from udtc.backends.base import BATCH_TOLERANCE
from udtc.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clf(tiny_models):
    return Classifier.from_pretrained(tiny_models("cosine"), device="cpu")


# ---------------------------------------------------------------- 1. pandas, numpy, generators
def test_a_dataframe_is_refused_with_the_column_to_pass(clf):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"text": ["the match", "the rain"], "label": ["sports", "weather"]})
    with pytest.raises(TypeError, match=r"DataFrame .*df\['text'\]"):
        clf.classify(df, ["sports", "weather"])


def test_series_numpy_arrays_and_generators_are_texts_and_labels(clf):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"text": ["the match", "the rain", "a soup"], "label": ["sports", "weather", "food"]})
    expected = [p.scores for p in clf.classify(list(df["text"]), ["sports", "weather", "food"])]
    for texts in (df["text"], np.array(df["text"].tolist()), (t for t in df["text"])):
        for labels in (df["label"].unique(), np.array(["sports", "weather", "food"]), pd.Series(["sports", "weather", "food"]),
                       (x for x in ["sports", "weather", "food"])):
            got = clf.classify(texts if not hasattr(texts, "__next__") else iter(list(df["text"])), labels)
            assert [p.scores for p in got] == expected
            assert all(type(name) is str for p in got for name in p.scores)


# ---------------------------------------------------------------- 2. spaces around commas (CLI)
def test_cli_strips_labels_around_commas(tiny_models, capsys):
    assert main(["classify", "the match", "--labels", "sports, politics , cooking", "--model",
                 str(tiny_models("cosine")), "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)["scores"]) == ["sports", "politics", "cooking"]


def test_api_keeps_label_names_as_given_and_reads_them_stripped(clf):
    padded, plain = clf.classify("the match", [" sports", "food "]), clf.classify("the match", ["sports", "food"])
    assert list(padded.scores) == [" sports", "food "]  # the caller's own strings look the scores up
    assert list(padded.scores.values()) == list(plain.scores.values())


# ---------------------------------------------------------------- 3. case duplicates
def test_labels_differing_only_in_case_warn(clf):
    with expect_log(r"'Sport' and 'sport' differ only in case"):
        clf.classify("the match", ["Sport", "sport", "food"])


def test_labels_the_model_reads_as_the_same_text_warn(clf):
    with expect_log(r"'play_music' and 'play music' are read by the model as the same text 'play music'"):
        clf.classify("some jazz", ["play_music", "play music", "set_alarm"])
    with expect_log(r"'a' and 'b' are read by the model as the same text 'music'"):
        clf.classify("some jazz", {"a": "music", "b": "music ", "c": "alarm"})


def test_flags_and_numbers_are_checked_by_type(clf):
    import numpy as np

    with pytest.raises(TypeError, match="multi_label must be True or False, got 'false'"):
        clf.classify("the match", ["sports", "food"], multi_label="false")
    with pytest.raises(TypeError, match="multi_label must be True or False, got None"):
        clf.classify("the match", ["sports", "food"], multi_label=None)
    # numpy scalars are numbers: accepted where Python's are
    ref = clf.classify("the match", ["sports", "food"], multi_label=True, threshold=0.3, top_k=1, batch_size=4)
    got = clf.classify("the match", ["sports", "food"], multi_label=np.bool_(True), threshold=np.float32(0.3),
                       top_k=np.int64(1), batch_size=np.int64(4))
    assert got.scores == ref.scores and got.labels == ref.labels


# ---------------------------------------------------------------- 4. transformers' pipeline keywords
def test_pipeline_keywords_and_a_comma_string_of_labels(clf):
    ref = clf.classify("the match", ["sports", "food"], template="It is about {}.")
    alias = clf.classify("the match", candidate_labels=["sports", "food"], hypothesis_template="It is about {}.")
    comma = clf.classify("the match", "sports, food", template="It is about {}.")
    assert alias == ref and comma == ref
    with pytest.raises(TypeError, match="both labels= and its alias candidate_labels="):
        clf.classify("the match", ["a", "b"], candidate_labels=["a", "b"])
    with pytest.raises(TypeError, match="does not take.*template="):
        clf.classify("the match", ["a", "b"], prompt_template="x {}")


# ---------------------------------------------------------------- 5. pipeline output, probability matrix
def test_pipeline_output_and_probability_matrix(clf):
    labels = ["sports", "weather", "food"]
    pred = clf.classify("the match", labels)
    out = clf.classify("the match", labels, output="pipeline")
    assert out == pred.to_pipeline()
    assert out["sequence"] == "the match" and sorted(out["labels"]) == sorted(labels)
    assert out["scores"] == sorted(out["scores"], reverse=True) and out["labels"][0] == pred.label
    batch = clf.classify(["the match", "the rain"], labels, output="pipeline")
    assert isinstance(batch, list) and len(batch) == 2
    proba = clf.classify_proba(["the match", "the rain"], labels)
    assert proba.shape == (2, 3) and proba.dtype == np.float32
    np.testing.assert_allclose(proba[0], [pred.scores[x] for x in labels], atol=BATCH_TOLERANCE)  # batch composition
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    with pytest.raises(ValueError, match="output must be"):
        clf.classify("the match", labels, output="dict")


# ---------------------------------------------------------------- 6. one label, single-label mode
def test_one_label_is_scored_on_its_own_as_the_pipeline_does(clf):
    with expect_log("as transformers' zero-shot pipeline does"):
        pred = clf.classify("the match", ["sports"])
    assert pred.multi_label and 0 < pred.scores["sports"] < 1
    assert pred.scores == clf.classify("the match", ["sports"], multi_label=True).scores


# ---------------------------------------------------------------- 8. pickle-only folders
def test_a_pickle_only_transformers_folder_says_how_to_convert(tiny_models, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_models("cosine"), folder)
    for name in ("udtc_config.json", "modules.json"):  # a plain transformers folder
        (folder / name).unlink(missing_ok=True)
    for f in folder.rglob("*.safetensors"):
        f.rename(f.with_name("pytorch_model.bin"))
    with pytest.raises(ValueError, match=r"only pickle weights \(pytorch_model\.bin\).*save_pretrained.*model\.safetensors"):
        Classifier.from_pretrained(folder)


# ---------------------------------------------------------------- 13. logging
def test_messages_are_one_line_on_the_udtc_logger_and_verbosity_chooses(tiny_models, tmp_path):
    script = ("import udtc, logging; from udtc.logs import get_logger; log = get_logger('udtc.x'); "
              "log.info('an info'); log.warning('a warning')")
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    run = lambda extra: subprocess.run([sys.executable, "-c", script], env={**env, **extra}, capture_output=True,
                                       text=True, timeout=120)
    assert run({}).stderr == "udtc: a warning\n"
    assert run({"UDTC_VERBOSITY": "info"}).stderr == "udtc: an info\nudtc: a warning\n"
    assert run({"UDTC_VERBOSITY": "error"}).stderr == ""
    assert logging.getLogger("udtc").propagate is False


def test_cli_quiet_and_verbose(tiny_models, capsys):
    model = str(tiny_models("cosine"))
    assert main(["--verbose", "classify", "the match", "--labels", "sports", "--model", model]) == 0
    assert "udtc: one label in single-label mode" in capsys.readouterr().err
    assert main(["--quiet", "classify", "the match", "--labels", "Weather,weather", "--model", model]) == 0
    assert capsys.readouterr().err == ""
    assert main(["classify", "the match", "--labels", "Sports,sports", "--model", model]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "differ only in case" in err


# ---------------------------------------------------------------- 10. optional deps, failed runs
def test_missing_peft_is_named_before_anything_is_written(tiny_models, tmp_path, monkeypatch):
    import udtc
    from factories import ROWS

    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` fails as if it were not installed
    out = tmp_path / "out"
    with pytest.raises(ImportError, match=r"method='lora' needs peft.*pip install 'udtc\[train\]'"):
        udtc.finetune(tiny_models("cosine"), ROWS, method="lora", output_dir=out, progress=False)
    assert not out.exists()


def test_a_run_that_fails_before_its_first_checkpoint_leaves_nothing(tiny_models, tmp_path, monkeypatch):
    import udtc
    import udtc.training.api as api
    from factories import ROWS

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    out = tmp_path / "out"
    monkeypatch.setattr(api, "run", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        udtc.finetune(tiny_models("cosine"), ROWS, method="full", output_dir=out, progress=False)
    assert not out.exists()
    monkeypatch.undo()
    _, metrics = udtc.finetune(tiny_models("cosine"), ROWS, method="full", output_dir=out, epochs=1, batch_size=8,
                               progress=False)  # other settings, no overwrite needed
    assert metrics["epochs_run"] == 1 and (out / "udtc_config.json").exists()


# ---------------------------------------------------------------- 15. the benchmarked recipe by default
def test_finetune_defaults_are_the_backends_benchmarked_recipe():
    from benchmarks.few_shot import GLICLASS_RECIPES, RECIPES

    from udtc import TrainingArguments
    from udtc.backends import get_backend

    for backend, recipes in (("cosine", RECIPES), ("gliclass", GLICLASS_RECIPES)):
        cls = get_backend(backend)
        for method, recipe in recipes.items():
            got = TrainingArguments(method=method).resolved(cls.supported_methods, cls.lora_defaults, backend=backend,
                                                            device="cpu", has_eval=False, recipes=cls.training_recipes)
            assert (got.learning_rate, got.epochs) == (recipe["learning_rate"], recipe["epochs"])
    cosine = get_backend("cosine")
    given = TrainingArguments(learning_rate=1e-4, epochs=2).resolved(
        cosine.supported_methods, {}, backend="cosine", device="cpu", has_eval=False, recipes=cosine.training_recipes)
    assert (given.method, given.learning_rate, given.epochs) == ("lora", 1e-4, 2)


@pytest.mark.parametrize(("field", "value", "match"), [
    ("seed", "a", "seed must be an integer, got 'a'"), ("seed", 1.5, "seed must be an integer"),
    ("epochs", 0, "epochs must be a positive integer"), ("learning_rate", -1.0, "learning_rate must be a positive"),
])
def test_bad_training_arguments_are_named(field, value, match):
    from udtc import TrainingArguments

    with pytest.raises(ValueError, match=match):
        TrainingArguments(**{field: value})


def test_load_and_save_arguments_are_named(clf, tmp_path):
    import torch

    with pytest.raises(TypeError, match="name_or_path must be a folder, file or Hub id .*got int 5"):
        Classifier.from_pretrained(5)
    with pytest.raises(ValueError, match="dtype torch.int8 is not a floating-point type"):
        Classifier.from_pretrained(None, dtype=torch.int8)
    (tmp_path / "notes.txt").write_text("mine")
    for overwrite in (False, True):  # a file is never replaced by a model folder
        with pytest.raises(FileExistsError, match="notes.txt is a file; a model is saved as a folder"):
            clf.save_pretrained(tmp_path / "notes.txt", overwrite=overwrite)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_merge_with_a_method_that_saves_full_weights_is_refused(tiny_models, tmp_path):
    import udtc
    from factories import ROWS

    with pytest.raises(ValueError, match="merge=True merges a LoRA adapter or sparse change.*method='full'"):
        udtc.finetune(tiny_models("cosine"), ROWS, method="full", merge=True, output_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_bytes_labels_are_named_as_bytes(clf):
    with pytest.raises(TypeError, match="every label and description must be a string, got bytes"):
        clf.classify("the match", [b"sports", b"food"])


def test_finetune_without_flags_records_the_recipe(tiny_models, tmp_path):
    import udtc
    from factories import ROWS

    udtc.finetune(tiny_models("cosine"), ROWS, output_dir=tmp_path / "o", batch_size=8, progress=False, epochs=1)
    card = (tmp_path / "o" / "README.md").read_text()
    assert "0.003" in card and "lora" in card


def test_no_third_party_noise_on_save_and_finetune(tiny_models, tmp_path, capfd):
    import udtc
    from factories import ROWS

    model = tiny_models("cosine")  # building the test model (on first use in this process) may print its own bars
    capfd.readouterr()
    Classifier.from_pretrained(model, device="cpu").save_pretrained(tmp_path / "saved")
    udtc.finetune(model, ROWS, output_dir=tmp_path / "o", batch_size=8, progress=False, epochs=1)
    assert "Writing model shards" not in capfd.readouterr().err


def test_llm_prompt_scoring_prints_no_deprecation(tmp_path):
    script = ("import sys, warnings; sys.path.insert(0, 'tests'); warnings.simplefilter('always'); "
              "from factories import FACTORIES; from udtc import Classifier; "
              f"from pathlib import Path; clf = Classifier.from_pretrained(FACTORIES['llm-prompt'](Path({str(tmp_path / 'm')!r})), device='cpu'); "
              "import sys; print('SCORING', file=sys.stderr); "
              "clf.classify(['the match was won', 'rain all day'], ['sports', 'weather report'])")
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr
    scoring = run.stderr.split("SCORING", 1)[1]
    assert "past_key_values" not in scoring and "deprecated" not in scoring, scoring


# ---------------------------------------------------------------- 9. self-contained folders
def test_self_contained_copies_package_models_in_and_the_card_says_which(tmp_path, monkeypatch):
    import torch
    from factories import tiny_cosine

    from udtc.backends.sce.backend import SCEBackend

    tiny_cosine(tmp_path / "site" / "tinypkg" / "model")
    (tmp_path / "site" / "tinypkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    backend = SCEBackend.build("package:tinypkg/model", None, [0], device=torch.device("cpu"))
    clf = Classifier(backend, base_model="package:tinypkg/model")
    by_name = clf.save_pretrained(tmp_path / "by-name")
    whole = clf.save_pretrained(tmp_path / "whole", self_contained=True)
    assert json.loads((by_name / "udtc_config.json").read_text())["options"]["embedder"] == "package:tinypkg/model"
    assert "loading needs package:tinypkg/model" in (by_name / "README.md").read_text()
    assert json.loads((whole / "udtc_config.json").read_text())["options"]["embedder"] == "embedder"
    assert (whole / "embedder" / "model.safetensors").exists()
    assert "copied into this folder from package:tinypkg/model" in (whole / "README.md").read_text()
    expected = clf.classify("the match", ["sports", "food"]).scores
    shutil.rmtree(tmp_path / "site")  # the package is gone: only the self-contained folder still loads
    assert Classifier.from_pretrained(whole, device="cpu").classify("the match", ["sports", "food"]).scores == pytest.approx(expected)
    with pytest.raises(FileNotFoundError, match="tinypkg"):
        Classifier.from_pretrained(by_name, device="cpu")


# ---------------------------------------------------------------- 7. files honour the umask
def _modes(folder: Path) -> set[tuple[str, int]]:
    return {("dir" if p.is_dir() else "file", p.stat().st_mode & 0o777) for p in [folder, *folder.rglob("*")]}


def test_saved_folders_output_files_and_finetuned_weights_honour_the_umask(tiny_models, tmp_path):
    import os

    import udtc
    from factories import ROWS

    old = os.umask(0o022)
    try:
        clf = Classifier.from_pretrained(tiny_models("cosine"), device="cpu")
        saved = clf.save_pretrained(tmp_path / "saved")
        udtc.finetune(tiny_models("cosine"), ROWS, method="full", output_dir=tmp_path / "tuned", epochs=1, batch_size=8,
                      progress=False)
        assert main(["classify", "the match", "--labels", "a,b", "--model", str(saved), "--output",
                     str(tmp_path / "out.csv")]) == 0
    finally:
        os.umask(old)
    assert _modes(saved) == _modes(tmp_path / "tuned") == {("dir", 0o755), ("file", 0o644)}
    assert (tmp_path / "out.csv").stat().st_mode & 0o777 == 0o644


# ---------------------------------------------------------------- 11. the CLI checks everything before loading
@pytest.mark.parametrize(("args", "message"), [
    (["classify", ""], "TEXT 1 is empty"),
    (["classify", "hello"], "no labels: pass --labels"),
    (["classify", "hello", "--labels", "a,a"], "duplicate label 'a'"),
    (["classify", "hello", "--labels", "a,b", "--threshold", "1.5"], r"threshold must be a number in \[0, 1\]"),
    (["classify", "hello", "--labels", "a,b", "--top-k", "0"], "--top-k must be a positive integer"),
    (["classify", "hello", "--labels", "a,b", "--batch-size", "0"], "--batch-size must be a positive integer"),
    (["classify", "hello", "--labels", "a,b", "--template", "no slot"], "--template must be a string with exactly one"),
    (["classify", "--input", "/nonexistent.csv", "--labels", "a,b"], "no such input file"),
    (["classify", "hello", "--labels", "a,b", "--output", "x.txt"], "--output must end in .csv, .jsonl or .parquet"),
])
def test_cli_checks_every_argument_before_loading_a_model(monkeypatch, capsys, args, message):
    def no_loading(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(Classifier, "from_pretrained", no_loading)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("udtc: error:") and len(err.splitlines()) == 1
    assert __import__("re").search(message, err), err


def test_cli_input_columns_are_checked_before_loading_a_model(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(Classifier, "from_pretrained", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
    src = tmp_path / "in.csv"
    src.write_text("id,body\n1,hello\n", encoding="utf-8")
    assert main(["classify", "--input", str(src), "--labels", "a,b"]) == 2
    assert "no column 'text'; columns found: id, body (use --text-column)" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["classify", "--help"], ["finetune", "--help"]])
def test_version_and_help_import_no_torch(argv):
    script = (f"import sys; from udtc.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
              "print('heavy:', sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "heavy: []"


def test_import_udtc_is_lazy_and_complete():
    script = ("import sys, udtc; lazy = 'torch' not in sys.modules; names = [getattr(udtc, n) for n in udtc.__all__]; "
              "print(lazy, 'torch' in sys.modules, udtc.Classifier.__module__)")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert run.stdout.split() == ["True", "True", "udtc.classifier"], run.stderr


def test_udtc_defaults_after_a_plain_import():
    # the README names models as udtc.defaults.SCE_MINILM etc.; a bare `import udtc` must reach them, without torch
    script = "import sys, udtc; print(udtc.defaults.SCE_MINILM, udtc.defaults.DEFAULT_MODEL, 'torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert run.stdout.split() == ["package:udtc/models/sce-minilm", "package:udtc/models/cosine-minilm-tuned", "False"], \
        run.stderr


# ---------------------------------------------------------------- 12. one row format, CLI words
def test_json_output_and_output_files_share_one_row_format(tiny_models, tmp_path, capsys):
    import csv

    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 7, "text": "the match"}\n{"id": 8, "text": "the rain"}\n', encoding="utf-8")
    base = ["classify", "--input", str(src), "--labels", "sports,weather", "--model", str(tiny_models("cosine"))]
    assert main([*base, "--json"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main([*base, "--output", str(tmp_path / "o.jsonl")]) == 0
    assert main([*base, "--output", str(tmp_path / "o.csv")]) == 0
    written = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert printed == written
    assert list(printed[0]) == ["id", "text", "label", "labels", "score", "scores", "truncated"]
    assert printed[0]["id"] == 7 and isinstance(printed[0]["labels"], list) and isinstance(printed[0]["scores"], dict)
    flat = list(csv.DictReader((tmp_path / "o.csv").open(encoding="utf-8")))
    assert flat[0]["labels"] == "|".join(printed[0]["labels"]) and json.loads(flat[0]["scores"]) == printed[0]["scores"]


def test_cli_messages_use_cli_words(tiny_models, tmp_path, capsys):
    from udtc.cli import cli_words

    assert cli_words("pick another folder or pass overwrite=True to replace it") == \
        "pick another folder or pass --overwrite to replace it"
    assert cli_words("top_k must be a positive integer") == "--top-k must be a positive integer"
    assert cli_words("add labels or pass multi_label=True") == "add labels or pass --multi-label"
    train = tmp_path / "train.csv"
    train.write_text("text,label\n" + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(6)), encoding="utf-8")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("precious")
    assert main(["finetune", "--model", str(tiny_models("cosine")), "--train", str(train), "--output",
                 str(tmp_path / "out"), "--method", "full"]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "overwrite=True" not in err


# ---------------------------------------------------------------- 14. JSONL errors name the line and the problem
@pytest.mark.parametrize(("lines", "message"), [
    (['{"text": "fine"}', '{"text": 42}'], r"line 2: 'text' is int 42, not a string"),
    (['{"text": "fine"}', '{"body": "x"}'], r"line 2 has no key 'text' \(keys: body\)"),
    (['{"text": "fine"}', '', '["a"]'], r"line 3 is not a JSON object"),
])
def test_jsonl_reader_says_what_is_wrong_with_which_line(tmp_path, lines, message):
    from udtc.io import read_rows

    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_rows(path)


# ---------------------------------------------------------------- 18. one variable relocates the whole cache
def test_udtc_cache_relocates_data_models_and_gguf(monkeypatch, tmp_path):
    from benchmarks.datasets import data_root
    from benchmarks.models import models_root

    from udtc.gguf import cache_root

    monkeypatch.delenv("UDTC_DATA_DIR", raising=False)
    monkeypatch.delenv("UDTC_MODELS_DIR", raising=False)
    monkeypatch.setenv("UDTC_CACHE", str(tmp_path))
    assert (data_root(), models_root(), cache_root()) == (tmp_path / "data", tmp_path / "models", tmp_path)
    monkeypatch.setenv("UDTC_DATA_DIR", str(tmp_path / "elsewhere"))
    assert data_root() == tmp_path / "elsewhere"
