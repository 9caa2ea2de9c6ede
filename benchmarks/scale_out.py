"""Throughput of the Ray Data and Spark integrations with 1 and 2 local workers, against one
in-process ``classify`` call over the same rows, in the same run.

Rows: ``--rows`` seeded synthetic texts (8-40 words), one label set of 4 labels. Each engine run is
timed end to end (``ray.data`` / Spark job start to the last row collected, workers starting and
loading the model included; the Ray runtime and the Spark session are started before the clock):
what a user waits for. Ray: ``classify_dataset(concurrency=k, num_cpus=1)``; Spark: ``local[k]``
with k partitions and ``classify_udf``. One torch thread per worker. Engines that are not installed
are skipped (noted in the results).

    python -m benchmarks.scale_out                 # default model, 3000 rows (~4 min here)
    python -m benchmarks.scale_out --quick         # CI smoke test: tiny random model, 64 rows, 2 workers
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

from benchmarks.common import synthetic_texts, write_results

REPO = Path(__file__).resolve().parent.parent
LABELS = ["sports", "politics", "business", "technology"]


def run_ray(texts: list[str], model: str | None, workers: int) -> float:
    import ray

    from udtc.integrations.ray import classify_dataset

    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        ds = ray.data.from_items([{"text": t} for t in texts], override_num_blocks=4 * workers)
        start = time.perf_counter()
        rows = classify_dataset(ds, LABELS, model, concurrency=workers, num_cpus=1, batch_size=256).take_all()
        seconds = time.perf_counter() - start
    finally:
        ray.shutdown()
    assert len(rows) == len(texts) and all(r["label"] in LABELS for r in rows)
    return seconds


def run_spark(texts: list[str], model: str | None, workers: int) -> float:
    from pyspark.sql import SparkSession

    from udtc.integrations.spark import classify_udf

    spark = (SparkSession.builder.master(f"local[{workers}]").appName("udtc-scale-out")
             .config("spark.ui.enabled", "false").config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.driver.host", "127.0.0.1").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    try:
        df = spark.createDataFrame([(t,) for t in texts], "text string").repartition(workers)
        start = time.perf_counter()
        rows = df.select(classify_udf(LABELS, model)("text").alias("p")).select("p.label").collect()
        seconds = time.perf_counter() - start
    finally:
        spark.stop()
    assert len(rows) == len(texts) and all(r["label"] in LABELS for r in rows)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="folder or Hub id (default: the default model)")
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--quick", action="store_true", help="CI smoke test: tiny random model, 64 rows, 2 workers")
    args = parser.parse_args(argv)

    import torch

    from udtc import Classifier

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message=".*exceeded the model's maximum length")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ["OMP_NUM_THREADS"] = "1"
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if args.quick:
            sys.path.insert(0, str(REPO / "tests"))
            from factories import FACTORIES  # tests/factories.py

            model = str(FACTORIES["cosine"](Path(tmp) / "cosine"))
            args.rows = 64
        texts = synthetic_texts(args.rows, (8, 40), seed=2)
        clf = Classifier.from_pretrained(model)
        clf.classify(texts[:8], LABELS)  # warm-up
        start = time.perf_counter()
        clf.classify(texts, LABELS, progress=False)
        results = {"in-process classify (1 thread)": {"workers": 1, "seconds": time.perf_counter() - start}}
        skipped = []
        engines = {"Ray Data": ("ray", run_ray), "Spark": ("pyspark", run_spark)}
        for name, (module, run) in engines.items():
            if importlib.util.find_spec(module) is None:
                skipped.append(f"{name}: {module} not installed")
                continue
            for workers in (2,) if args.quick else (1, 2):  # --quick: the multi-worker path only
                results[f"{name}, {workers} worker{'s' * (workers > 1)}"] = {"workers": workers,
                                                                          "seconds": run(texts, model, workers)}
                print(name, workers, results, file=sys.stderr)
    for r in results.values():
        r["seconds"] = round(r["seconds"], 2)
        r["rows_per_s"] = round(args.rows / r["seconds"], 1)
    rows = ["| run | workers | seconds | rows/s | vs 1 worker |", "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        one = results.get(name.replace("2 workers", "1 worker"), r)
        rows.append(f"| {name} | {r['workers']} | {r['seconds']:.1f} | {r['rows_per_s']:.1f} | "
                    f"{one['seconds'] / r['seconds']:.2f} |")
    rows.append(f"\n{args.rows} rows, 4 labels, model {model or 'the default model'}; engine runs timed end to end "
                f"(workers starting and loading the model included)" + (f"; skipped: {'; '.join(skipped)}" if skipped else ""))
    table = "\n".join(rows)
    print(table)
    write_results("scale_out" + ("_quick" if args.quick else ""),
                  {"model": model or "default", "rows": args.rows, "quick": args.quick, "results": results,
                   "skipped": skipped, "load_average_before_after": [load_before, os.getloadavg()]}, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
