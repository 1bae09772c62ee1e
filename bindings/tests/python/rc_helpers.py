"""Helpers of the riverchief-ffi Python suite: a real server, a TCP proxy between the core and it
(the phone's signal), photos as phones take them, a status listener, and plain HTTP as the duty lead
to check what reached the server.

Everything here talks to loopback addresses only, and every wait is bounded.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import queue
import re
import secrets
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

LOOPBACK = "127.0.0.1"


# --------------------------------------------------------------------------------------------
# The server


class Server:
    """`riverchief-server serve --demo` on a free loopback port with a throwaway data directory."""

    def __init__(self, binary: str, data_dir: Path, start_timeout: float = 90.0):
        self.password = "demo-" + secrets.token_hex(10)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.log_path = data_dir / "server-stderr.log"
        self._log = open(self.log_path, "wb")
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")
        # No RIVERCHIEF_* setting of the caller's shell may change the server under test.
        for key in list(env):
            if key.startswith("RIVERCHIEF_"):
                del env[key]
        self.proc = subprocess.Popen(
            [
                binary,
                "serve",
                "--demo",
                f"--demo-password={self.password}",
                "--bind",
                f"{LOOPBACK}:0",
                "--data-dir",
                str(data_dir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
        self._lines: "queue.Queue[str | None]" = queue.Queue()
        self._drain = threading.Thread(target=self._read_stdout, daemon=True)
        self._drain.start()
        self.port = self._wait_listening(start_timeout)
        self.url = f"http://{LOOPBACK}:{self.port}"

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:  # keeps draining until the server exits
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self._lines.put(None)

    def _wait_listening(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        pattern = re.compile(r"^listening on http://127\.0\.0\.1:(\d+)$")
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise RuntimeError(f"server did not say it listens within {timeout} s; {self.log_tail()}")
            try:
                line = self._lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if line is None:
                code = self.proc.wait(timeout=10)
                raise RuntimeError(f"server exited ({code}) before listening; {self.log_tail()}")
            m = pattern.match(line.strip())
            if m:
                return int(m.group(1))

    def log_tail(self, n: int = 4000) -> str:
        try:
            return "server stderr: " + self.log_path.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return "(no server log)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self._log.close()


# --------------------------------------------------------------------------------------------
# Plain HTTP to the server (checking what arrived)


class HttpError(Exception):
    def __init__(self, status: int, body: bytes):
        super().__init__(f"HTTP {status}: {body[:300]!r}")
        self.status = status
        self.body = body


class Http:
    """The server's API as one user (the duty lead, to see everything), straight to the server."""

    def __init__(self, base: str, username: str, password: str):
        self.base = base
        status, body, _ = self._request(
            "POST",
            "/api/v1/auth/login",
            {"username": username, "password": password, "device_name": "pytest checker"},
        )
        if status != 200:
            raise HttpError(status, body)
        self.token = json.loads(body)["token"]

    def _request(self, method, path, payload=None, token=None, headers=None, timeout=30.0):
        data = None
        hdrs = dict(headers or {})
        if payload is not None:
            data = json.dumps(payload).encode()
            hdrs["Content-Type"] = "application/json"
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def get(self, path: str, **kw):
        """(status, body bytes, headers)."""
        return self._request("GET", path, token=self.token, **kw)

    def head(self, path: str):
        return self._request("HEAD", path, token=self.token)[0]

    def json(self, path: str):
        status, body, _ = self.get(path)
        if status != 200:
            raise HttpError(status, body)
        return json.loads(body)

    def patrol(self, patrol_id: str):
        return self.json(f"/api/v1/patrols/{patrol_id}")

    def issue(self, issue_id: str):
        return self.json(f"/api/v1/issues/{issue_id}")

    def photo(self, sha: str) -> bytes:
        status, body, _ = self.get(f"/api/v1/photos/{sha}")
        if status != 200:
            raise HttpError(status, body)
        return body

    def segment_line(self, code: str):
        fc = self.json("/api/v1/segments")
        for f in fc["features"]:
            if f["properties"]["code"] == code:
                return f["id"], [tuple(c) for c in f["geometry"]["coordinates"]]
        raise KeyError(code)


def rfc3339_ms(text: str) -> int:
    """Milliseconds since the epoch of an RFC 3339 UTC time with up to nine fractional digits."""
    m = re.match(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    if not m:
        raise ValueError(text)
    import calendar

    y, mo, d, h, mi, s, frac, tz = m.groups()
    secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        secs -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    ms = int((frac or "0")[:3].ljust(3, "0"))
    return secs * 1000 + ms


def point_times(track: dict) -> list[int]:
    return [rfc3339_ms(p["t"]) for p in track["points"]]


# --------------------------------------------------------------------------------------------
# The phone's signal: a TCP proxy


def _close_hard(sock: socket.socket) -> None:
    """Shuts a socket both ways and closes it; a socket already gone is fine."""
    for end in (lambda: sock.shutdown(socket.SHUT_RDWR), sock.close):
        try:
            end()
        except OSError:
            pass


class Proxy:
    """A loopback TCP proxy to `target_port`. `down()` closes the listening socket (connections are
    refused) and cuts every open connection; `up()` listens again on the same port; `throttle(bps)`
    paces the bytes going to the server (all connections together); `hold_answers(True)` stops
    relaying the server's answers (they wait in the proxy) while requests still go through."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.bind((LOOPBACK, 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self._lock = threading.Lock()
        self._want_up = True
        self._is_up = threading.Event()
        self._is_down = threading.Event()
        self._stopped = False
        self._rate: float | None = None
        self._next_send = 0.0
        self._hold = False
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self.accepted = 0
        self.refused_while_down = 0
        self.bytes_up = 0
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()
        if not self._is_up.wait(10):
            raise RuntimeError("proxy did not start listening")

    # -- controls

    def down(self) -> None:
        with self._lock:
            self._want_up = False
            self._is_down.clear()
        if not self._is_down.wait(10):
            raise RuntimeError("proxy did not go down")
        self.cut_all()

    def up(self) -> None:
        with self._lock:
            self._want_up = True
            self._is_up.clear()
        if not self._is_up.wait(10):
            raise RuntimeError("proxy did not come up")

    def throttle(self, bytes_per_second: float | None) -> None:
        with self._lock:
            self._rate = bytes_per_second
            self._next_send = time.monotonic()

    def hold_answers(self, hold: bool) -> None:
        with self._lock:
            self._hold = hold

    def cut_all(self) -> int:
        with self._lock:
            pairs = list(self._pairs)
            self._pairs.clear()
        for pair in pairs:
            for s in pair:
                _close_hard(s)
        return len(pairs)

    def open_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._hold = False
        self._thread.join(timeout=5)
        self.cut_all()

    # -- machinery

    def _listen(self) -> socket.socket | None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # A small receive buffer (inherited by accepted sockets): what the phone counts as sent is
        # close to what went through, as on a slow radio link.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # And a radio link's segment size, announced to the phone: on loopback (64 KiB segments)
        # the phone's kernel would otherwise take a megabyte or two into its send buffer at once.
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1400)
        for _ in range(100):  # the port may linger for a moment after a close
            try:
                s.bind((LOOPBACK, self.port))
                break
            except OSError:
                time.sleep(0.05)
        else:
            s.close()
            return None
        s.listen(64)
        s.settimeout(0.05)
        return s

    def _accept_loop(self) -> None:
        listener: socket.socket | None = None
        while True:
            with self._lock:
                stopped, want_up = self._stopped, self._want_up
            if stopped:
                break
            if want_up and listener is None:
                listener = self._listen()
            elif not want_up and listener is not None:
                listener.close()
                listener = None
            if want_up and listener is not None:
                self._is_up.set()
            if not want_up:
                self._is_down.set()
            if listener is None:
                time.sleep(0.02)
                continue
            try:
                client, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                continue
            client.settimeout(None)
            with self._lock:
                if not self._want_up:
                    self.refused_while_down += 1
                    client.close()
                    continue
            try:
                upstream = socket.create_connection((LOOPBACK, self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
                self.accepted += 1
            threading.Thread(target=self._pump, args=(pair, client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(pair, upstream, client, False), daemon=True).start()
        if listener is not None:
            listener.close()

    def _pace(self, n: int) -> None:
        """Waits until `n` more bytes may go to the server under the current rate."""
        with self._lock:
            rate = self._rate
            if not rate:
                return
            now = time.monotonic()
            start = max(now, self._next_send)
            self._next_send = start + n / rate
            wait = self._next_send - now
        if wait > 0:
            time.sleep(min(wait, 5.0))

    def _chunk(self, upstream: bool) -> int:
        with self._lock:
            rate = self._rate
        if upstream and rate:
            return max(256, min(16384, int(rate / 20)))
        return 65536

    def _pump(self, pair, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        try:
            while True:
                data = src.recv(self._chunk(upstream))
                if not data:
                    break
                if upstream:
                    self._pace(len(data))
                else:
                    for _ in range(6000):  # at most 10 minutes held
                        with self._lock:
                            if not self._hold:
                                break
                        time.sleep(0.1)
                dst.sendall(data)
                if upstream:
                    with self._lock:
                        self.bytes_up += len(data)
        except OSError:
            pass
        finally:
            # One side ended: end both at once (a phone that gave up drops its connection; the
            # server keeps what arrived).
            with self._lock:
                self._pairs.discard(pair)
            for s in pair:
                _close_hard(s)


# --------------------------------------------------------------------------------------------
# Photos


def make_phone_photo(path: Path, width: int = 4000, height: int = 3000, orientation: int = 6,
                     quality: int = 95, sigma: float = 22.0, seed_text: str = "") -> dict:
    """A noisy JPEG as a phone takes it (4000x3000 ~6 MB at the defaults), stored landscape with an
    EXIF orientation tag, a capture time and a GPS position. A red block marks the stored image's
    top-left corner, so a viewer can tell where it ends up once the orientation is applied."""
    from PIL import Image, ImageDraw

    # Noise in 2x2 blocks: detail that survives shrinking to 2560 px, as a real scene's does (a
    # shrunk photo of pixel-sized noise would be a smooth grey of a few hundred KB).
    noise = Image.effect_noise((max(1, width // 2), max(1, height // 2)), sigma).resize(
        (width, height), Image.Resampling.NEAREST)
    grad = Image.linear_gradient("L").resize((width, height))
    r = Image.blend(noise, grad, 0.5)
    g = Image.blend(noise.transpose(Image.Transpose.FLIP_LEFT_RIGHT), grad.rotate(90).resize((width, height)), 0.5)
    b = Image.blend(noise.transpose(Image.Transpose.FLIP_TOP_BOTTOM), grad, 0.3)
    img = Image.merge("RGB", (r, g, b))
    draw = ImageDraw.Draw(img)
    block = max(8, min(width, height) // 6)
    draw.rectangle([0, 0, block - 1, block - 1], fill=(255, 0, 0))
    if seed_text:
        draw.text((block + 10, 10), seed_text, fill=(255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    exif[0x010F] = "riverchief-test"  # Make
    exif[0x0132] = "2026:07:15 09:30:00"  # DateTime
    exif_ifd = exif.get_ifd(0x8769)
    exif_ifd[0x9003] = "2026:07:15 09:30:00"  # DateTimeOriginal
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (32.0, 3.0, 5.4)
    gps[3] = "E"
    gps[4] = (118.0, 44.0, 38.0)
    img.save(path, "JPEG", quality=quality, exif=exif)
    return {"path": path, "size": path.stat().st_size, "width": width, "height": height,
            "orientation": orientation, "block": block}


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def image_info(data: bytes) -> dict:
    """Pixel size, EXIF orientation, capture time and GPS of a JPEG, and the mean colour of the
    top-left and top-right corners of its pixels as stored."""
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    exif = img.getexif()
    w, h = img.size
    corner = max(4, min(w, h) // 20)
    rgb = img.convert("RGB")

    def mean(box):
        region = rgb.crop(box)
        pixels = region.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
        return tuple(pixels)

    return {
        "format": img.format,
        "width": w,
        "height": h,
        "orientation": exif.get(0x0112),
        "datetime_original": exif.get_ifd(0x8769).get(0x9003),
        "gps": dict(exif.get_ifd(0x8825)),
        "top_left": mean((0, 0, corner, corner)),
        "top_right": mean((w - corner, 0, w, corner)),
        "bottom_left": mean((0, h - corner, corner, h)),
    }


def is_red(rgb) -> bool:
    r, g, b = rgb[:3]
    return r > 200 and g < 60 and b < 60


# --------------------------------------------------------------------------------------------
# Tracks


EARTH_R = 6371008.8


def _local(origin, p):
    lon0, lat0 = origin
    k = math.pi / 180 * EARTH_R
    return ((p[0] - lon0) * k * math.cos(math.radians(lat0)), (p[1] - lat0) * k)


def _global(origin, xy):
    lon0, lat0 = origin
    k = math.pi / 180 * EARTH_R
    return (lon0 + xy[0] / (k * math.cos(math.radians(lat0))), lat0 + xy[1] / k)


def distance_m(a, b) -> float:
    """Haversine distance between two (lon, lat) points, metres."""
    lon1, lat1, lon2, lat2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_R * math.asin(math.sqrt(h))


def line_length_m(line) -> float:
    return sum(distance_m(a, b) for a, b in zip(line, line[1:]))


def walk(line, step_m: float, back_and_forth: int = 1):
    """Points every `step_m` metres along the polyline `line` ((lon, lat) pairs), there and back
    `back_and_forth` times (1 = there only, 2 = there and back, ...)."""
    origin = line[0]
    pts = [_local(origin, p) for p in line]
    segs = []
    for a, b in zip(pts, pts[1:]):
        segs.append((a, b, math.dist(a, b)))
    total = sum(s[2] for s in segs)

    def at(s):
        for a, b, ln in segs:
            if s <= ln or (a, b, ln) == segs[-1]:
                f = 0.0 if ln == 0 else min(1.0, s / ln)
                return _global(origin, (a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f))
            s -= ln
        raise AssertionError("unreachable")

    out = []
    n = int(total // step_m)
    for leg in range(back_and_forth):
        ticks = range(0, n + 1) if leg % 2 == 0 else range(n, -1, -1)
        for i, k in enumerate(ticks):
            if leg > 0 and i == 0:
                continue  # the turning point is not walked twice
            out.append(at(k * step_m))
    return out


def jitter(p, metres: float, i: int):
    """`p` moved by at most `metres` in a direction that depends on `i` (standing still)."""
    ang = i * 2.399963  # golden angle
    origin = p
    return _global(origin, (metres * math.cos(ang), metres * math.sin(ang)))


# --------------------------------------------------------------------------------------------
# Waiting


def wait_until(predicate, timeout: float, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
