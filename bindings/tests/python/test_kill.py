"""kill -9 mid-sync (g): a phone app process syncing a backlog and a photo is killed twice, once
after the server applied its push but before the answer reached it, once mid-photo; a fresh process
on the same data directory then finishes, and the server has every point once, the issue once and
the photo."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import rc_helpers as h

rc = pytest.importorskip("riverchief_ffi")

HERE = Path(__file__).resolve().parent
CHILD = HERE / "phone_child.py"
FIXES = 400


class Child:
    """A phone_child.py process whose JSON lines are read as they come."""

    def __init__(self, *args: str):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        self.lines: "queue.Queue[dict | None]" = queue.Queue()
        self.seen: list[dict] = []
        self.stderr = b""
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for raw in self.proc.stdout:
            try:
                self.lines.put(json.loads(raw))
            except json.JSONDecodeError:
                self.lines.put({"event": "noise", "text": raw.decode("utf-8", "replace")})
        self.lines.put(None)

    def _read_err(self):
        self.stderr = self.proc.stderr.read()

    def until(self, predicate, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"child: no {what} within {timeout} s; last lines {self.seen[-5:]}")
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=10)
                raise AssertionError(
                    f"child exited ({self.proc.returncode}) before {what}; last lines {self.seen[-5:]}; "
                    f"stderr {self.stderr[-2000:]!r}"
                )
            self.seen.append(line)
            if predicate(line):
                return line

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=10) == -signal.SIGKILL

    def finish(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        return code


def test_g_kill9_mid_sync_then_a_fresh_process_finishes(server, proxy, lead, qhl02, phone_photo, tmp_path):
    data_dir = str(tmp_path / "phone")
    _, line = qhl02
    positions = h.walk(line, 4.0, back_and_forth=4)[:FIXES]
    assert len(positions) == FIXES

    prep = Child("prepare", data_dir, proxy.url, server.password, str(phone_photo["path"]),
                 json.dumps(positions), str(FIXES))
    prepared = prep.until(lambda l: l["event"] == "prepared", 120, "prepared")
    assert prep.finish(30) == 0
    kept = prepared["kept_times"]
    assert len(kept) == FIXES
    mutations = prepared["pending_mutations"]
    assert mutations == 1 + FIXES // 50 + 1 + 1  # start, batches, finish, report
    size = prepared["pending_photo_bytes"]
    assert prepared["pending_photos"] == 1 and size > 0

    # 1. The server applies the push; its answer never reaches the phone, which is killed.
    proxy.hold_answers(True)
    try:
        a = Child("sync", data_dir)
        a.until(lambda l: l["event"] == "sync-start", 30, "sync-start")
        a.until(lambda l: l["event"] == "status" and l["state"] == "SYNCING", 30, "syncing")

        def applied():
            status, body, _ = lead.get(f"/api/v1/patrols/{prepared['patrol_id']}")
            if status != 200:
                return False
            return json.loads(body)["patrol"]["point_count"] == FIXES and \
                lead.get(f"/api/v1/issues/{prepared['issue_id']}")[0] == 200

        h.wait_until(applied, timeout=30, interval=0.1, what="the server to apply the push")
        a.kill9()
    finally:
        proxy.hold_answers(False)
        proxy.cut_all()
    assert lead.head(f"/api/v1/photos/{lead.issue(prepared['issue_id'])['photos'][0]['sha256']}") == 404

    # 2. A second process replays the push (duplicates) and is killed mid-photo.
    proxy.throttle(max(100_000, size / 5))
    try:
        b = Child("sync", data_dir)
        b.until(lambda l: l["event"] == "sync-start", 30, "sync-start")
        b.until(lambda l: l["event"] == "status" and l["upload"] is not None and l["upload"][0] > 0,
                60, "the photo upload to start")
        # Killed once a good part of the photo went through the proxy to the server.
        mark = proxy.bytes_up
        h.wait_until(lambda: proxy.bytes_up >= mark + min(300_000, size // 3), timeout=30, interval=0.01,
                     what="photo bytes to reach the server")
        assert b.proc.poll() is None, "the sync ended before it was killed"
        b.kill9()
    finally:
        proxy.throttle(None)
    b_statuses = [l for l in b.seen if l["event"] == "status"]
    first_upload = next(i for i, l in enumerate(b_statuses) if l["upload"] is not None)
    # Records and photos go side by side (issue 12's lanes); only critical hazards' records, and
    # their photos, go before everything else: no urgent record waits behind a photo.
    assert b_statuses[first_upload]["pending_urgent"] == 0, "a photo went before an urgent record"
    time.sleep(0.5)  # the server stores what arrived of the cut upload

    # 3. A fresh process finishes: nothing left, nothing doubled, the photo resumed.
    c = Child("sync", data_dir)
    done = c.until(lambda l: l["event"] in ("done", "error"), 120, "the end of the sync")
    assert done["event"] == "done", done
    assert c.finish(30) == 0
    assert done["stopped"] == "COMPLETED"
    assert done["pushed"] == 0 and done["rejected"] == 0
    assert done["photos_uploaded"] == 1
    assert 0 < done["bytes_uploaded"] < size, done
    print(f"fresh process after two kills: {done}")
    assert done["left"] == [0, 0, 0, 0]
    assert done["status"] == ["IDLE", 0, 0, 0]

    track = lead.patrol(prepared["patrol_id"])
    assert track["patrol"]["point_count"] == FIXES
    assert h.point_times(track) == kept
    assert track["patrol"]["ended_at"] is not None
    listed = lead.json("/api/v1/issues?segment=QHL-02&limit=500")
    mine = [i for i in listed["issues"] if "kill test" in i["description"]]
    assert [i["id"] for i in mine] == [prepared["issue_id"]]
    issue = mine[0]
    assert issue["photos_expected"] == 1 and issue["photos_arrived"] == 1
    sha = issue["photos"][0]["sha256"]
    data = lead.photo(sha)
    assert h.hashlib.sha256(data).hexdigest() == sha and len(data) == size
