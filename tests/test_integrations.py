"""Ray Data and Spark integrations in local mode (2 CPUs / local[2]), results equal to ``classify``.

Marked ``scaleout`` (deselect with ``-m 'not scaleout'``); skipped with the reason when the extra is
not installed. Tiny random models, a few dozen rows: each engine starts in seconds."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from udtc import Classifier
from udtc.integrations import COLUMNS, prediction_columns

REPO = Path(__file__).resolve().parent.parent
LABELS = {"sports": "a sports match", "weather": "rain and wind", "food": "a recipe"}
TEXTS = ["the team won the match", "rain in the city", "a recipe for the oven", "the election and the vote",
         "a great song from the band", "good food from the market", "a late goal in the game", "sad rain all day"]
ROWS = [{"id": i, "text": TEXTS[i % len(TEXTS)] if i % 9 != 4 else "  "} for i in range(36)]  # rows 4, 13, ...: blank


@pytest.fixture(scope="module")
def model(tiny_models):
    return str(tiny_models("cosine"))


def expected_columns(model: str, texts: list, **options) -> dict[str, list]:
    clf = Classifier.from_pretrained(model)
    keep = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
    predictions = dict(zip(keep, clf.classify([texts[i] for i in keep], LABELS, **options)))
    out = {name: [] for name in COLUMNS}
    for i in range(len(texts)):
        p = predictions.get(i)
        out["label"].append(p.label if p else None)
        out["labels"].append(p.labels if p else [])
        out["score"].append(p.scores[p.label] if p and p.label else None)
        out["scores"].append(p.scores if p else {})
    return out


def assert_rows_match(rows: list[dict], expected: dict[str, list]) -> None:
    assert len(rows) == len(expected["label"])
    for i, row in enumerate(rows):
        assert row["label"] == expected["label"][i] and list(row["labels"]) == expected["labels"][i], i
        scores = json.loads(row["scores"])
        assert list(scores) == list(expected["scores"][i])
        assert list(scores.values()) == pytest.approx(list(expected["scores"][i].values()), abs=1e-5)
        if expected["score"][i] is None:
            assert row["score"] is None or row["score"] != row["score"]  # None (or NaN in pandas)
        else:
            assert row["score"] == pytest.approx(expected["score"][i], abs=1e-5)


def test_prediction_columns_skip_blank_and_missing_texts(model):
    clf = Classifier.from_pretrained(model)
    texts = ["the team won", None, "  ", "rain in the city", 7]
    cols = prediction_columns(clf, texts, LABELS, multi_label=True)
    rows = [dict(zip(COLUMNS, r)) for r in zip(*cols.values())]
    assert_rows_match(rows, expected_columns(model, texts, multi_label=True))
    assert rows[1] == {"label": None, "labels": [], "score": None, "scores": "{}"}


def test_ray_callable_class_on_a_pandas_batch(model):
    pd = pytest.importorskip("pandas")
    from udtc.integrations.ray import RayClassifier

    predictor = RayClassifier(LABELS, model, text_column="body", top_k=2)  # what each Ray actor builds once
    batch = pd.DataFrame({"body": [r["text"] for r in ROWS], "id": range(len(ROWS))})
    out = predictor(batch)
    assert list(out["id"]) == list(range(len(ROWS))) and list(out["body"]) == list(batch["body"])
    assert_rows_match(out.to_dict("records"), expected_columns(model, list(batch["body"]), top_k=2))
    with pytest.raises(ValueError, match="no column 'text'"):
        RayClassifier(LABELS, model)(batch)


def test_ray_actor_pool_uses_the_argument_the_installed_ray_takes(model, monkeypatch):
    ray = pytest.importorskip("ray", reason="the Ray integration needs the 'ray' extra: pip install 'udtc[ray]'")
    from udtc.integrations.ray import RayClassifier, classify_dataset

    class Dataset:  # what classify_dataset calls on a ray.data.Dataset
        def columns(self):
            return ["text"]

        def map_batches(self, fn, **kwargs):
            self.fn, self.kwargs = fn, kwargs
            return self

    monkeypatch.setattr(ray, "__version__", "2.60.0")  # concurrency= is deprecated from 2.51
    ds = classify_dataset(Dataset(), LABELS, model, concurrency=3)
    assert ds.fn is RayClassifier and "concurrency" not in ds.kwargs
    assert isinstance(ds.kwargs["compute"], ray.data.ActorPoolStrategy) and ds.kwargs["compute"].max_size == 3
    monkeypatch.setattr(ray, "__version__", "2.9.3")  # before 2.51 (udtc[ray] allows >= 2.9)
    ds = classify_dataset(Dataset(), LABELS, model, concurrency=3)
    assert ds.kwargs["concurrency"] == 3 and "compute" not in ds.kwargs


def _env_with_repo() -> None:
    """Workers are new processes: make them import this checkout's udtc."""
    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))


@pytest.mark.scaleout
def test_ray_map_batches_equals_classify(model):
    pytest.importorskip("ray.data", reason="the Ray integration needs the 'ray' extra: pip install 'udtc[ray]'")
    import ray

    from udtc.integrations.ray import classify_dataset

    _env_with_repo()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        ds = ray.data.from_items(ROWS)
        out = classify_dataset(ds, LABELS, model, concurrency=2, batch_size=8, multi_label=True, threshold=0.3)
        rows = sorted(out.take_all(), key=lambda r: r["id"])
        assert [r["id"] for r in rows] == list(range(len(ROWS)))
        assert_rows_match(rows, expected_columns(model, [r["text"] for r in ROWS], multi_label=True, threshold=0.3))

        with pytest.raises(ValueError, match="would overwrite"):
            classify_dataset(ray.data.from_items([{"text": "x", "label": "y"}]), LABELS, model)
    finally:
        ray.shutdown()


@pytest.mark.scaleout
def test_spark_pandas_udf_equals_classify(model):
    pytest.importorskip("pyspark", reason="the Spark integration needs the 'spark' extra: pip install 'udtc[spark]'")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs a Java runtime (17+) on PATH or JAVA_HOME")
    from pyspark.sql import SparkSession

    from udtc.integrations.spark import classify_udf

    _env_with_repo()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (SparkSession.builder.master("local[2]").appName("udtc-test").config("spark.ui.enabled", "false")
             .config("spark.sql.shuffle.partitions", "2").config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.driver.host", "127.0.0.1").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    try:
        df = spark.createDataFrame(ROWS).repartition(2)
        classify = classify_udf(LABELS, model, batch_size=8, top_k=2)
        rows = sorted(df.withColumn("p", classify("text")).select("id", "p.*").collect(), key=lambda r: r["id"])
        assert [r["id"] for r in rows] == list(range(len(ROWS)))
        assert_rows_match([r.asDict() for r in rows], expected_columns(model, [r["text"] for r in ROWS], top_k=2))
    finally:
        spark.stop()
