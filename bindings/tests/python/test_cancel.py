"""Cancel from another thread mid-push (f): a big backlog over a slow link, `cancel_sync()` from the
test's thread while the sync runs in another; then a sync that finishes with every kept fix on the
server exactly once."""

from __future__ import annotations

import threading
import time

import pytest

import rc_helpers as h
from rc_core import Recorder, fix, options, run, state, variant

rc = pytest.importorskip("riverchief_ffi")

FIXES = 3000
BATCH = 50


def test_f_cancel_mid_push_then_finish_without_doubles(server, proxy, lead, qhl02, tmp_path):
    core = rc.Core.open(str(tmp_path / "phone"), options(fix_batch_size=BATCH, fix_batch_age_ms=3_600_000))
    listener = Recorder()
    core.set_listener(listener)
    try:
        run(core.login(proxy.url, "zhangwei", server.password, "pytest phone (cancel)"))
        assert variant(run(core.sync(None, rc.Network.UNMETERED)).stopped) == "COMPLETED"
        assert core.cancel_sync() is False  # nothing runs

        _, line = qhl02
        walk = h.walk(line, 4.0, back_and_forth=20)
        assert len(walk) >= FIXES
        pid = core.start_patrol(["QHL-02"], None, "长巡 long patrol")
        t0 = int(time.time() * 1000) - FIXES * 1000 - 60_000
        times = []
        for i in range(FIXES):
            f = fix(t0 + i * 1000, *walk[i])
            assert variant(core.record_fix(pid, f)) == "KEPT"
            times.append(f.time_ms)
        core.finish_patrol(pid, None)
        pending = core.status().pending_mutations
        assert pending == FIXES // BATCH + 2  # start, 60 batches, finish

        # A hard throttle: the push cannot finish for many seconds.
        proxy.throttle(4_000)
        result: dict = {}

        def background():
            try:
                result["outcome"] = run(core.sync(None, rc.Network.UNMETERED), timeout=120)
            except Exception as e:  # noqa: BLE001 - reported below
                result["error"] = e

        last_seq = core.status().seq
        bytes_before = proxy.bytes_up
        worker = threading.Thread(target=background)
        worker.start()
        listener.wait_for(lambda s: s.seq > last_seq and state(s) == "SYNCING", timeout=10, what="syncing")
        # The push request is on its way (some of it went through the proxy).
        h.wait_until(lambda: proxy.bytes_up > bytes_before, timeout=10, what="the push to start")
        time.sleep(0.2)
        cancelled_at = time.monotonic()
        assert core.cancel_sync() is True
        worker.join(timeout=30)
        assert not worker.is_alive(), "sync did not return within 30 s of cancel_sync()"
        took = time.monotonic() - cancelled_at
        proxy.throttle(None)
        assert "error" not in result, f"a cancelled sync raised {result.get('error')!r}"
        outcome = result["outcome"]
        assert variant(outcome.stopped) == "CANCELLED"
        assert took < 5, f"the sync took {took:.1f} s to stop after cancel_sync()"
        st = core.status()
        assert state(st) != "SYNCING"
        assert outcome.left.mutations == st.pending_mutations
        assert outcome.left.mutations + outcome.pushed == pending
        assert core.cancel_sync() is False
        print(f"cancelled after {took:.2f} s: pushed {outcome.pushed}, left {outcome.left.mutations} of {pending}")

        # Whatever reached the server before the cancel is there once; the rest follows now.
        outcome2 = run(core.sync(None, rc.Network.UNMETERED), timeout=120)
        assert variant(outcome2.stopped) == "COMPLETED"
        assert outcome2.rejected == 0
        assert outcome2.pushed + outcome2.duplicates == outcome.left.mutations
        assert outcome.pushed + outcome2.pushed + outcome2.duplicates == pending
        track = lead.patrol(pid)
        assert track["patrol"]["point_count"] == FIXES
        assert h.point_times(track) == times
        assert track["patrol"]["ended_at"] is not None
        assert core.status().pending_mutations == 0
    finally:
        proxy.throttle(None)
        core.clear_listener()
