from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REAL_DATA = Path(os.environ["CLASSWISE_DATA"]) if os.environ.get("CLASSWISE_DATA") else None


@pytest.fixture(autouse=True)
def _isolate(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own array cache and no implicit data root; torch stays single-seeded."""
    monkeypatch.setenv("CLASSWISE_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("CLASSWISE_DATA", raising=False)
    torch.manual_seed(0)


@pytest.fixture
def real_data() -> Path:
    if REAL_DATA is None or not REAL_DATA.is_dir():
        pytest.skip("real datasets not found: set CLASSWISE_DATA (e.g. ../shared/data)")
    return REAL_DATA
