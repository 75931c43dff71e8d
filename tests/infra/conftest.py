"""Fixtures shared by the template tests: the raw template and its rendering per mode."""

from __future__ import annotations

from typing import Any

import pytest

from template_model import Rendered, load_raw


@pytest.fixture(scope="session")
def raw() -> dict[str, Any]:
    return load_raw()


@pytest.fixture(scope="session")
def direct(raw) -> Rendered:
    return Rendered(raw)


@pytest.fixture(scope="session")
def queued(raw) -> Rendered:
    return Rendered(raw, Mode="Queued")


@pytest.fixture(scope="session")
def stream(raw) -> Rendered:
    return Rendered(raw, Mode="Stream")
