"""Shared pytest setup: a non-interactive matplotlib backend for every test, and the smoke
preset's store that the command-line tests read."""

import shutil
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")


@pytest.fixture(scope="session")
def smoke_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke preset swept once into a store; tests copy it before changing anything."""
    from toyrelu import cli

    path = tmp_path_factory.mktemp("smoke") / "runs.sqlite"
    assert cli.main(["sweep", "--preset", "smoke", "--store", str(path), "--workers", "1"]) == 0
    return path


@pytest.fixture
def store_copy(smoke_store: Path, tmp_path: Path) -> Path:
    """A copy of the smoke store, free to change."""
    path = tmp_path / "copy.sqlite"
    shutil.copyfile(smoke_store, path)
    return path
