"""Fixtures for the training tests."""

from __future__ import annotations

import pytest
from tiny_setup import tiny_config

from mvdecor.config import Config


@pytest.fixture
def tiny() -> Config:
    return tiny_config()
