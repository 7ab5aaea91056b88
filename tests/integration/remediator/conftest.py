"""Fixtures for the remediator's integration tests: a private data dir with small playbooks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

PLAYBOOKS = Path(__file__).parent / "playbooks"


@pytest.fixture
def private_data_dir(tmp_path: Path) -> Path:
    pdd = tmp_path / "runner"
    shutil.copytree(PLAYBOOKS, pdd / "project")
    return pdd
