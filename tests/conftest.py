"""Shared fixtures: the repository root and the TLS tests' certificates."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.certs import Certs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """Throwaway CAs and certificates for the TLS tests, made once per session (tests/certs.py);
    imported here, not at the top, so that only sessions with TLS tests load ``cryptography``."""
    from tests.certs import generate

    return generate(tmp_path_factory.mktemp("certs"))
