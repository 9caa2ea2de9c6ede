"""Ray Data: classify a ``ray.data.Dataset`` with ``map_batches`` (extra ``udtc[ray]``).

:class:`RayClassifier` is a callable class: Ray builds it once per actor (the model loads once per
actor) and calls it on pandas batches; the label set is fixed for the job. :func:`classify_dataset`
is the one-liner::

    import ray
    from udtc.integrations.ray import classify_dataset

    ds = ray.data.read_parquet("reviews.parquet")
    out = classify_dataset(ds, ["positive", "negative"], text_column="body", concurrency=2)
    out.write_parquet("labelled/")

Each row gains the columns of :data:`udtc.integrations.COLUMNS`. The model argument must be
loadable on every node (a Hub id, a shared path, or the default model).
"""

from __future__ import annotations

from typing import Any

from udtc.integrations import COLUMNS, load, prediction_columns, require


class RayClassifier:
    """For ``Dataset.map_batches(RayClassifier, fn_constructor_kwargs={...}, batch_format="pandas")``.

    Args:
        labels: the label set of the job: a list of names or a dict ``{name: description}``.
        model: folder, Hub id, or None for the default model.
        text_column: the column holding the texts.
        threads: torch CPU threads per actor (None: torch's default).
        backend, device: as ``Classifier.from_pretrained``.
        **options: ``multi_label``, ``threshold``, ``top_k``, ``template``, ``batch_size`` of ``classify``.
    """

    def __init__(self, labels: Any, model: str | None = None, *, text_column: str = "text", threads: int | None = None,
                 backend: str | None = None, device: str | None = None, **options: Any):
        self.labels, self.text_column, self.options = labels, text_column, options
        self.classifier = load(model, backend=backend, device=device, threads=threads)

    def __call__(self, batch):
        if self.text_column not in batch:
            raise ValueError(f"the dataset has no column {self.text_column!r}; columns: {', '.join(map(str, batch))} "
                             "(pass text_column=...)")
        import pandas as pd

        out = batch.copy()
        for name, values in prediction_columns(self.classifier, batch[self.text_column].tolist(), self.labels,
                                               **self.options).items():
            out[name] = pd.Series(values, dtype=object, index=batch.index)  # None stays None, not NaN
        return out


def classify_dataset(dataset, labels: Any, model: str | None = None, *, text_column: str = "text",
                     concurrency: int = 1, num_cpus: float = 1, batch_size: int = 256, **options: Any):
    """``dataset`` with the prediction columns added, by ``concurrency`` actors of ``num_cpus`` CPUs each
    (each actor loads the model once and uses ``num_cpus`` torch threads); rows go to the model
    ``batch_size`` at a time. Lazy, like every Ray Data transform."""
    require("ray", "ray")
    overlap = sorted(set(COLUMNS) & set(dataset.columns() or ()))
    if overlap:
        raise ValueError(f"the dataset already has column(s) {overlap} that the predictions would overwrite; "
                         "rename or drop them first")
    return dataset.map_batches(
        RayClassifier, batch_format="pandas", batch_size=batch_size, num_cpus=num_cpus, **actor_pool(concurrency),
        fn_constructor_kwargs={"labels": labels, "model": model, "text_column": text_column,
                               "threads": max(1, int(num_cpus)), **options})


def actor_pool(size: int) -> dict[str, Any]:
    """``map_batches``' argument for ``size`` actors: ``compute=ActorPoolStrategy(size=...)`` from Ray 2.51, which
    deprecates ``concurrency=`` for it (a warning per call), ``concurrency=`` before."""
    import ray
    import ray.data

    major, minor = (int(x) for x in ray.__version__.split(".")[:2])
    if (major, minor) >= (2, 51):
        return {"compute": ray.data.ActorPoolStrategy(size=size)}
    return {"concurrency": size}
