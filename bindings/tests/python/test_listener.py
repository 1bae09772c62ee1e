"""Listener order (i): statuses come in the order the states happened, each change once; a listener
registered while a sync runs first gets the current status (syncing) and then every later change,
the same ones a listener registered from the start sees."""

from __future__ import annotations

import threading
import time

import pytest

import rc_helpers as h
from rc_core import Recorder, assert_consecutive, options, report_photo, run, state, variant

rc = pytest.importorskip("riverchief_ffi")


def collapse(names):
    out = []
    for n in names:
        if not out or out[-1] != n:
            out.append(n)
    return out


def slow_sync(core, proxy, rate):
    """Starts an unmetered sync in a thread over a link throttled to `rate` bytes/s."""
    proxy.throttle(rate)
    result = {}

    def go():
        try:
            result["outcome"] = run(core.sync(None, rc.Network.UNMETERED), timeout=90)
        except Exception as e:  # noqa: BLE001 - asserted by the caller
            result["error"] = e

    worker = threading.Thread(target=go)
    worker.start()
    return worker, result


def test_i_listener_order_and_late_registration(server, proxy, lead, qhl02, small_photo, tmp_path):
    core = rc.Core.open(str(tmp_path / "phone"), options())
    from_start = Recorder()
    core.set_listener(from_start)
    try:
        run(core.login(proxy.url, "zhangwei", server.password, "pytest phone (listener)"))
        run(core.sync(None, rc.Network.UNMETERED))

        # A sync watched from the start: the control. The photo (2.6 MB, upright, not over the
        # longest edge: sent as taken) is larger than what the HTTP stack and the kernel buffer at
        # once, so the progress shows on its way.
        p1 = small_photo("control", 2560, 1920, quality=95)
        size = p1["size"]
        report_photo(core, qhl02, p1, "渗水 seepage (control)")
        seq0 = core.status().seq
        worker, result = slow_sync(core, proxy, size / 2.5)
        worker.join(timeout=60)
        proxy.throttle(None)
        assert not worker.is_alive() and "error" not in result, result
        assert variant(result["outcome"].stopped) == "COMPLETED"
        end = core.status()
        from_start.wait_seq(end.seq)
        control = [e for e in from_start.events if e.seq > seq0]
        assert_consecutive(from_start.events, "listener from the start")
        assert collapse([state(e) for e in control]) == ["SYNCING", "IDLE"], collapse([state(e) for e in control])
        sent = [e.upload.sent for e in control if e.upload is not None]
        assert sent and sent == sorted(sent) and any(0 < s < size for s in sent), sent
        assert control[-1].seq == end.seq and control[-1].pending_photos == 0

        # The same again, with a second listener registered once the upload is under way.
        p2 = small_photo("late", 2560, 1920, quality=95)
        report_photo(core, qhl02, p2, "渗水 seepage (late listener)")
        seq1 = core.status().seq
        worker, result = slow_sync(core, proxy, size / 2.5)
        try:
            from_start.wait_for(lambda e: e.seq > seq1 and e.upload is not None and e.upload.sent > 0,
                                timeout=20, what="upload progress")
            late = Recorder()
            core.set_listener(late)
            registered_after = from_start.last().seq
            first = late.wait_for(lambda e: True, timeout=10, what="the current status")
        finally:
            worker.join(timeout=60)
            proxy.throttle(None)
        assert not worker.is_alive() and "error" not in result, result
        assert variant(result["outcome"].stopped) == "COMPLETED"
        end = core.status()
        late.wait_seq(end.seq)
        time.sleep(0.2)
        events = late.events

        assert state(first) == "SYNCING"
        assert first.upload is not None and first.upload.sent > 0
        assert first.seq >= registered_after
        assert_consecutive(events, "late listener")
        assert collapse([state(e) for e in events]) == ["SYNCING", "IDLE"]
        assert events[-1].seq == end.seq
        assert (events[-1].pending_photos, events[-1].pending_mutations) == (0, 0)
        assert events[-1].last_sync_ms is not None
        # The first listener was replaced: it got nothing after the late one's first status.
        assert all(e.seq <= first.seq for e in from_start.events)
        late_sent = [e.upload.sent for e in events if e.upload is not None]
        assert late_sent == sorted(late_sent)

        # Cleared: no more statuses, though the status changes.
        core.clear_listener()
        n = len(late.events)
        before = core.status().seq
        core.start_patrol(["QHL-02"], None, None)
        assert core.status().seq > before
        time.sleep(0.3)
        assert len(late.events) == n
        assert len(set(late.threads)) == 1 and threading.main_thread().ident not in late.threads
    finally:
        proxy.throttle(None)
        core.clear_listener()
