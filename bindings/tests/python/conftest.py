"""Fixtures of the riverchief-ffi Python suite (run by bindings/run-tests).

RIVERCHIEF_SERVER_BIN names the server binary; the generated module `riverchief_ffi` (with the
library beside it) must be on PYTHONPATH.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rc_helpers as h  # noqa: E402


def pytest_configure(config):
    if not os.environ.get("RIVERCHIEF_SERVER_BIN"):
        raise pytest.UsageError("set RIVERCHIEF_SERVER_BIN to the riverchief-server binary (bindings/run-tests does)")


@pytest.fixture(scope="session")
def server_bin() -> str:
    path = Path(os.environ["RIVERCHIEF_SERVER_BIN"]).resolve()
    assert path.is_file() and os.access(path, os.X_OK), f"no server binary at {path}"
    return str(path)


@pytest.fixture(scope="module")
def server(server_bin, tmp_path_factory):
    srv = h.Server(server_bin, tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def proxy(server):
    p = h.Proxy(server.port)
    yield p
    p.stop()


@pytest.fixture(scope="module")
def lead(server):
    """The duty lead chen, straight to the server (not through the proxy): what arrived."""
    return h.Http(server.url, "chen", server.password)


@pytest.fixture(scope="module")
def qhl02(lead):
    """(segment id, line coordinates) of QHL-02, as the server has it."""
    return lead.segment_line("QHL-02")


@pytest.fixture(scope="session")
def phone_photo(tmp_path_factory):
    """A 4000x3000 JPEG of 5-8 MB, stored landscape with EXIF orientation 6 (rotate 90)."""
    path = tmp_path_factory.mktemp("camera") / "IMG_20260715_093000.jpg"
    info = h.make_phone_photo(path)
    assert 5_000_000 <= info["size"] <= 8_000_000, f"test photo is {info['size']} bytes"
    return info


@pytest.fixture()
def small_photo(tmp_path):
    """Makes distinct upright JPEGs (640x480 by default: no shrinking needed) on demand."""
    made = []

    def make(name: str, width: int = 640, height: int = 480, quality: int = 80):
        path = tmp_path / f"{name}.jpg"
        made.append(h.make_phone_photo(path, width=width, height=height, orientation=1, quality=quality,
                                       seed_text=name))
        return made[-1]

    return make
