"""Bandwidth tiers reach real publishers: Chromium's camera sender gets the meeting's tier as its
bitrate ceiling (publish_targets) as the meeting grows from 2 to 4 to 6 attendees, and its measured
outbound bitrate follows. The extra attendees are raw signaling sockets (they count as attendees for the
tier, cost no browser) and are gone before the server's 15 s connect timeout.

Chromium's built-in fake camera is a simple animation that encodes at about 165 kbps at 640x360, below
every tier, so it would show nothing: the publisher's camera here is a file of random noise (which no
encoder can compress), so the encoder runs at whatever ceiling it is given."""

from __future__ import annotations

import os
import time

import pytest

from accounts import guest_grant
from convene_e2e import poll
from raw_signal import Raw

SENDER_MAX_BITRATE_JS = """
() => {
  const pc = window.convene.pubPc;
  if (!pc) return null;
  const tx = pc.getTransceivers().find((t) => t.sender && t.sender.track && t.sender.track.kind === "video");
  if (!tx) return null;
  const enc = tx.sender.getParameters().encodings || [];
  return enc.length ? (enc[0].maxBitrate ?? null) : null;
}
"""

OUTBOUND_VIDEO_BYTES_JS = """
async () => {
  const report = await window.convene.pubPc.getStats();
  let bytes = 0;
  report.forEach((s) => { if (s.type === "outbound-rtp" && s.kind === "video") bytes += s.bytesSent || 0; });
  return [performance.now(), bytes];
}
"""

# A real encoder overshoots its target briefly (keyframes, rate-control reaction time of about a second);
# over a 3 s window after settling, 25 % above the ceiling is already a clear failure to apply it.
TOLERANCE = 1.25


def outbound_kbps(page, seconds: float) -> float:
    t0, b0 = page.evaluate(OUTBOUND_VIDEO_BYTES_JS)
    time.sleep(seconds)
    t1, b1 = page.evaluate(OUTBOUND_VIDEO_BYTES_JS)
    return (b1 - b0) * 8 / (t1 - t0)  # bytes per ms -> kbps


def noise_video(path, width=640, height=360, fps=24, frames=24):
    """A Y4M file (YUV 4:2:0) of grey with fresh low-amplitude noise in every frame: far more than an
    encoder can represent at a few hundred kbps, yet compressible enough at coarse quantizers that rate
    control can meet any tier (full-range noise cannot be squeezed under ~1.3 Mbps even at the coarsest
    H.264 quantizer, which would test the codec rather than us)."""
    luma = width * height
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n")
            f.write(bytes(112 + (b & 31) for b in os.urandom(luma)))
            f.write(bytes([128]) * (luma // 2))
    return path


@pytest.fixture(scope="module")
def pair(server, launch, host, tmp_path_factory):
    meeting_id = host.new_meeting()
    video = noise_video(tmp_path_factory.mktemp("video") / "noise.y4m")
    a = launch("Tiered", extra_args=(f"--use-file-for-fake-video-capture={video}",))
    b = launch("Viewer")
    a.page.goto(a.join_url(server.base_url, meeting_id).replace("quality=low", "quality=high"))
    a.wait_state("joined")
    b.open_and_join(server.base_url, meeting_id)
    return meeting_id, a, b


def test_the_camera_ceiling_follows_the_meeting_size(server, pair):
    meeting_id, a, _b = pair
    assert poll(lambda: a.page.evaluate(SENDER_MAX_BITRATE_JS) == 650_000, 10,
                desc="the 1:1 tier (650 kbps) on the camera sender")
    # Chromium's own estimate ramps up over loopback within seconds; noise then fills the ceiling.
    uncapped = poll(lambda: (k := outbound_kbps(a.page, 2)) >= 450 and k, 20,
                    desc="the camera to reach the 1:1 tier's range (450-650 kbps)")
    assert uncapped <= 650 * TOLERANCE, f"camera sends {uncapped:.0f} kbps under a 650 kbps ceiling"
    extra = []
    try:
        for n in range(2):
            r = Raw(server)
            r.join(meeting_id, guest_grant(server, meeting_id, f"Listener {n}")["token"])
            extra.append(r)
        assert poll(lambda: a.page.evaluate(SENDER_MAX_BITRATE_JS) == 450_000, 10,
                    desc="the 3-4 person tier (450 kbps)")
        for n in range(2, 4):
            r = Raw(server)
            r.join(meeting_id, guest_grant(server, meeting_id, f"Listener {n}")["token"])
            extra.append(r)
        assert poll(lambda: a.page.evaluate(SENDER_MAX_BITRATE_JS) == 184_000, 10,
                    desc="the 5-16 person tier (184 kbps)")
        time.sleep(2)  # let the encoder's rate control settle on the new ceiling
        kbps = outbound_kbps(a.page, 3)
        assert 184 / 2 <= kbps <= 184 * TOLERANCE, f"camera sends {kbps:.0f} kbps under a 184 kbps ceiling"
    finally:
        for r in extra:
            r.send({"type": "leave"})
            r.close()
    # Back to two: the 1:1 tier again.
    assert poll(lambda: a.page.evaluate(SENDER_MAX_BITRATE_JS) == 650_000, 10,
                desc="the 1:1 tier again after the others left")
