"""Shared test fixtures: where the real data lives and how its absence is handled.

Real-data tests read ``../shared`` beside the project root. In CI (``CI=true``) a missing file
is a failure, because a silently skipped real-data test proves nothing; elsewhere it skips with
a one-line reason so a contributor without the data can still run the unit tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RESNET8_ONNX_SHARED", PROJECT_ROOT.parent / "shared"))


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def shared_path(*parts: str) -> Path:
    """Path of a file under ``../shared``; fail in CI, skip elsewhere, when it is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        message = f"real data missing: {path}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never touch the network or the user's cache unless a test opts in."""
    monkeypatch.setenv("RESNET8_ONNX_OFFLINE", "1")
    monkeypatch.setenv("RESNET8_ONNX_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("RESNET8_ONNX_DATA_DIR", raising=False)
