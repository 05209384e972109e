"""A private cache folder and fresh counters for every data test."""

import pytest

from rollingq.data import cache


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own cache folder (``$ROLLINGQ_CACHE``) and fresh counters."""
    monkeypatch.setenv("ROLLINGQ_CACHE", str(tmp_path / "cache"))
    cache.STATS.clear()
    return tmp_path / "cache"
