"""The generated `riverchief_ffi` module as the suite uses it: a status listener that keeps every
status it gets, names for the enum variants, and a way to run the async calls."""

from __future__ import annotations

import asyncio
import enum
import threading
import time

import riverchief_ffi as rc


def run(coro, timeout: float = 120.0):
    """Runs one of the core's async calls to its end (bounded), in a loop of its own."""

    async def bounded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def report_photo(core, qhl02, photo, text, category="seepage", vertex=2):
    """Reports a minor issue with one photo at a vertex of QHL-02's line; returns its id."""
    _, line = qhl02
    lon, lat = line[vertex]
    return run(core.report_issue(
        rc.IssueDraft(
            segment="QHL-02", patrol_id=None, lon=lon, lat=lat, crs=rc.Crs.WGS84,
            category=category, severity=1, outflow=None, description=text,
            photo_paths=[str(photo["path"])],
        )
    ))


def norm(name: str) -> str:
    return name.replace("_", "").upper()


def variant(value) -> str:
    """The variant name of an enum value, flat or with data: "SYNCING", "BACKINGOFF", "KEPTMOCK"."""
    if isinstance(value, enum.Enum):
        return norm(value.name)
    return norm(type(value).__name__.split(".")[-1])


def state(status) -> str:
    return variant(status.state)


def options(**fields):
    """`default_options()` with the given fields changed."""
    opts = rc.default_options()
    for key, value in fields.items():
        if not hasattr(opts, key):
            raise AttributeError(f"CoreOptions has no field {key}")
        setattr(opts, key, value)
    return opts


def fix(time_ms: int, lon: float, lat: float, accuracy_m=5.0, mock: bool = False, crs=None):
    return rc.Fix(
        time_ms=int(time_ms),
        lon=float(lon),
        lat=float(lat),
        accuracy_m=None if accuracy_m is None else float(accuracy_m),
        crs=rc.Crs.WGS84 if crs is None else crs,
        mock=mock,
    )


class Recorder(rc.StatusListener):
    """A StatusListener that appends every SyncStatus it gets (with the thread that delivered it)
    to a list guarded by a lock."""

    def __init__(self):
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._events: list = []
        self._threads: list[int] = []

    def on_status(self, status):
        with self._cond:
            self._events.append(status)
            self._threads.append(threading.get_ident())
            self._cond.notify_all()

    @property
    def events(self) -> list:
        with self._lock:
            return list(self._events)

    @property
    def threads(self) -> list[int]:
        with self._lock:
            return list(self._threads)

    def clear(self) -> None:
        with self._lock:
            self._events.clear()
            self._threads.clear()

    def states(self) -> list[str]:
        return [state(s) for s in self.events]

    def last(self):
        ev = self.events
        return ev[-1] if ev else None

    def wait_for(self, predicate, timeout: float = 10.0, what: str = "a status"):
        """The first recorded status (from the start) for which `predicate` holds, waiting up to
        `timeout` seconds for it to arrive."""
        deadline = time.monotonic() + timeout
        with self._cond:
            seen = 0
            while True:
                for s in self._events[seen:]:
                    if predicate(s):
                        return s
                seen = len(self._events)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"listener got no {what} within {timeout} s; states: {[state(s) for s in self._events][-20:]}"
                    )
                self._cond.wait(min(left, 0.1))

    def wait_seq(self, seq: int, timeout: float = 10.0):
        """Waits until a status with `seq` >= the given one has arrived."""
        return self.wait_for(lambda s: s.seq >= seq, timeout, what=f"status seq >= {seq}")


def assert_consecutive(events, what: str = "listener") -> None:
    """seq strictly increasing by exactly one: nothing lost, nothing twice, in order."""
    seqs = [e.seq for e in events]
    assert seqs, f"{what} got nothing"
    for a, b in zip(seqs, seqs[1:]):
        assert b == a + 1, f"{what}: seq {a} followed by {b} (all: {seqs[:50]}...)"
