from __future__ import annotations

import os
from collections.abc import Iterator
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


@pytest.fixture
def tiny_models_count() -> Iterator[None]:
    """The tests' tiny models see 8 images a class for an epoch and stay near chance, which the pages
    rightly leave out as never trained; these tests are about the snapshot-to-page path, so they
    count them as trained (the exclusion has its own test, on a real run)."""
    from studies.findings.study_answers import StudyRun

    with pytest.MonkeyPatch.context() as m:
        m.setattr(StudyRun, "never_trained", property(lambda self: None))
        yield
