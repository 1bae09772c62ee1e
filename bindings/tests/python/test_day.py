"""A patroller's day through the bindings only, in order: log in and pull (a), record a patrol with
no signal (b), report muddy piping with a 6 MB photo (c), a metered link (d), a deadline that expires
mid-photo and a sync that finishes it (e). What arrived is checked as the duty lead over plain HTTP.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

import rc_helpers as h
from rc_core import Recorder, fix, options, run, state, variant

rc = pytest.importorskip("riverchief_ffi")

BATCH = 50


class Day:
    """What the steps of the day hand to each other."""

    core = None
    listener: Recorder | None = None
    patrol_id: str | None = None
    issue_id: str | None = None
    sent_times: list[int] = []
    outcomes: list = []
    photo_sha: str | None = None
    photo_size: int = 0
    mutations_expected = 0


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    d = Day()
    d.data_dir = tmp_path_factory.mktemp("phone")
    d.core = rc.Core.open(
        str(d.data_dir),
        # JPEG quality 95 for the shrunk photo: about 2 MB, more than the HTTP stack and the
        # kernel take into their buffers at once, so progress and a cut mid-photo are real.
        options(fix_batch_size=BATCH, fix_batch_age_ms=3_600_000, still_keep_ms=10_500, retry_attempts=2,
                photo_jpeg_quality=95),
    )
    d.listener = Recorder()
    d.core.set_listener(d.listener)
    yield d
    d.core.clear_listener()


def test_a_login_and_first_sync_pulls_segments(day, server, proxy):
    core = day.core
    assert core.me() is None
    # Registered before anything happened: the first status is the current one, signed out.
    first = day.listener.wait_for(lambda s: True, what="the current status")
    assert state(first) == "SIGNEDOUT"
    assert first.seq <= core.status().seq

    user = run(core.login(proxy.url, "zhangwei", server.password, "pytest phone"))
    assert user.username == "zhangwei"
    assert user.role == "patroller"
    assert user.display_name.startswith("张伟")
    me = core.me()
    assert me is not None and me.id == user.id and me.username == "zhangwei"

    assert state(core.status()) != "SIGNEDOUT"
    assert all(s.code != "QHL-02" for s in core.segments())  # nothing pulled yet
    outcome = run(core.sync(None, rc.Network.UNMETERED))
    assert variant(outcome.stopped) == "COMPLETED"
    assert outcome.pulled > 0
    segs = {s.code: s for s in core.segments()}
    assert {"QHL-01", "QHL-02", "QHL-03"} <= set(segs)
    q = segs["QHL-02"]
    assert q.chainage_start_m == pytest.approx(847.0)
    assert 600 < q.length_m < 700
    assert q.chainage_end_m == pytest.approx(q.chainage_start_m + q.length_m, abs=0.5)
    assert q.name.startswith("清凉门大桥")
    st = core.status()
    assert state(st) == "IDLE"
    assert st.last_sync_ms is not None and abs(st.last_sync_ms - time.time() * 1000) < 60_000
    assert st.pending_mutations == 0 and st.pending_photos == 0
    cats = {c.code: c for c in rc.issue_categories()}
    assert "piping" in cats and cats["piping"].label_zh and cats["piping"].label_en


def test_b_patrol_with_no_signal(day, proxy, qhl02):
    core, listener = day.core, day.listener
    proxy.down()
    seg_id, line = qhl02
    before = core.status().pending_mutations
    day.patrol_id = pid = core.start_patrol(["QHL-02"], "小雨 light rain", None)
    info = core.patrol(pid)
    assert info.segment_ids == [seg_id]
    assert info.ended_at_ms is None and info.fixes_kept == 0
    assert core.status().pending_mutations == before + 1  # patrol.start

    # ~300 fixes, 1 s apart, walking QHL-02 there and back in 4 m steps (the rule's 3 m is
    # "standing still"), with a duplicate, an inaccurate fix, a mock fix and a stop at a boil.
    positions = h.walk(line, 4.0, back_and_forth=2)
    assert 290 <= len(positions) <= 340, len(positions)
    t0 = int(time.time() * 1000) - 600_000
    t = t0
    kept_times: list[int] = []
    kept = 0
    pending_seen = []
    specials = {"dup": 0, "inacc": 0, "mock": 0, "still": 0, "still_kept": 0}
    last_kept_fix = None

    def record(f, expected):
        nonlocal kept, last_kept_fix
        got = core.record_fix(pid, f)
        assert variant(got) == expected, f"fix at t={f.time_ms - t0} ms: {variant(got)}, expected {expected}"
        day.outcomes.append(variant(got))
        if expected in ("KEPT", "KEPTMOCK"):
            kept += 1
            kept_times.append(f.time_ms)
            last_kept_fix = f
        st = core.status()
        assert st.pending_mutations == before + 1 + kept // BATCH, (kept, st.pending_mutations)
        pending_seen.append(st.pending_mutations)

    for i, (lon, lat) in enumerate(positions):
        t += 1000
        if i == 20:
            record(fix(t, lon, lat, accuracy_m=500.0), "DROPPEDINACCURATE")
            specials["inacc"] += 1
            continue
        if i == 40:
            record(fix(t, lon, lat, mock=True), "KEPTMOCK")
            specials["mock"] += 1
            continue
        f = fix(t, lon, lat, accuracy_m=None if i % 7 == 3 else 4.0 + (i % 5))
        record(f, "KEPT")
        if i == 10:
            # The location API hands over the same fix twice.
            record(fix(f.time_ms, f.lon, f.lat, f.accuracy_m), "DROPPEDDUPLICATE")
            specials["dup"] += 1
        if i == 100:
            # Stops at a boil: 15 fixes within a metre. still_keep is 10.5 s: the 11th is kept.
            for k in range(1, 16):
                t += 1000
                p = h.jitter((lon, lat), 0.6, k)
                expected = "KEPT" if k == 11 else "DROPPEDSTILL"
                record(fix(t, p[0], p[1]), expected)
                specials["still_kept" if expected == "KEPT" else "still"] += 1
    total = len(day.outcomes)
    assert 300 <= total <= 360
    assert specials == {"dup": 1, "inacc": 1, "mock": 1, "still": 14, "still_kept": 1}

    info = core.patrol(pid)
    assert info.fixes_kept == kept
    assert info.fixes_mock == 1
    assert info.fixes_dropped == total - kept
    assert info.fixes_unbatched == kept % BATCH
    assert variant(info.sync.state) == "WAITING"
    # The pending count grew one mutation per 50 kept fixes.
    assert sorted(set(pending_seen)) == list(range(before + 1, before + 2 + kept // BATCH))

    core.finish_patrol(pid, "堤身完好 bank intact")
    info = core.patrol(pid)
    assert info.ended_at_ms is not None and info.fixes_unbatched == 0
    n_batches = (kept + BATCH - 1) // BATCH
    assert core.status().pending_mutations == before + 1 + n_batches + 1
    day.mutations_expected = 1 + n_batches + 1
    day.sent_times = kept_times

    # The listener saw the pending count grow with every batch (a status change each time).
    want = core.status().pending_mutations
    listener.wait_for(lambda s: s.pending_mutations == want, what=f"pending_mutations == {want}")
    counts = sorted({s.pending_mutations for s in listener.events})
    # (finish_patrol queues the last batch and patrol.finish in one transaction: one change.)
    assert set(range(before + 1, before + 2 + kept // BATCH)) | {want} <= set(counts), counts

    # No signal: the sync fails as a network error, the listener sees syncing then offline.
    mark = len(listener.events)
    started = time.monotonic()
    with pytest.raises(rc.CoreError.Network) as err:
        run(core.sync(None, rc.Network.UNMETERED), timeout=60)
    assert time.monotonic() - started < 30
    assert err.value.retryable is True
    assert err.value.detail and err.value.detail_zh
    listener.wait_for(lambda s: state(s) == "OFFLINE", what="offline")
    later = [state(s) for s in listener.events[mark:]]
    assert "SYNCING" in later and "OFFLINE" in later[later.index("SYNCING"):], later
    st = core.status()
    assert state(st) == "OFFLINE"
    assert st.pending_mutations == want
    assert st.last_error_en and st.last_error_zh


def test_c_report_muddy_piping_with_a_6mb_photo_offline(day, proxy, qhl02, phone_photo):
    core = day.core
    _, line = qhl02
    lon, lat = h.walk(line, 4.0)[90]
    before = core.status()
    assert before.pending_urgent == 0 and before.pending_photos == 0
    day.issue_id = iid = run(core.report_issue(
        rc.IssueDraft(
            segment="QHL-02",
            patrol_id=day.patrol_id,
            lon=lon,
            lat=lat,
            crs=rc.Crs.WGS84,
            category="piping",
            severity=3,
            outflow="muddy",
            description="堤脚管涌，浑水涌出 muddy piping at the toe of the levee",
            photo_paths=[str(phone_photo["path"])],
        )
    ))
    st = core.status()
    assert st.pending_urgent == 1
    assert st.pending_photos == 1
    assert 0 < st.pending_photo_bytes < phone_photo["size"], "the photo was not shrunk at capture"
    day.photo_size = st.pending_photo_bytes
    rows = core.my_issues()
    assert rows[0].id == iid
    row = rows[0]
    assert row.critical is True
    assert row.category == "piping" and row.severity == 3
    assert row.status is None
    assert variant(row.sync.state) == "WAITING"
    assert (row.sync.photos_sent, row.sync.photos_total) == (0, 1)
    assert row.sync.text_en == "waiting" and row.sync.text_zh == "待发送"
    # The original is untouched: the shrunk copy is the photo.
    assert phone_photo["path"].stat().st_size == phone_photo["size"]


def test_d_metered_link_records_go_photo_waits(day, proxy, lead):
    core, listener = day.core, day.listener
    proxy.up()
    outcome = run(core.sync(None, rc.Network.METERED))
    assert variant(outcome.stopped) == "PHOTOSWAITFORUNMETERED"
    assert outcome.pushed == day.mutations_expected + 1  # the patrol's and the report
    assert outcome.rejected == 0 and outcome.duplicates == 0
    assert outcome.photos_uploaded == 0 and outcome.bytes_uploaded == 0
    assert outcome.left.mutations == 0 and outcome.left.urgent == 0
    assert outcome.left.photos == 1 and outcome.left.photo_bytes == day.photo_size

    track = lead.patrol(day.patrol_id)
    assert track["patrol"]["point_count"] == len(day.sent_times)
    assert h.point_times(track) == day.sent_times  # every kept fix once, in order
    assert track["patrol"]["ended_at"] is not None
    issue = lead.issue(day.issue_id)
    assert issue["category"] == "piping" and issue["outflow"] == "muddy" and issue["severity"] == 3
    assert issue["critical"] is True
    assert issue["patrol_id"] == day.patrol_id
    assert issue["photos_expected"] == 1 and issue["photos_arrived"] == 0
    assert 847 <= issue["chainage_m"] <= 847 + 700
    day.photo_sha = sha = issue["photos"][0]["sha256"]
    assert lead.head(f"/api/v1/photos/{sha}") == 404

    # The device keeps the shrunk photo under that hash.
    local = core.photo_path(sha)
    assert local is not None and Path(local).is_file()
    assert h.sha256_file(local) == sha
    assert Path(local).stat().st_size == day.photo_size

    row = next(r for r in core.my_issues() if r.id == day.issue_id)
    assert variant(row.sync.state) == "PHOTOSPENDING"
    assert (row.sync.photos_sent, row.sync.photos_total) == (0, 1)
    assert row.sync.text_en == "0 of 1 photos" and row.sync.text_zh == "照片 0/1"
    assert variant(core.patrol(day.patrol_id).sync.state) == "SENT"
    st = core.status()
    assert st.pending_mutations == 0 and st.pending_urgent == 0 and st.pending_photos == 1
    assert state(st) == "IDLE"


def test_e_deadline_expires_mid_photo_then_it_finishes(day, proxy, lead, phone_photo):
    core, listener = day.core, day.listener
    size = day.photo_size
    # About four seconds for the photo on this link.
    proxy.throttle(max(64_000, size / 4))
    mark = len(listener.events)
    started = time.monotonic()
    outcome = run(core.sync(800, rc.Network.UNMETERED), timeout=30)
    elapsed = time.monotonic() - started
    proxy.throttle(None)
    assert variant(outcome.stopped) == "DEADLINE"
    assert elapsed < 2 * 0.8 + 1, f"a sync with an 800 ms deadline took {elapsed:.2f} s"
    assert outcome.photos_uploaded == 0
    assert outcome.left.photos == 1
    uploads = [s.upload for s in listener.events[mark:] if s.upload is not None]
    assert uploads, "the listener saw no upload progress"
    assert all(u.sha256 == day.photo_sha and u.total == size for u in uploads)
    assert any(0 < u.sent < u.total for u in uploads), [(u.sent, u.total) for u in uploads]
    assert lead.head(f"/api/v1/photos/{day.photo_sha}") == 404
    assert core.photo_path(day.photo_sha) is not None  # unsent: kept
    print(f"deadline sync: {elapsed:.2f} s; photo {size} bytes; progress seen {[u.sent for u in uploads]}")

    time.sleep(0.5)  # the server stores what arrived of the cut request
    mark = len(listener.events)
    outcome = run(core.sync(None, rc.Network.UNMETERED), timeout=60)
    assert variant(outcome.stopped) == "COMPLETED"
    assert outcome.photos_uploaded == 1
    assert 0 < outcome.bytes_uploaded < size, f"resumed upload sent {outcome.bytes_uploaded} of {size}"
    assert outcome.left.photos == 0 and outcome.left.mutations == 0
    resumed = [s.upload for s in listener.events[mark:] if s.upload is not None]
    assert resumed and resumed[0].sent > 0, "the second sync started the photo from 0"
    print(f"second sync: resumed at {resumed[0].sent}, sent {outcome.bytes_uploaded} of {size} bytes")

    data = lead.photo(day.photo_sha)
    assert h.hashlib.sha256(data).hexdigest() == day.photo_sha
    assert len(data) == size < phone_photo["size"]
    info = h.image_info(data)
    assert info["format"] == "JPEG"
    assert max(info["width"], info["height"]) <= 2560
    # Stored landscape with orientation 6: upright, it is portrait, the pixels turned, the tag reset.
    assert info["height"] > info["width"], (info["width"], info["height"])
    assert info["orientation"] in (None, 1)
    assert (info["width"], info["height"]) == (1920, 2560)
    # Rotating 90 degrees clockwise takes the stored top-left corner to the top-right.
    assert h.is_red(info["top_right"]) and not h.is_red(info["top_left"]), info

    issue = lead.issue(day.issue_id)
    assert issue["photos_arrived"] == 1
    row = next(r for r in core.my_issues() if r.id == day.issue_id)
    assert variant(row.sync.state) == "SENT"
    assert (row.sync.photos_sent, row.sync.photos_total) == (1, 1)
    assert row.sync.text_en == "sent" and row.sync.text_zh == "已发送"
    st = core.status()
    assert state(st) == "IDLE"
    assert (st.pending_mutations, st.pending_urgent, st.pending_photos, st.pending_photo_bytes) == (0, 0, 0, 0)
    assert st.upload is None


def test_e2_shrunk_photo_keeps_capture_time_and_position(day, lead):
    """Issue 16: shrinking keeps the capture time and position (the EXIF), orientation reset."""
    info = h.image_info(lead.photo(day.photo_sha))
    assert info["datetime_original"] == "2026:07:15 09:30:00"
    assert info["gps"].get(1) == "N" and info["gps"].get(3) == "E"


def test_listener_thread_and_order(day):
    """Every status came from one core thread, never the test's, and in order with nothing lost."""
    import threading

    from rc_core import assert_consecutive

    events = day.listener.events
    assert_consecutive(events, "the day's listener")
    threads = set(day.listener.threads)
    assert threading.main_thread().ident not in threads
    assert len(threads) == 1, f"statuses came from {len(threads)} threads"
