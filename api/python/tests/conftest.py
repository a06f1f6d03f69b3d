"""Fixtures: real engines on loopback (tests/engine.py), the package from src/."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Iterator, List

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(__file__))

import engine as eng  # noqa: E402

logging.getLogger("recoveryd").setLevel(logging.DEBUG)


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    named = os.environ.get("RECOVERYD_BINARY")
    if named and eng.binary() is None:  # ctest names it: not built is a failure, not a skip
        raise pytest.UsageError(f"RECOVERYD_BINARY={named} is not an executable: build it first")
    if eng.binary() is None:
        skip = pytest.mark.skip(reason="RECOVERYD_BINARY (the built recoveryd) is not set")
        for item in items:
            if "needs_engine" in item.keywords:
                item.add_marker(skip)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_engine: starts real recoveryd processes")


def _finish(request: pytest.FixtureRequest, engines: List[eng.Engine]) -> None:
    """Stops the engines; keeps their directories (and prints their logs'
    tails) when the test failed or an engine did not end cleanly."""
    problems = [p for p in (e.stop_and_check() for e in engines) if p]
    failed = getattr(request.node, "rep_call", None)
    keep = bool(problems) or bool(failed is not None and failed.failed)
    if keep:
        for e in engines:
            print(f"---- {e.url} log tail ----\n{e.log_tail(40)}")
    for e in engines:
        e.cleanup(keep)
    if problems:
        pytest.fail("; ".join(problems))


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> Iterator[eng.Engine]:
    e = eng.Engine(getattr(request, "param", ""))
    e.start()
    eng.wait_for(e.ready, 15, "the engine ready")
    yield e
    _finish(request, [e])


@pytest.fixture
def cluster3(request: pytest.FixtureRequest) -> Iterator[eng.Cluster]:
    c = eng.Cluster(3, getattr(request, "param", ""))
    c.start()
    yield c
    _finish(request, c.engines)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome: Any = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
