"""Shared fixtures: an isolated RLM_LOCAL_HOME per test, and the real default models.

The default models are read from the user's store (pulled by `rlm-local models pull`, which the
README's test command runs first); a session pulls them itself if they are missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlm_local.config import load_settings
from rlm_local.models import ModelStore, ResolvedModel
from rlm_local.models.backend import BackendOptions, LocalModel

REAL_HOME_SETTINGS = load_settings()  # read before any test changes RLM_LOCAL_HOME
REAL_MODEL_FIXTURES = frozenset({"sub_model_file", "root_model_file", "sub_model", "root_model"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every test that loads a real model `models`, so `-m "not models"` leaves the CPU
    to a benchmark running beside it."""
    for item in items:
        if REAL_MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.models)


@pytest.fixture
def tmp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("RLM_LOCAL_HOME", str(home))
    monkeypatch.setenv("RLM_LOCAL_CONFIG", str(tmp_path / "no-user-config.toml"))
    (tmp_path / "no-user-config.toml").write_text("")
    for var in ("RLM_LOCAL_ROOT", "RLM_LOCAL_SUB"):
        monkeypatch.delenv(var, raising=False)
    return home


def _default_model(role: str) -> ResolvedModel:
    settings = REAL_HOME_SETTINGS
    store = ModelStore(settings.registry, settings.models_dir)
    name = settings.root if role == "root" else settings.sub
    store.pull(name)  # a no-op when a verified copy is present
    return store.resolve(name)


@pytest.fixture(scope="session")
def sub_model_file() -> ResolvedModel:
    return _default_model("sub")


@pytest.fixture(scope="session")
def root_model_file() -> ResolvedModel:
    return _default_model("root")


@pytest.fixture(scope="session")
def sub_model(sub_model_file: ResolvedModel) -> Iterator[LocalModel]:
    model = LocalModel(sub_model_file, BackendOptions(n_threads=len(os.sched_getaffinity(0))))
    yield model
    model.close()


@pytest.fixture(scope="session")
def root_model(root_model_file: ResolvedModel) -> Iterator[LocalModel]:
    model = LocalModel(root_model_file, BackendOptions(n_threads=len(os.sched_getaffinity(0))))
    yield model
    model.close()
