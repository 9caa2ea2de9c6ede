"""Spark: a pandas UDF that classifies a string column (extra ``udtc[spark]``).

The model loads once per Python worker process (cached, as ``predict_batch_udf`` does; Spark reuses
its workers) and each Arrow batch of rows is one ``Classifier.classify`` call; the label set is
fixed for the job. (``predict_batch_udf`` itself is not used: it cannot return the variable-length
``labels`` list nor a null ``label``.) ::

    from udtc.integrations.spark import classify_udf

    classify = classify_udf(["positive", "negative"])
    df = spark.read.parquet("reviews.parquet").withColumn("prediction", classify("body"))
    df.select("body", "prediction.label", "prediction.score").write.parquet("labelled/")

The result is a struct column with the fields of :data:`udtc.integrations.COLUMNS`. The model
argument must be loadable on every executor (a Hub id, a shared path, or the default model).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from udtc.classifier import Classifier
from udtc.integrations import load, prediction_columns, require

#: The struct each row gets (the fields of ``udtc.integrations.COLUMNS``).
RETURN_TYPE = "label string, labels array<string>, score double, scores string"
_CLASSIFIERS: dict[str, Classifier] = {}  # per Python worker process, by UDF (Spark reuses workers)


def classify_udf(labels: Any, model: str | None = None, *, batch_size: int = 64, threads: int | None = 1,
                 backend: str | None = None, device: str | None = None, **options: Any):
    """A pandas UDF: ``df.withColumn("prediction", classify_udf(labels)("text"))``.

    Args:
        labels: the label set of the job: a list of names or a dict ``{name: description}``.
        model: folder, Hub id, or None for the default model.
        batch_size: texts per forward pass (Spark hands the UDF Arrow batches of
            ``spark.sql.execution.arrow.maxRecordsPerBatch`` rows, each one ``classify`` call).
        threads: torch CPU threads per Python worker (default 1: Spark runs one worker per core).
        backend, device: as ``Classifier.from_pretrained``.
        **options: ``multi_label``, ``threshold``, ``top_k``, ``template`` of ``classify``.
    """
    require("pyspark", "spark")
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    key = uuid.uuid4().hex

    def classify(batches):
        classifier = _CLASSIFIERS.get(key)
        if classifier is None:  # once per worker process, not per batch or partition
            classifier = _CLASSIFIERS[key] = load(model, backend=backend, device=device, threads=threads)
        for texts in batches:
            columns = prediction_columns(classifier, texts.tolist(), labels, batch_size=batch_size, **options)
            yield pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in columns.items()})

    # real types (not strings) so Spark picks the iterator-of-Series UDF without evaluating annotations
    classify.__annotations__ = {"batches": Iterator[pd.Series], "return": Iterator[pd.DataFrame]}
    return pandas_udf(classify, RETURN_TYPE)  # type: ignore[call-overload, unused-ignore]  # the stubs miss this form (unused where pyspark is absent)
