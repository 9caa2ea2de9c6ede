"""Benchmarks for udtc; `benchmarks.datasets` loads the labelled data they use."""
