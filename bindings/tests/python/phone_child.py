"""A phone app process for the kill test (test_kill.py): runs one step on a data directory through the
bindings and reports on stdout, one JSON object a line.

    phone_child.py prepare DATA_DIR SERVER_URL PASSWORD PHOTO LINE_JSON FIXES
        log in, pull, record a patrol of FIXES fixes along the line and finish it, report an issue
        with the photo; prints {"event": "prepared", ...} and exits.
    phone_child.py sync DATA_DIR
        prints {"event": "sync-start"}, every status the listener gets ({"event": "status", ...}),
        then {"event": "done", ...} or {"event": "error", ...}.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import riverchief_ffi as rc

from rc_core import fix, options, run, state, variant

_out = threading.Lock()


def say(**obj):
    with _out:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


class Printer(rc.StatusListener):
    def on_status(self, status):
        say(
            event="status",
            seq=status.seq,
            state=state(status),
            pending_mutations=status.pending_mutations,
            pending_urgent=status.pending_urgent,
            pending_photos=status.pending_photos,
            upload=None if status.upload is None else [status.upload.sent, status.upload.total],
        )


def prepare(data_dir, url, password, photo, line_json, n):
    core = rc.Core.open(data_dir, options(fix_batch_size=50, fix_batch_age_ms=3_600_000, photo_jpeg_quality=95))
    run(core.login(url, "zhangwei", password, "pytest phone (killed)"))
    run(core.sync(None, rc.Network.UNMETERED))
    positions = json.loads(line_json)
    pid = core.start_patrol(["QHL-02"], None, None)
    t0 = int(time.time() * 1000) - n * 1000 - 60_000
    kept = []
    for i in range(n):
        lon, lat = positions[i]
        f = fix(t0 + i * 1000, lon, lat)
        if variant(core.record_fix(pid, f)) in ("KEPT", "KEPTMOCK"):
            kept.append(f.time_ms)
    core.finish_patrol(pid, None)
    lon, lat = positions[len(positions) // 2]
    iid = run(core.report_issue(
        rc.IssueDraft(
            segment="QHL-02", patrol_id=pid, lon=lon, lat=lat, crs=rc.Crs.WGS84,
            category="seepage", severity=2, outflow=None,
            description="背水坡渗水 seepage on the landside slope (kill test)",
            photo_paths=[photo],
        )
    ))
    st = core.status()
    say(event="prepared", patrol_id=pid, issue_id=iid, kept_times=kept,
        pending_mutations=st.pending_mutations, pending_photos=st.pending_photos,
        pending_photo_bytes=st.pending_photo_bytes)


def sync(data_dir):
    core = rc.Core.open(data_dir, options())
    core.set_listener(Printer())
    say(event="sync-start")
    try:
        out = run(core.sync(None, rc.Network.UNMETERED), timeout=300)
    except rc.CoreError as e:
        say(event="error", kind=type(e).__name__, detail=str(e))
        return 1
    st = core.status()
    say(event="done", stopped=variant(out.stopped), pushed=out.pushed, duplicates=out.duplicates,
        rejected=out.rejected, photos_uploaded=out.photos_uploaded, bytes_uploaded=out.bytes_uploaded,
        left=[out.left.mutations, out.left.urgent, out.left.photos, out.left.photo_bytes],
        status=[state(st), st.pending_mutations, st.pending_urgent, st.pending_photos])
    core.clear_listener()
    return 0


def main(argv):
    if argv[1] == "prepare":
        prepare(argv[2], argv[3], argv[4], argv[5], argv[6], int(argv[7]))
        return 0
    if argv[1] == "sync":
        return sync(argv[2])
    raise SystemExit(f"unknown step {argv[1]!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
