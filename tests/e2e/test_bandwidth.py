"""Bandwidth tiers reach real publishers: two Chromium publishers' cameras get the meeting's tier as their
ceiling (publish_targets) as the meeting grows from 2 to 4 to 6 attendees, and their measured outbound
bitrate settles near it. The extra attendees are raw signaling sockets (they count as attendees for the
tier and cost no browser: two cores cannot encode six noise cameras) and are gone before the server's 15 s
connect timeout.

What is measured: a 640x360 camera is sent as two simulcast layers (h/f, 320x180 / 640x360: libwebrtc
encodes no more than two from a 360-line capture), and the tier is the ceiling of the camera as a whole
(docs/signaling.md, `publish_targets`), which the web app splits over the layers (web/js/meeting.js
`splitCeiling`: 650 -> 162+487, 450 -> 112+337, 184 -> 184 on h alone, the top layer off). "Outbound
bitrate" is the sum of `bytesSent` over every outbound-rtp video stream of the camera (all layers: RTP
payload, retransmissions included, headers and padding not), over a 3 s window.

Tolerance: from 70 % to 115 % of the tier, for each camera, in a 3 s window (polled until both are in it,
so Chromium's ramp-up after joining and its re-allocation after a change, a second or two, are not
measured). The cameras are noise (`noise_video`), which no encoder can compress, so each layer's rate
control runs at its ceiling and the sum should sit at the tier. What a real encoder adds: OpenH264 runs a
little under its target on average (measured here for h alone at 184 kbps: 151-171), a keyframe landing in
the window overshoots (a noise keyframe is many frames' share), and Chromium holds a lower layer at its own
default target when that is below our share (150 kbps for 320x180, so 650 -> 150+487). Measured over three
runs: 650 -> 565-650 kbps, 450 -> 413-435, 184 -> 151-171. Below 70 % a ceiling (or a layer) is going
unused; above 115 % a ceiling is not applied.

The last test checks that the SFU really forwards different layers: the viewer's "Low bandwidth" button
caps its downlink at 300 kbps, which carries the lower layer (h, 320x180) but not the top one."""

from __future__ import annotations

import time

import pytest

from accounts import guest_grant
from convene_e2e import noise_video, poll
from raw_signal import Raw

# The camera sender's encodings and the last publish_targets ceiling the page applied.
SENDER_JS = """
() => {
  const pc = window.convene.pubPc;
  if (!pc) return null;
  const tx = pc.getTransceivers().find((t) => t.sender && t.sender.track && t.sender.track.kind === "video");
  if (!tx) return null;
  const encodings = (tx.sender.getParameters().encodings || [])
    .map((e) => ({ rid: e.rid || null, active: e.active !== false, maxBitrate: e.maxBitrate ?? null }));
  const applied = window.convene.log.filter((e) => e.ev === "publish_targets").pop();
  const target = applied ? applied.tracks.find((t) => t.mid === tx.mid) : null;
  return { encodings, max_kbps: target ? target.max_kbps : null };
}
"""

OUTBOUND_VIDEO_JS = """
async () => {
  const report = await window.convene.pubPc.getStats();
  let bytes = 0;
  const layers = {};
  const codecs = {};
  report.forEach((s) => { if (s.type === "codec") codecs[s.id] = s.mimeType; });
  report.forEach((s) => {
    if (s.type !== "outbound-rtp" || s.kind !== "video") return;
    bytes += s.bytesSent || 0;
    layers[s.rid || "-"] = { bytes: s.bytesSent || 0, width: s.frameWidth || 0, codec: codecs[s.codecId] || null,
                             limit: s.qualityLimitationReason || null };
  });
  return [performance.now(), bytes, layers];
}
"""

LOW, HIGH = 0.70, 1.15
# The web app's split of each tier over h/f (kbps; 0 = layer off), as in web/js/meeting.js.
SPLIT = {650: [162, 487], 450: [112, 337], 184: [184, 0]}


def outbound(pages, seconds: float = 3.0) -> list[tuple[float, dict]]:
    """Each page's camera outbound bitrate (kbps, all layers) over the same window, and per layer."""
    first = [p.evaluate(OUTBOUND_VIDEO_JS) for p in pages]
    time.sleep(seconds)
    out = []
    for p, (t0, b0, l0) in zip(pages, first):
        t1, b1, l1 = p.evaluate(OUTBOUND_VIDEO_JS)
        per_layer = {rid: {"kbps": round((l["bytes"] - l0.get(rid, {"bytes": 0})["bytes"]) * 8 / (t1 - t0)),
                           "width": l["width"], "codec": l["codec"], "limit": l["limit"]}
                     for rid, l in l1.items()}
        out.append(((b1 - b0) * 8 / (t1 - t0), per_layer))  # bytes per ms -> kbps
    return out


def sender_follows(page, tier: int) -> bool:
    s = page.evaluate(SENDER_JS)
    if not s or s["max_kbps"] != tier:
        return False
    active = {e["rid"]: e["maxBitrate"] for e in s["encodings"] if e["active"]}
    want = {rid: kbps * 1000 for rid, kbps in zip("hf", SPLIT[tier]) if kbps}
    return active == want


@pytest.fixture(scope="module")
def pair(server, launch, host, tmp_path_factory):
    meeting_id = host.new_meeting()
    video = noise_video(tmp_path_factory.mktemp("video") / "noise.y4m")
    a = launch("Tiered", extra_args=(f"--use-file-for-fake-video-capture={video}",))
    b = launch("Viewer", extra_args=(f"--use-file-for-fake-video-capture={video}",))
    for att in (a, b):
        att.page.goto(att.join_url(server.base_url, meeting_id).replace("quality=low", "quality=high"))
    for att in (a, b):
        att.wait_state("joined")
    return meeting_id, a, b


def settle_near(pages, tier: int, label: str, timeout: float = 12.0):
    """Polls 3 s windows until both cameras' outbound bitrate is within the tolerance of the tier."""
    last = []

    def within():
        nonlocal last
        last = outbound(pages)
        return all(LOW * tier <= kbps <= HIGH * tier for kbps, _ in last)

    try:
        poll(within, timeout, interval=0, desc=f"both cameras near the {label} tier")
    finally:
        print(f"{label} tier {tier} kbps: " + "; ".join(
            f"{p}: {kbps:.0f} kbps {layers}" for p, (kbps, layers) in zip(("Tiered", "Viewer"), last)))
    return last


def test_both_cameras_settle_near_the_tier_as_the_meeting_grows(server, pair):
    meeting_id, a, b = pair
    pages = [a.page, b.page]
    for p in pages:
        assert poll(lambda p=p: sender_follows(p, 650), 10, desc="the 1:1 tier (650 kbps) split over h/f")
    # Chromium's own estimate ramps up over loopback within seconds; noise then fills the ceiling.
    first = settle_near(pages, 650, "1:1", timeout=20)
    for _, layers in first:
        assert set(layers) == {"h", "f"}, f"expected two simulcast layers, got {layers}"
        assert {l["codec"] for l in layers.values()} == {"video/H264"}, f"layers not all H.264: {layers}"
    extra = []
    try:
        for n in range(2):
            r = Raw(server)
            r.join(meeting_id, guest_grant(server, meeting_id, f"Listener {n}")["token"])
            extra.append(r)
        for p in pages:
            assert poll(lambda p=p: sender_follows(p, 450), 10, desc="the 3-4 person tier (450 kbps)")
        settle_near(pages, 450, "3-4 person")
        for n in range(2, 4):
            r = Raw(server)
            r.join(meeting_id, guest_grant(server, meeting_id, f"Listener {n}")["token"])
            extra.append(r)
        for p in pages:
            assert poll(lambda p=p: sender_follows(p, 184), 10,
                        desc="the 5-16 person tier (184 kbps): h alone, the top layer off")
        settle_near(pages, 184, "5-16 person")
    finally:
        for r in extra:
            r.send({"type": "leave"})
            r.close()
    # Back to two: the 1:1 tier again, all three layers.
    for p in pages:
        assert poll(lambda p=p: sender_follows(p, 650), 10, desc="the 1:1 tier again after the others left")


def camera(att, publisher_id: str) -> dict:
    cams = [s for s in att.stats() if s["attendee_id"] == publisher_id and s["source"] == "camera"]
    return cams[0] if cams else {"frameWidth": 0, "framesDecoded": 0}


# After the meeting shrank back to two, each viewer should climb back to the other's top layer. Usually it
# does within seconds; in two of about ten full-suite runs on the 2-core machine it did not within 20 s: the
# viewer received only the lower layer through the 5-16 person tier, its estimate grew no further than that
# traffic (GCC allows 1.5x what is acknowledged) and str0m's probe toward the top layer did not lift it. The
# fast path's estimator probes every 2.5 s while the allocation wants more: it passed 11 runs of 11 (the
# climb took about a second where printed).
def test_viewers_climb_back_to_the_top_layer_after_the_meeting_shrinks(pair):
    _, a, b = pair
    a_id = a.attendee_id
    t0 = time.monotonic()
    try:
        poll(lambda: camera(b, a_id)["frameWidth"] == 640, 20, desc="the viewer to receive the top layer (640 px)")
    finally:
        print(f"climb after the meeting shrank: {camera(b, a_id)['frameWidth']} px after {time.monotonic() - t0:.1f} s")
        print("viewer's inbound streams:", [s for s in b.stats() if s["kind"] == "video"])
        print("publisher's layers:", outbound([a.page])[0])


def test_a_capped_subscriber_receives_a_lower_layer(server, pair):
    meeting_id, a, b = pair
    # Both rejoin: fresh connections and estimates, so this test starts where a new 1:1 call does,
    # whatever the climb above did.
    for att in (a, b):
        att.page.goto(att.join_url(server.base_url, meeting_id).replace("quality=low", "quality=high"))
    for att in (a, b):
        att.wait_state("joined")
    a_id = a.attendee_id
    poll(lambda: camera(b, a_id)["frameWidth"] == 640, 20, desc="the viewer to receive the top layer (640 px)")
    b.click("#lowbw-button")  # caps the viewer's downlink at 300 kbps: h (~150) fits, f (487) does not
    capped = poll(lambda: (c := camera(b, a_id))["frameWidth"] == 320 and c, 10,
                  desc="the lower layer (320 px) under the 300 kbps cap")
    time.sleep(1)
    assert camera(b, a_id)["framesDecoded"] > capped["framesDecoded"], "the viewer stopped decoding at 320 px"
    b.click("#lowbw-button")
    poll(lambda: camera(b, a_id)["frameWidth"] == 640, 20, desc="the top layer again once the cap is lifted")
