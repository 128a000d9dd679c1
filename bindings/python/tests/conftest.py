"""Shared fixtures of the Python bindings' tests: the package is imported
from this checkout (bindings/python), every test gets a private host-backend
runtime of its own, and needs() skips a test when the loaded libgms does not
export a function yet (an older build), saying which."""

import os
import sys

import pytest

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
os.environ.setdefault("GMS_BACKEND", "host")

import gms  # noqa: E402
from gms import _lib  # noqa: E402


def needs(*symbols):
    missing = [s for s in symbols if not _lib.has(s)]
    return pytest.mark.skipif(bool(missing), reason="libgms lacks " + ", ".join(missing))


@pytest.fixture
def rt():
    r = gms.Runtime(backend="host")
    yield r
    r.close()


@pytest.fixture
def ctx(rt):
    with rt.context("acme", "alice") as c:
        yield c
