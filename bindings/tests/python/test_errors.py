"""The one error type: refusals on the device name the field and write nothing; a second sync at
once is Busy; signed out; a revoked device; and GCJ-02 fixes reach the server as WGS-84."""

from __future__ import annotations

import threading
import time

import pytest

import rc_helpers as h
from rc_core import Recorder, fix, options, run, state, variant

rc = pytest.importorskip("riverchief_ffi")

DEVICE = "pytest phone (errors)"


@pytest.fixture(scope="module")
def phone(server, proxy, tmp_path_factory):
    core = rc.Core.open(str(tmp_path_factory.mktemp("phone")), options())
    assert state(core.status()) == "SIGNEDOUT"
    run(core.login(proxy.url, "zhangwei", server.password, DEVICE))
    run(core.sync(None, rc.Network.UNMETERED))
    return core


def test_sync_before_any_login_is_not_logged_in(tmp_path):
    core = rc.Core.open(str(tmp_path / "fresh"), options())
    assert state(core.status()) == "SIGNEDOUT"
    with pytest.raises(rc.CoreError.NotLoggedIn) as err:
        run(core.sync(None, rc.Network.UNMETERED))
    assert err.value.retryable is False and err.value.detail_zh
    assert state(core.status()) == "SIGNEDOUT"


def draft(line, **changes):
    lon, lat = line[1]
    fields = dict(segment="QHL-02", patrol_id=None, lon=lon, lat=lat, crs=rc.Crs.WGS84,
                  category="seepage", severity=2, outflow=None, description="渗水 seepage",
                  photo_paths=[])
    fields.update(changes)
    return rc.IssueDraft(**fields)


def invalid_field(call) -> str:
    with pytest.raises(rc.CoreError.Invalid) as err:
        call()
    e = err.value
    assert e.retryable is False and e.detail and e.detail_zh
    return e.field


def test_refusals_name_the_field_and_write_nothing(phone, qhl02, tmp_path):
    core = phone
    _, line = qhl02
    before = core.status()
    assert invalid_field(lambda: core.start_patrol(["QHL-99"], None, None)) == "segment"
    assert invalid_field(lambda: core.start_patrol([], None, None)) == "segments"
    assert invalid_field(lambda: run(core.report_issue(draft(line, category="nonsense")))) == "category"
    assert invalid_field(lambda: run(core.report_issue(draft(line, severity=7)))) == "severity"
    assert invalid_field(lambda: run(core.report_issue(draft(line, category="piping", outflow="brown")))) == "outflow"
    assert invalid_field(lambda: run(core.report_issue(draft(line, segment="QHL-99")))) == "segment"
    assert invalid_field(lambda: run(core.report_issue(draft(line, description="")))).startswith("data.description")
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo at all\n" * 100)
    assert invalid_field(lambda: run(core.report_issue(draft(line, photo_paths=[str(text)])))).startswith("photo_paths")
    pid = core.start_patrol(["QHL-02"], None, None)
    assert invalid_field(lambda: core.record_fix(pid, fix(int(time.time() * 1000), line[0][0], float("nan")))) == "fix.lat"
    assert invalid_field(lambda: core.record_fix(pid, fix(int(time.time() * 1000), 200.0, line[0][1]))) == "fix.lon"
    after = core.status()
    assert after.pending_mutations == before.pending_mutations + 1  # the patrol start only
    assert after.pending_photos == before.pending_photos == 0
    assert core.patrol(pid).fixes_kept == 0 and core.patrol(pid).fixes_dropped == 0
    assert [r for r in core.my_issues()] == []


def test_missing_photo_file_is_invalid_naming_the_photo(phone, qhl02, tmp_path, small_photo):
    _, line = qhl02
    there = small_photo("there", 640, 480, quality=80)
    missing = tmp_path / "IMG_0000.jpg"
    before = phone.status().pending_mutations
    field = invalid_field(lambda: run(phone.report_issue(
        draft(line, photo_paths=[str(there["path"]), str(missing)]))))
    assert field == "photo_paths[1]"
    # Refused before anything was written.
    assert phone.status().pending_mutations == before


def test_a_second_sync_at_once_is_busy(phone, proxy, qhl02, small_photo):
    core = phone
    _, line = qhl02
    p = small_photo("busy", 2560, 1920, quality=95)
    run(core.report_issue(draft(line, photo_paths=[str(p["path"])], description="渗水 seepage (busy)")))
    listener = Recorder()
    core.set_listener(listener)
    proxy.throttle(p["size"] / 2)
    result = {}

    def go():
        result["outcome"] = run(core.sync(None, rc.Network.UNMETERED), timeout=60)

    worker = threading.Thread(target=go)
    seq = core.status().seq
    worker.start()
    try:
        listener.wait_for(lambda s: s.seq > seq and state(s) == "SYNCING", timeout=10, what="syncing")
        with pytest.raises(rc.CoreError.Busy) as err:
            run(core.sync(None, rc.Network.UNMETERED), timeout=30)
        assert err.value.retryable is True
    finally:
        worker.join(timeout=60)
        proxy.throttle(None)
        core.clear_listener()
    assert variant(result["outcome"].stopped) == "COMPLETED"
    assert result["outcome"].photos_uploaded == 1


def test_gcj02_fixes_reach_the_server_as_wgs84(phone, lead, qhl02):
    core = phone
    _, line = qhl02
    pid = core.start_patrol(["QHL-02"], None, None)
    pts = h.walk(line, 20.0)[:6]
    t0 = int(time.time() * 1000) - 60_000
    for i, (lon, lat) in enumerate(pts):
        crs = rc.Crs.GCJ02 if i % 2 else rc.Crs.WGS84
        assert variant(core.record_fix(pid, fix(t0 + i * 1000, lon, lat, crs=crs))) == "KEPT"
    core.finish_patrol(pid, None)
    assert variant(run(core.sync(None, rc.Network.UNMETERED)).stopped) == "COMPLETED"
    stored = lead.patrol(pid)["points"]
    assert len(stored) == len(pts)
    for i, (p, (lon, lat)) in enumerate(zip(stored, pts)):
        moved = h.distance_m((p["lon"], p["lat"]), (lon, lat))
        if i % 2:
            # GCJ-02 is offset by some hundreds of metres around Nanjing; the server stores WGS-84.
            assert 100 < moved < 1500, (i, moved)
        else:
            assert moved < 0.01, (i, moved)


def test_logout_keeps_queued_work_and_a_revoked_device_is_refused(phone, server, proxy, lead):
    core = phone
    me = core.me()
    assert me is not None
    pid = core.start_patrol(["QHL-02"], None, "登出前 before logout")
    pending = core.status().pending_mutations
    assert pending >= 1
    core.logout()
    assert state(core.status()) == "SIGNEDOUT"
    assert core.status().pending_mutations == pending
    with pytest.raises(rc.CoreError.NotLoggedIn):
        run(core.sync(None, rc.Network.UNMETERED))

    run(core.login(proxy.url, "zhangwei", server.password, DEVICE + " again"))
    assert core.me().id == me.id
    # An admin revokes this phone's token.
    admin = h.Http(server.url, "admin", server.password)
    devices = admin.json(f"/api/v1/users/{me.id}/devices")["devices"]
    live = [d for d in devices if d["device_name"] == DEVICE + " again" and d["revoked_at"] is None]
    assert len(live) == 1
    status, body, _ = admin._request("DELETE", f"/api/v1/devices/{live[0]['id']}", token=admin.token)
    assert status == 204, body
    with pytest.raises(rc.CoreError.DeviceRefused) as err:
        run(core.sync(None, rc.Network.UNMETERED))
    assert err.value.retryable is False
    st = core.status()
    assert state(st) == "DEVICEREFUSED"
    assert st.state.reason
    assert st.pending_mutations == pending  # nothing lost
    assert lead.get(f"/api/v1/patrols/{pid}")[0] == 404  # nothing went
