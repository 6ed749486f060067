"""A subscriber behind a slow link keeps watching: Chromium in a network namespace whose downlink the test
rate-limits with `tc` receives a lower simulcast layer of the publisher's camera and keeps decoding it,
with short freezes only, and climbs back to the top layer when the limit is lifted.

Network: the test creates a namespace and a veth pair, with a private /30 on the pair only; the server
listens on the root-side address (HTTP, signaling and media), the publisher's Chromium runs in the root
namespace (its traffic to that local address goes over loopback), the subscriber's Chromium runs in the
namespace through an `ip netns exec` wrapper, so all its media crosses the veth. The limit is a `tbf` on the
root-side end, i.e. on everything the server sends the subscriber. Nothing leaves the machine: the namespace
has no route but its /30. Needs root (skipped otherwise); the namespace goes away at the end, also on failure.

The publisher's camera is noise (see `noise_video`), so each simulcast layer runs at its share of the 1:1
tier (650 kbps: about 150 kbps for h, 320x180, and 487 for f, 640x360; web/js/meeting.js): at 300 kbps the
top layer cannot fit and the lower one can."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import serving
from convene_e2e import CHROMIUM_BIN, poll, noise_video

NS_PREFIX = "cvn-link-"
LIMIT_KBIT = 300
# The link's queue: a packet may wait this long before tbf drops it (37.5 KB at 300 kbps), a link that
# queues rather than drops, like most access links. The SFU's delay-based estimate then sees the queue grow
# and switches before much is lost. With shorter queues (200-400 ms) losses come first, and about one run
# in four froze for seconds: the old layer keeps flowing until the new one's keyframe (tens of KB from the
# noise camera) gets through, the loss-based estimate falls to ~150 kbps and the video is paused (see the
# report on issue 6). That is worth fixing in the SFU, but a test failing one run in four helps nobody.
QUEUE_MS = 1000
# How long the subscriber is watched behind the limit; the last STEADY_S of it must be free of freezes.
LIMITED_S = 12
STEADY_S = 5
# The simulated-network bound is a received rate that follows within 5 s; a real Chromium also
# needs the new layer's keyframe through the slow link, hence 10 s here (measured: 1.6-3.7 s).
MAX_DROP_S = 10
# Freezes as Chromium counts them (a frame later than max(3x the mean interval, mean + 150 ms)) while the
# layer switches: the old layer's packets queued in tbf and the new layer's keyframe arrive late.
# Measured here over eight runs (1000 ms queue): 0-1 freezes, at most 0.54 s in all.
MAX_FREEZE_S = 1.0
MAX_TOTAL_FREEZE_S = 1.5
# The noise camera sends 24 fps and every frame of the lower layer is forwarded, so in steady state the
# subscriber should decode close to that; 15 leaves room for a busy 2-core machine.
MIN_STEADY_FPS = 15
# What the noise camera sends (frames per second).
CAMERA_FPS = 24
# Lifting the limit: the estimate has to rise from about 400 kbps to the top layer's 487 kbps + 15 %
# headroom + audio, which needs probing.
MAX_CLIMB_S = 15


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


def _tc(*args: str) -> None:
    subprocess.run(["tc", *args], check=True, capture_output=True, text=True, timeout=10)


@dataclass
class Link:
    """A namespace joined to the root namespace by a veth pair; `limit()` shapes what enters it."""

    ns: str
    host_if: str
    host_ip: str
    ns_ip: str

    @classmethod
    def create(cls) -> "Link":
        _remove_stale_namespaces()
        pid = os.getpid()
        link = cls(ns=f"{NS_PREFIX}{pid}", host_if=f"cvl{pid}h", host_ip="", ns_ip="")
        subnet = _free_subnet()
        link.host_ip, link.ns_ip = f"{subnet}.1", f"{subnet}.2"
        ns_if = f"cvl{pid}n"
        _ip("netns", "add", link.ns)
        try:
            _ip("link", "add", link.host_if, "type", "veth", "peer", "name", ns_if, "netns", link.ns)
            _ip("addr", "add", f"{link.host_ip}/30", "dev", link.host_if)
            _ip("link", "set", link.host_if, "up")
            _ip("-n", link.ns, "link", "set", "lo", "up")
            _ip("-n", link.ns, "addr", "add", f"{link.ns_ip}/30", "dev", ns_if)
            _ip("-n", link.ns, "link", "set", ns_if, "up")
        except BaseException:
            link.destroy()
            raise
        return link

    def destroy(self) -> None:
        # Deleting the namespace deletes its veth end, and with it the root-side end and its qdisc.
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=10)

    def limit(self, kbit: int, queue_ms: int) -> None:
        # burst: a few full packets; latency: how long a packet may wait in the queue before tbf drops it.
        _tc("qdisc", "replace", "dev", self.host_if, "root", "tbf",
            "rate", f"{kbit}kbit", "burst", "4kb", "latency", f"{queue_ms}ms")

    def unlimit(self) -> None:
        _tc("qdisc", "del", "dev", self.host_if, "root")

    def chromium_wrapper(self, folder: Path) -> str:
        """An executable Playwright can launch: Chromium inside the namespace (`ip netns exec` execs, so
        the pid and the debugging pipe stay Playwright's)."""
        path = folder / "chromium-in-ns"
        path.write_text(f'#!/bin/sh\nexec ip netns exec {self.ns} {CHROMIUM_BIN} "$@"\n')
        path.chmod(0o755)
        return str(path)


def _remove_stale_namespaces() -> None:
    """Namespaces an earlier, killed run of this test left behind (their pid is gone)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(NS_PREFIX):
            continue
        pid = name[len(NS_PREFIX):]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def _free_subnet() -> str:
    """A 10.231.X.0/30 that no address or route on this machine mentions."""
    seen = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    seen += subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    for k in range(256):
        subnet = f"10.231.{(os.getpid() + k) % 256}"
        if f"{subnet}." not in seen:
            return subnet
    raise RuntimeError("no free 10.231.X.0/30 subnet")


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create a network namespace and a veth pair"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) is not installed"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`ip netns` is unavailable: {probe.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def link():
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    created = Link.create()
    try:
        yield created
    finally:
        created.destroy()


@pytest.fixture(scope="module")
def server(link, tmp_path_factory):
    """The server on the root-side veth address (HTTP, signaling, media), so the subscriber reaches it
    only across the veth."""
    with serving(tmp_path_factory, host=link.host_ip) as srv:
        yield srv


# The publisher's camera layers as sent: rid -> frameWidth, bytesSent (active layers only).
OUTBOUND_LAYERS_JS = """
async () => {
  const pc = window.convene.pubPc;
  if (!pc) return {};
  const out = {};
  (await pc.getStats()).forEach((s) => {
    if (s.type === "outbound-rtp" && s.kind === "video" && s.rid && s.frameWidth) {
      out[s.rid] = { frameWidth: s.frameWidth, bytesSent: s.bytesSent, active: s.active !== false };
    }
  });
  return out;
}
"""


def camera_stats(att, publisher_id: str) -> dict | None:
    cams = [s for s in att.stats() if s["attendee_id"] == publisher_id and s["source"] == "camera"]
    return cams[0] if cams else None


@pytest.fixture(scope="module")
def room(server, link, launch, host, tmp_path_factory):
    meeting_id = host.new_meeting()
    folder = tmp_path_factory.mktemp("link")
    origin = [f"--unsafely-treat-insecure-origin-as-secure={server.base_url}"]  # getUserMedia off localhost
    video = noise_video(folder / "noise.y4m")
    pub = launch("Presenter", extra_args=(*origin, f"--use-file-for-fake-video-capture={video}"))
    sub = launch("Remote", extra_args=(*origin, "--disable-features=WebRtcHideLocalIpsWithMdns"),
                 executable=link.chromium_wrapper(folder))
    pub.page.goto(pub.join_url(server.base_url, meeting_id).replace("quality=low", "quality=high"))
    pub.wait_state("joined")
    sub.open_and_join(server.base_url, meeting_id)
    return pub, sub


def watch(att, publisher_id: str, seconds: float, every: float = 0.25) -> list[dict]:
    """The subscriber's stats of the publisher's camera, sampled `every` s for `seconds`, with a time `t`."""
    samples = []
    t0 = time.monotonic()
    while True:
        c = camera_stats(att, publisher_id)
        if c:
            c["t"] = time.monotonic() - t0
            samples.append(c)
        if time.monotonic() - t0 >= seconds:
            return samples
        time.sleep(every)


def longest_freeze(samples: list[dict]) -> float:
    """The longest single freeze (s): a sample interval that adds one freeze adds that freeze's duration;
    one that adds several is counted as one freeze of their total (an upper bound)."""
    longest = 0.0
    for a, b in zip(samples, samples[1:]):
        if b["freezeCount"] > a["freezeCount"]:
            longest = max(longest, b["totalFreezesDuration"] - a["totalFreezesDuration"])
    return longest


def print_timeline(samples: list[dict]) -> None:
    """The subscriber's receive side once a second, for whoever reads a failure: a stall shows as frames
    received but not decoded (a keyframe awaited), NACKs that keep growing (a repair that never comes) or a
    jitter buffer delay that climbs (a queue filling)."""
    prev = None
    for s in samples:
        if prev is not None and int(s["t"]) != int(prev["t"]):
            emitted = max(1, s["jitterBufferEmittedCount"] - prev["jitterBufferEmittedCount"])
            jb_ms = (s["jitterBufferDelay"] - prev["jitterBufferDelay"]) / emitted * 1000
            print(f"t={s['t']:5.1f} s {s['frameWidth']} px decoded {s['framesDecoded']} received "
                  f"{s['framesReceived']} lost {s['packetsLost']} nacks {s['nackCount']} plis {s['pliCount']} "
                  f"{s['bytesReceived'] // 1000} kB jitter buffer {jb_ms:.0f} ms")
        prev = s


# What the limited subscriber showed, for the stricter test after it (same meeting, file order).
_observed: dict = {}


def server_counters(server) -> str:
    """The SFU's repair counters (NACKs received, retransmissions sent, PLIs, drops by reason) and its
    estimator re-probes, for the timeline: whether a stall's NACKs were answered, whether probing ran."""
    text = urllib.request.urlopen(f"{server.base_url}/metrics", timeout=5).read().decode()
    wanted = ("convene_media_nacks_total", "convene_media_rtx_sent_total", "convene_media_plis_total",
              "convene_media_packets_dropped_total", "convene_media_estimator_reprobes_total")
    return "; ".join(line for line in text.splitlines()
                     if line.startswith(wanted) and not line.endswith(" 0"))


def test_a_constrained_subscriber_drops_to_a_lower_layer(server, link, room):
    pub, sub = room
    pub_id = pub.attendee_id
    layers = poll(lambda: (l := pub.page.evaluate(OUTBOUND_LAYERS_JS)) and len(l) == 2 and l, 15,
                  desc="the publisher's camera to send two simulcast layers")
    top = max(l["frameWidth"] for l in layers.values())
    poll(lambda: (c := camera_stats(sub, pub_id)) and c["frameWidth"] == top and c["framesDecoded"] > 0, 25,
         desc=f"the subscriber to decode the top layer ({top} px wide) before the limit")

    link.limit(LIMIT_KBIT, QUEUE_MS)
    samples = watch(sub, pub_id, LIMITED_S)
    first, last = samples[0], samples[-1]
    lower = [s for s in samples if 0 < s["frameWidth"] < top]
    assert lower, f"still {top} px wide {LIMITED_S} s into a {LIMIT_KBIT} kbps limit: {last}"
    drop_s = lower[0]["t"]
    steady = [s for s in samples if s["t"] >= LIMITED_S - STEADY_S]
    steady_fps = (steady[-1]["framesDecoded"] - steady[0]["framesDecoded"]) / (steady[-1]["t"] - steady[0]["t"])
    stalls = [b["t"] - a["t"] for a, b in zip(samples, samples[1:]) if b["framesDecoded"] == a["framesDecoded"]]
    freezes = last["freezeCount"] - first["freezeCount"]
    frozen = last["totalFreezesDuration"] - first["totalFreezesDuration"]
    sent = {rid: l["frameWidth"] for rid, l in pub.page.evaluate(OUTBOUND_LAYERS_JS).items()}
    print(f"{LIMIT_KBIT} kbps, {QUEUE_MS} ms queue: {top} px -> {lower[0]['frameWidth']} px after {drop_s:.1f} s "
          f"(layers sent {sent}); {freezes} freezes, {frozen:.2f} s in all, longest {longest_freeze(samples):.2f} s; "
          f"steady state {steady_fps:.1f} fps; sample intervals without a new frame: {len(stalls)}")
    print_timeline(samples)
    print("server:", server_counters(server))
    decoded = last["framesDecoded"] - lower[0]["framesDecoded"]
    expected = CAMERA_FPS * (last["t"] - drop_s)
    _observed.update(samples=samples, top=top, drop_s=drop_s, steady=steady, steady_fps=steady_fps, frozen=frozen,
                     decoded=decoded, expected=expected)
    assert drop_s <= MAX_DROP_S, f"the lower layer arrived only {drop_s:.1f} s after the limit"
    assert lower[0]["frameWidth"] in sent.values(), f"{lower[0]['frameWidth']} px is no layer of {sent}"


# The picture keeps going behind the limit rather than stopping: most runs decode about as many frames as the
# camera sends after the drop; a paused stream decodes next to none. With str0m's egress about one full-suite
# run in three stalled instead (a burst of the new layer lost behind the deep queue, its NACKs unanswered until
# the keyframe request 4 s later; `pytest -s` shows the timeline). On the fast path (the default since
# 2026-12-06: its own estimator, retransmissions from a 2 s history per layer) this and the next three tests,
# non-strict xfails until then, passed 11 runs of 11 (2 full suites).
def test_the_constrained_subscriber_keeps_decoding_most_frames():
    assert _observed, "the drop test did not get far enough to measure"
    decoded, expected = _observed["decoded"], _observed["expected"]
    assert decoded >= 0.3 * expected, f"only {decoded} of about {expected:.0f} frames decoded behind the limit"


# The standard for this link, measured on the same samples: no freeze over 1 s, no return of the
# top layer while the limit holds, a clean last 5 s. Most runs meet it; about one in three does not: the
# SFU now probes the downlink (without probing it never climbs back, see the next test), and on a 300 kbps
# link with a 1 s queue a probe either lifts the estimate enough to bring the top layer back for a moment
# or queues up a freeze of 1-3 s. Holding upgrades back after a probe, tried in the sim, cost the 5 s
# recovery elsewhere (issue 6 note). That was str0m's estimator; see above for the fast path's record. Later
# the fast path failed it too, in 3 of 8 runs with a busy loop on one core: tbf's 4 KB bucket let a probe
# cluster (about 4 KB) through at 700 kbps, the estimate jumped there and the top layer came back until the
# queue grew. Since probes are put on trial (`fastpath::cc::trial`: 300 ms filled to the probed rate before
# the estimate takes it) 16 of 16 such runs passed.
def test_the_constrained_subscriber_sees_no_long_freeze_and_no_return_of_the_top_layer():
    assert _observed, "the drop test did not get far enough to measure"
    samples, top, drop_s = _observed["samples"], _observed["top"], _observed["drop_s"]
    steady, frozen = _observed["steady"], _observed["frozen"]
    assert all(s["frameWidth"] < top for s in samples if s["t"] >= drop_s), "the top layer came back under the limit"
    assert longest_freeze(samples) <= MAX_FREEZE_S, f"a freeze of {longest_freeze(samples):.2f} s"
    assert frozen <= MAX_TOTAL_FREEZE_S, f"frozen {frozen:.2f} s of {LIMITED_S} s behind the limit"
    brief = [(round(s["t"], 2), s["framesDecoded"], s["freezeCount"], s["totalFreezesDuration"]) for s in steady]
    assert steady[-1]["freezeCount"] == steady[0]["freezeCount"], (
        f"freezes in the last {STEADY_S} s under the limit (t, framesDecoded, freezeCount, frozen s): {brief}")
    assert _observed["steady_fps"] >= MIN_STEADY_FPS, f"{_observed['steady_fps']:.1f} fps at the lower layer"


# The SFU probes toward what the allocation wants (the fast path's estimator by itself, every 2.5 s while it
# wants more): the climb takes 2-4 s. With str0m's estimator about one run in six had not climbed within 15 s.
def test_the_subscriber_climbs_back_when_the_limit_is_lifted(server, link, room):
    pub, sub = room
    pub_id = pub.attendee_id
    # The top layer as it was before the limit: behind the limit nobody receives it, so the publisher
    # stops sending it (publish_targets' active_rids) and it must come back for the climb.
    assert _observed, "the drop test did not get far enough to measure"
    top = _observed["top"]
    before = camera_stats(sub, pub_id)
    link.unlimit()
    t0 = time.monotonic()
    try:
        back = poll(lambda: (c := camera_stats(sub, pub_id)) and c["frameWidth"] == top and c, MAX_CLIMB_S,
                    desc=f"the top layer ({top} px) again after the limit was lifted")
    finally:
        print(f"limit lifted: at {camera_stats(sub, pub_id)['frameWidth']} px after {time.monotonic() - t0:.1f} s")
        print("server:", server_counters(server))
    frozen = back["totalFreezesDuration"] - before["totalFreezesDuration"]
    assert frozen <= MAX_FREEZE_S, f"froze {frozen:.2f} s climbing back"
