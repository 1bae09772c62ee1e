"""Retention (h): photos the server confirmed leave the device after the retention period or when
the photo folder is over its budget; a photo not sent yet never does."""

from __future__ import annotations

import gc
import time
from pathlib import Path

import pytest

import rc_helpers as h
from rc_core import options, report_photo, run, variant

rc = pytest.importorskip("riverchief_ffi")


def stored_sha(core, photo) -> str:
    # Small upright photos are kept as taken: the hash is the file's.
    sha = h.sha256_file(photo["path"])
    path = core.photo_path(sha)
    assert path is not None, "the captured photo is not under its own hash"
    return sha


def test_h_retention_removes_only_confirmed_photos(server, proxy, lead, qhl02, small_photo, tmp_path):
    data_dir = tmp_path / "phone"
    core = rc.Core.open(str(data_dir), options())
    proxy.up()
    run(core.login(proxy.url, "zhangwei", server.password, "pytest phone (retention)"))
    run(core.sync(None, rc.Network.UNMETERED))

    a = small_photo("confirmed")
    issue_a = report_photo(core, qhl02, a, "路边垃圾 litter by the path (sent)", category="litter", vertex=1)
    sha_a = stored_sha(core, a)
    out = run(core.sync(None, rc.Network.UNMETERED))
    assert variant(out.stopped) == "COMPLETED" and out.photos_uploaded == 1
    assert lead.issue(issue_a)["photos_arrived"] == 1
    # Confirmed, but within the default retention (7 days) and budget: still on the device.
    path_a = core.photo_path(sha_a)
    assert path_a is not None and Path(path_a).is_file()
    assert core.prune_photos() == 0
    assert Path(path_a).is_file()

    proxy.down()
    try:
        b = small_photo("unsent")
        report_photo(core, qhl02, b, "路边垃圾 litter by the path (no signal)", category="litter", vertex=1)
        sha_b = stored_sha(core, b)
        with pytest.raises(rc.CoreError.Network):
            run(core.sync(None, rc.Network.UNMETERED))
        assert core.status().pending_photos == 1

        # The app comes back with a retention of zero.
        del core
        gc.collect()
        core = rc.Core.open(str(data_dir), options(photo_retention_ms=0))
        assert core.prune_photos() == 1
        assert core.photo_path(sha_a) is None
        assert not Path(path_a).exists()
        path_b = core.photo_path(sha_b)
        assert path_b is not None and Path(path_b).is_file()
        assert h.sha256_file(path_b) == sha_b
        assert core.prune_photos() == 0
        assert core.status().pending_photos == 1
    finally:
        proxy.up()

    # Online again: the waiting photo goes, and with retention zero the sync's own pruning
    # removes it once the server confirmed it.
    out = run(core.sync(None, rc.Network.UNMETERED))
    assert variant(out.stopped) == "COMPLETED" and out.photos_uploaded == 1
    assert lead.head(f"/api/v1/photos/{sha_b}") == 200
    assert core.photo_path(sha_b) is None
    assert not Path(path_b).exists()


def test_h_budget_removes_confirmed_photos_after_sync_never_unsent(server, proxy, lead, qhl02, small_photo, tmp_path):
    core = rc.Core.open(str(tmp_path / "phone"), options(photo_budget_bytes=1))
    proxy.up()
    run(core.login(proxy.url, "zhangwei", server.password, "pytest phone (budget)"))
    run(core.sync(None, rc.Network.UNMETERED))

    proxy.down()
    try:
        c = small_photo("budget-unsent")
        report_photo(core, qhl02, c, "漂浮物 floating debris (no signal)", category="litter", vertex=1)
        sha_c = stored_sha(core, c)
        # Over the budget, but unsent: kept.
        assert core.prune_photos() == 0
        assert core.photo_path(sha_c) is not None
    finally:
        proxy.up()
    # Metered: the record goes, the photo waits, and stays on the device.
    out = run(core.sync(None, rc.Network.METERED))
    assert variant(out.stopped) == "PHOTOSWAITFORUNMETERED"
    assert core.prune_photos() == 0
    assert core.photo_path(sha_c) is not None

    # Unmetered: sent, confirmed, and over the budget: gone after the sync.
    out = run(core.sync(None, rc.Network.UNMETERED))
    assert variant(out.stopped) == "COMPLETED" and out.photos_uploaded == 1
    assert lead.head(f"/api/v1/photos/{sha_c}") == 200
    assert core.photo_path(sha_c) is None
