"""Helpers for the Convene end-to-end tests: the server process, browsers, stats.

Browsers are Debian's Chromium (/usr/bin/chromium, override with CHROMIUM_BIN) driven by
Playwright's sync API; `playwright install` is never needed. Each attendee gets its own
browser process (closest to reality: separate media stacks, separate fake devices).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlencode

REPO_ROOT = Path(__file__).resolve().parents[2]
CONVENE_BIN = Path(os.environ.get("CONVENE_BIN", REPO_ROOT / "target" / "debug" / "convene"))
CHROMIUM_BIN = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
HEADLESS = os.environ.get("E2E_HEADFUL", "") != "1"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--auto-select-desktop-capture-source=Entire screen",
    "--allow-loopback-in-peer-connection",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
    # Keep background pages/timers running at full speed: all four attendees are "background".
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
# Playwright adds --mute-audio for headless runs; keep the audio path fully live instead.
CHROMIUM_IGNORE_DEFAULT_ARGS = ["--mute-audio"]

MEDIA_PORT_COUNT = 64


# --------------------------------------------------------------------------- polling


def poll(fn: Callable[[], object], timeout: float, interval: float = 0.25, desc: str = "condition"):
    """Calls fn until it returns a truthy value; returns it. Fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {desc}")
        time.sleep(interval)


# --------------------------------------------------------------------------- server


def free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_udp_range(count: int = MEDIA_PORT_COUNT, lo: int = 30000, hi: int = 39000) -> tuple[int, int]:
    """A random range of `count` consecutive UDP ports that are all free right now."""
    for _ in range(200):
        start = random.randrange(lo, hi - count)
        socks = []
        try:
            for port in range(start, start + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("0.0.0.0", port))
            return start, start + count - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free UDP port range found")


@dataclass
class Server:
    proc: subprocess.Popen
    base_url: str
    http_port: int
    media_lo: int
    media_hi: int
    data_dir: Path
    stdout_path: Path
    stderr_path: Path
    stopped: bool = False

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1) + "/v1/signal"

    @property
    def media_ports(self) -> range:
        return range(self.media_lo, self.media_hi + 1)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def logs(self, tail_chars: int = 60000) -> str:
        out = []
        for label, path in (("stderr", self.stderr_path), ("stdout", self.stdout_path)):
            try:
                text = path.read_text(errors="replace")
            except FileNotFoundError:
                text = ""
            if len(text) > tail_chars:
                text = "...(truncated)...\n" + text[-tail_chars:]
            out.append(f"----- convene {label} ({path}) -----\n{text}")
        return "\n".join(out)

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=timeout) as r:
                return r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def metric_sum(self, name: str) -> float:
        """Sums a Prometheus metric over all its label sets (0 if absent)."""
        status, text = self.get("/metrics")
        assert status == 200, f"GET /metrics -> {status}: {text[:500]}"
        return sum_metric(text, name)


def sum_metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        metric = line.split("{", 1)[0].split(" ", 1)[0]
        if metric != name:
            continue
        value = line.rsplit("}", 1)[-1].split()[0] if "}" in line else line.split()[1]
        total += float(value)
    return total


def start_server(workdir: Path, extra_args: tuple[str, ...] = (), host: str = "127.0.0.1") -> Server:
    """`convene serve` with HTTP, signaling and media on `host` (loopback unless a test made another
    interface), a free TCP port and 64 free UDP ports."""
    if not CONVENE_BIN.exists():
        raise RuntimeError(f"server binary {CONVENE_BIN} not found (build it, or set CONVENE_BIN)")
    http_port = free_tcp_port(host)
    lo, hi = free_udp_range()
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    stdout_path = workdir / "convene.stdout.log"
    stderr_path = workdir / "convene.stderr.log"
    cmd = [
        str(CONVENE_BIN), "serve",
        "--http", f"{host}:{http_port}",
        "--data-dir", str(data_dir),
        "--media-ports", f"{lo}-{hi}",
        "--public-ip", host,
        *extra_args,
    ]
    env = dict(os.environ)
    env.setdefault("RUST_BACKTRACE", "1")
    # The SFU's decisions (allocation changes, layer switches) are in the log a failure prints.
    env.setdefault("RUST_LOG", "info,convene_media::shard=debug")
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=REPO_ROOT)
    srv = Server(proc, f"http://{host}:{http_port}", http_port, lo, hi, data_dir, stdout_path, stderr_path)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"convene exited early with code {proc.returncode}\ncommand: {cmd}\n{srv.logs()}")
        try:
            status, _ = srv.get("/readyz", timeout=1)
            if status == 200:
                return srv
        except (urllib.error.URLError, ConnectionError, socket.timeout, OSError):
            pass
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"convene did not become ready within 30 s\ncommand: {cmd}\n{srv.logs()}")
        time.sleep(0.1)


def stop_server(srv: Server) -> list[str]:
    """SIGTERM, wait up to 10 s. Returns a list of problems (empty when the shutdown was clean)."""
    if srv.stopped:
        return []
    srv.stopped = True
    problems = []
    if srv.proc.poll() is not None:
        problems.append(f"convene had already exited (code {srv.proc.returncode}) before teardown")
    else:
        srv.proc.send_signal(signal.SIGTERM)
        try:
            srv.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            srv.proc.kill()
            srv.proc.wait()
            problems.append("convene did not exit within 10 s of SIGTERM (killed)")
        else:
            if srv.proc.returncode != 0:
                problems.append(f"convene exited with code {srv.proc.returncode} after SIGTERM (expected 0)")
    stderr = srv.stderr_path.read_text(errors="replace")
    stdout = srv.stdout_path.read_text(errors="replace")
    if "panicked" in stderr or "panicked" in stdout:
        problems.append("convene logged a panic ('panicked' in its output)")
    return problems


# --------------------------------------------------------------------------- browsers

# In-page helper: inbound-rtp stats of the subscribe PC, attributed to attendees via
# window.convene.tracks (the mid -> attendee/source map of the latest subscribe_offer).
STATS_JS = """
async () => {
  const c = window.convene;
  if (!c || !c.subPc) return [];
  const pc = c.subPc;
  const byMid = {};
  for (const t of c.tracks) byMid[String(t.mid)] = t;
  const midByTrack = {};
  for (const tx of pc.getTransceivers()) if (tx.mid !== null) midByTrack[tx.receiver.track.id] = tx.mid;
  const report = await pc.getStats();
  const codecs = {};
  report.forEach((s) => { if (s.type === "codec") codecs[s.id] = s.mimeType; });
  const out = [];
  report.forEach((s) => {
    if (s.type !== "inbound-rtp") return;
    const mid = s.mid !== undefined ? String(s.mid) : midByTrack[s.trackIdentifier];
    const info = byMid[mid] || {};
    out.push({
      mid, kind: s.kind, ssrc: s.ssrc,
      attendee_id: info.attendee_id || null, source: info.source || null,
      framesDecoded: s.framesDecoded || 0, framesReceived: s.framesReceived || 0,
      frameWidth: s.frameWidth || 0, frameHeight: s.frameHeight || 0,
      freezeCount: s.freezeCount || 0, totalFreezesDuration: s.totalFreezesDuration || 0,
      packetsReceived: s.packetsReceived || 0, bytesReceived: s.bytesReceived || 0,
      packetsLost: s.packetsLost || 0, nackCount: s.nackCount || 0, pliCount: s.pliCount || 0,
      framesDropped: s.framesDropped || 0,
      jitterBufferDelay: s.jitterBufferDelay || 0, jitterBufferEmittedCount: s.jitterBufferEmittedCount || 0,
      totalAudioEnergy: s.totalAudioEnergy || 0, audioLevel: s.audioLevel || 0,
      codec: codecs[s.codecId] || null,
    });
  });
  return out;
}
"""

# Init script for the late-joiner measurement: polls the subscribe PC every 50 ms and
# records (performance.now()) when each video mid first has framesDecoded > 0.
FIRST_DECODE_WATCH_JS = """
(() => {
  window.__e2eFirstDecode = {};
  const tick = async () => {
    try {
      const c = window.convene;
      if (c && c.subPc) {
        const pc = c.subPc;
        const midByTrack = {};
        for (const tx of pc.getTransceivers()) if (tx.mid !== null) midByTrack[tx.receiver.track.id] = tx.mid;
        const report = await pc.getStats();
        const now = performance.now();
        report.forEach((s) => {
          if (s.type !== "inbound-rtp" || s.kind !== "video" || !(s.framesDecoded > 0)) return;
          const mid = s.mid !== undefined ? String(s.mid) : midByTrack[s.trackIdentifier];
          if (mid !== undefined && !(mid in window.__e2eFirstDecode)) window.__e2eFirstDecode[mid] = now;
        });
      }
    } catch (e) { /* keep polling */ }
    setTimeout(tick, 50);
  };
  setTimeout(tick, 50);
})();
"""


@dataclass
class Attendee:
    """One browser process with one page running the web app."""

    name: str
    browser: object
    context: object
    page: object
    console: list = field(default_factory=list)

    @classmethod
    def launch(cls, pw, name: str, init_scripts: tuple[str, ...] = (),
               extra_args: tuple[str, ...] = (), executable: str | None = None) -> "Attendee":
        """`executable` replaces CHROMIUM_BIN, e.g. a wrapper that runs it in another network namespace."""
        browser = pw.chromium.launch(
            executable_path=executable or CHROMIUM_BIN,
            headless=HEADLESS,
            args=[*CHROMIUM_ARGS, *extra_args],
            ignore_default_args=CHROMIUM_IGNORE_DEFAULT_ARGS,
        )
        context = browser.new_context(viewport={"width": 1024, "height": 640})
        for js in init_scripts:
            context.add_init_script(js)
        page = context.new_page()
        a = cls(name=name, browser=browser, context=context, page=page)
        page.on("console", lambda m: a.console.append(f"[{m.type}] {m.text}"))
        page.on("pageerror", lambda e: a.console.append(f"[pageerror] {e}"))
        page.on("crash", lambda *_: a.console.append("[crash] page crashed"))
        return a

    def join_url(self, base_url: str, meeting: str, autojoin: bool = True) -> str:
        q = {"meeting": meeting, "name": self.name, "quality": "low"}
        if autojoin:
            q["autojoin"] = "1"
        return f"{base_url}/?{urlencode(q)}"

    def open_and_join(self, base_url: str, meeting: str, timeout: float = 20.0):
        self.page.goto(self.join_url(base_url, meeting))
        self.wait_state("joined", timeout)

    def state(self) -> str:
        return self.page.evaluate("() => window.convene ? window.convene.state : null")

    def wait_state(self, state: str, timeout: float = 20.0):
        try:
            self.page.wait_for_function(
                "(s) => window.convene && window.convene.state === s", arg=state, timeout=timeout * 1000)
        except Exception as e:  # noqa: BLE001 - re-raise with context
            raise AssertionError(
                f"{self.name}: state never became {state!r} (is {self.state()!r}); "
                f"banner: {self.banner_text()!r}") from e

    @property
    def attendee_id(self) -> str:
        return self.page.evaluate("() => window.convene.attendeeId")

    def tracks(self) -> list[dict]:
        return self.page.evaluate("() => window.convene.tracks")

    def stats(self) -> list[dict]:
        return self.page.evaluate(STATS_JS)

    def banner_text(self) -> str:
        try:
            el = self.page.query_selector("#banner")
            if el is None or not el.is_visible():
                return ""
            return el.inner_text()
        except Exception:  # noqa: BLE001
            return "<unavailable>"

    def click(self, selector: str):
        self.page.click(selector)

    def close(self):
        try:
            self.browser.close()
        except Exception:  # noqa: BLE001
            pass


def aggregate(stats: list[dict]) -> dict[tuple[str, str], dict]:
    """Sums inbound-rtp counters per (attendee_id, source)."""
    out: dict[tuple[str, str], dict] = {}
    for s in stats:
        if not s.get("attendee_id"):
            continue
        key = (s["attendee_id"], s["source"])
        agg = out.setdefault(key, {"framesDecoded": 0, "packetsReceived": 0, "totalAudioEnergy": 0.0,
                                   "audioLevel": 0.0, "codecs": set(), "mids": set()})
        agg["framesDecoded"] += s["framesDecoded"]
        agg["packetsReceived"] += s["packetsReceived"]
        agg["totalAudioEnergy"] += s["totalAudioEnergy"]
        agg["audioLevel"] = max(agg["audioLevel"], s["audioLevel"])
        if s.get("codec"):
            agg["codecs"].add(s["codec"])
        agg["mids"].add(s["mid"])
    return out


def flow_problems(before: dict, after: dict, expect: list[tuple[str, str]]) -> list[str]:
    """What is not flowing between two aggregate() samples for the expected (attendee, source) keys."""
    problems = []
    for key in expect:
        a, b = before.get(key), after.get(key)
        if b is None:
            problems.append(f"{key}: no inbound-rtp stats attributed")
            continue
        a = a or {"framesDecoded": 0, "packetsReceived": 0}
        if key[1] == "audio":
            if b["packetsReceived"] <= a["packetsReceived"]:
                problems.append(f"{key}: audio packetsReceived not growing ({a['packetsReceived']} -> {b['packetsReceived']})")
            if not (b["totalAudioEnergy"] > 0 or b["audioLevel"] > 0):
                problems.append(f"{key}: audio energy is zero (totalAudioEnergy={b['totalAudioEnergy']}, audioLevel={b['audioLevel']})")
        else:
            if b["framesDecoded"] <= a["framesDecoded"]:
                problems.append(f"{key}: framesDecoded not growing ({a['framesDecoded']} -> {b['framesDecoded']})")
    return problems


def wait_media_flowing(att: Attendee, expect: list[tuple[str, str]], timeout: float = 45.0,
                       gap: float = 2.5) -> dict:
    """Samples stats `gap` s apart until every expected (attendee, source) is flowing (see flow_problems)."""
    deadline = time.monotonic() + timeout
    before = aggregate(att.stats())
    problems = ["no sample yet"]
    while time.monotonic() < deadline:
        time.sleep(gap)
        after = aggregate(att.stats())
        problems = flow_problems(before, after, expect)
        if not problems:
            return after
        before = after
    raise AssertionError(
        f"{att.name}: media not flowing after {timeout:.0f}s: {problems}\n"
        f"tracks={att.tracks()}\nstats={json.dumps(att.stats(), indent=1)}\nbanner={att.banner_text()!r}")


# --------------------------------------------------------------------------- test media


def noise_video(path, width=640, height=360, fps=24, frames=24):
    """A Y4M file (YUV 4:2:0) of grey with fresh low-amplitude noise in every frame, for
    --use-file-for-fake-video-capture: far more than an encoder can represent at a few hundred kbps, so
    its rate control runs at whatever ceiling it is given (Chromium's built-in fake camera is a simple
    animation that stays at about 165 kbps at 640x360, below most tiers). Low amplitude keeps it
    compressible enough at coarse quantizers that rate control can meet any tier (full-range noise
    cannot be squeezed under ~1.3 Mbps even at the coarsest H.264 quantizer, which would test the
    codec rather than us)."""
    luma = width * height
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n")
            f.write(bytes(112 + (b & 31) for b in os.urandom(luma)))
            f.write(bytes([128]) * (luma // 2))
    return path
