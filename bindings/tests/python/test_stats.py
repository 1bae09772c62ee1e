"""A patroller's own figures on the phone (`Core.stats`): what this phone recorded in a period,
offline, computed here again from the fixes recorded; a period that is not one is refused naming it."""

from __future__ import annotations

import time

import pytest

import rc_helpers as h
from rc_core import fix, options, run, variant

rc = pytest.importorskip("riverchief_ffi")


def test_stats_count_what_this_phone_recorded(server, proxy, qhl02, tmp_path):
    core = rc.Core.open(str(tmp_path / "stats-phone"), options())
    run(core.login(proxy.url, "lina", server.password, "pytest phone (stats)"))
    run(core.sync(None, rc.Network.UNMETERED))
    _, line = qhl02
    before = core.stats(None)
    pid = core.start_patrol(["QHL-02"], None, None)
    pts = h.walk(line, 25.0)[:8]
    t0 = int(time.time() * 1000) - 60_000
    kept = []
    for i, (lon, lat) in enumerate(pts):
        if variant(core.record_fix(pid, fix(t0 + i * 5_000, lon, lat))) == "KEPT":
            kept.append((lon, lat))
    core.finish_patrol(pid, None)
    lon, lat = line[1]
    run(core.report_issue(rc.IssueDraft(
        segment="QHL-02", patrol_id=pid, lon=lon, lat=lat, crs=rc.Crs.WGS84, category="litter",
        severity=1, outflow=None, description="堤顶垃圾 litter", photo_paths=[])))
    core.start_patrol(["QHL-02"], None, None)

    s = core.stats(None)
    assert s.period == time.strftime("%Y-%m", time.gmtime(time.time() + 8 * 3600))
    assert s.to_ms - s.from_ms >= 28 * 86_400_000
    assert s.patrols == before.patrols + 1
    assert s.open == before.open + 1
    assert s.long_enough == before.long_enough, "a minute's walk is not a check"
    assert s.issues == before.issues + 1
    assert s.by_category.get("litter", 0) == before.by_category.get("litter", 0) + 1
    walked = sum(h.distance_m(a, b) for a, b in zip(kept, kept[1:])) / 1000.0
    # The core measures on the ellipsoid, this test on a sphere: within half a per cent.
    assert abs((s.km - before.km) - walked) <= 0.005 * walked, (s.km, before.km, walked)
    # Started and finished within the test: seconds of hours at most.
    assert 0 <= s.hours - before.hours < 0.01
    # The same figures by an explicit period, and a period that is not one.
    assert core.stats(s.period) == s
    with pytest.raises(rc.CoreError.Invalid) as err:
        core.stats("2024-13")
    assert err.value.field == "period"
