"""Fixtures of the Kaggle tests: no network beyond the loopback, a home without credentials, and a running
stand-in Kaggle (tests/kaggle_server.py) that the REAL client talks to."""
from __future__ import annotations

import pytest
from kaggle_server import KEY, USER, FakeKaggle, block_outside_network, point_client_at

KAGGLE_VARIABLES = ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR", "KAGGLE_API_ENVIRONMENT",
                    "XDG_CONFIG_HOME", "KAGGLE_KERNEL_RUN_TYPE")


@pytest.fixture
def no_outside_network(monkeypatch):
    """Any attempt to resolve a host other than the loopback fails the test loudly."""
    block_outside_network(monkeypatch)


@pytest.fixture
def clean_env(monkeypatch, tmp_path, no_outside_network):
    """A home folder with no Kaggle credentials at all."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in KAGGLE_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def fake(clean_env, monkeypatch):
    """A running fake Kaggle, the real client pointed at it, credentials in the environment."""
    server = FakeKaggle(USER, KEY)
    point_client_at(monkeypatch, server.start())
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    yield server
    server.stop()
