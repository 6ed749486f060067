"""End-to-end meeting checks: three browsers, screen share, leave, late join.

The tests in this module are steps of one meeting and run in file order
(each one builds on the state the previous left behind).
"""

from __future__ import annotations

import time

import pytest

from convene_e2e import (
    FIRST_DECODE_WATCH_JS,
    Attendee,
    aggregate,
    poll,
    wait_media_flowing,
)

# The only hard timing requirements (from the issue); everything else polls generously.
TILE_REMOVAL_LIMIT_S = 2.0
LATE_JOIN_DECODE_LIMIT_MS = 1000.0


class Meeting:
    def __init__(self, server, launch, meeting_id):
        self.server = server
        self.launch = launch
        self.id = meeting_id
        self.present: list[Attendee] = []
        self.ids: dict[str, str] = {}  # name -> attendee_id

    def join(self, name: str, init_scripts: tuple[str, ...] = ()) -> Attendee:
        a = self.launch(name, init_scripts)
        a.open_and_join(self.server.base_url, self.id)
        self.ids[a.name] = a.attendee_id
        self.present.append(a)
        return a

    def by_name(self, name: str) -> Attendee:
        return next(a for a in self.present if a.name == name)

    def others(self, a: Attendee) -> list[Attendee]:
        return [o for o in self.present if o is not a]


@pytest.fixture(scope="module")
def meeting(server, launch, host):
    m = Meeting(server, launch, host.new_meeting())
    for name in ("Ada", "Grace", "Linus"):
        m.join(name)
    return m


def assert_no_error_banner(meeting):
    for a in meeting.present:
        text = a.banner_text()
        assert text == "", f"{a.name} shows an error banner: {text!r}"


def remote_tile(a: Attendee, attendee_id: str, source: str = "camera"):
    return a.page.query_selector(f'.tile[data-attendee-id="{attendee_id}"][data-source="{source}"]')


# --------------------------------------------------------------------------- 1


def test_three_browsers_exchange_audio_and_video(meeting):
    """Each of three attendees decodes both others' video and receives their audio (with energy)."""
    assert len(set(meeting.ids.values())) == 3, f"attendee ids not distinct: {meeting.ids}"
    for a in meeting.present:
        expect = []
        for o in meeting.others(a):
            oid = meeting.ids[o.name]
            expect += [(oid, "camera"), (oid, "audio")]
        after = wait_media_flowing(a, expect)
        codecs = {k: sorted(v["codecs"]) for k, v in after.items()}
        print(f"{a.name}: flowing; codecs per (attendee, source): {codecs}")
        # Remote audio is actually being played: one playing <audio> per other attendee.
        playing = a.page.evaluate("""() => [...document.querySelectorAll('#audio-sink audio')]
            .filter((el) => !el.paused && el.srcObject && el.srcObject.getAudioTracks().length)
            .map((el) => el.dataset.attendeeId)""")
        for o in meeting.others(a):
            assert meeting.ids[o.name] in playing, f"{a.name}: no playing <audio> for {o.name} (playing: {playing})"
    assert_no_error_banner(meeting)


def test_tiles_show_names_and_speaking_indicator(meeting):
    for a in meeting.present:
        # Own tile.
        poll(lambda: a.page.query_selector('.tile[data-self="1"][data-source="camera"]'), 10,
             desc=f"{a.name}: self tile")
        own = a.page.inner_text('.tile[data-self="1"][data-source="camera"] .tile-name')
        assert a.name in own, f"{a.name}: self tile label is {own!r}"
        # One tile per other attendee, named.
        for o in meeting.others(a):
            oid = meeting.ids[o.name]
            tile = poll(lambda: remote_tile(a, oid), 10, desc=f"{a.name}: tile of {o.name}")
            label = tile.query_selector(".tile-name").inner_text()
            assert label == o.name, f"{a.name}: tile of {o.name} is labelled {label!r}"
            assert tile.get_attribute("data-has-video") == "1", f"{a.name}: tile of {o.name} has no video"
        a.page.screenshot(path=f"/tmp/convene-e2e-{a.name}-meeting.png")

    # The fake microphone beeps; the server's `speaking` messages must light up some tile.
    def someone_speaking():
        for a in meeting.present:
            if a.page.query_selector('.tile.speaking[data-speaking="1"]'):
                return a
        return None

    a = poll(someone_speaking, 10, interval=0.05, desc="a speaking indicator on any tile")
    a.page.screenshot(path=f"/tmp/convene-e2e-{a.name}-speaking.png")


# --------------------------------------------------------------------------- 2


def test_screen_share_is_decoded_by_others(meeting):
    sharer = meeting.by_name("Ada")
    sid = meeting.ids["Ada"]
    sharer.click("#share-button")
    poll(lambda: sharer.page.inner_text("#share-button") == "Stop sharing", 10,
         desc=f"{sharer.name}: screen share started (banner: {sharer.banner_text()!r})")
    assert sharer.page.query_selector('.tile[data-self="1"][data-source="screen"]'), "no own screen preview tile"
    for a in meeting.others(sharer):
        tile = poll(lambda: remote_tile(a, sid, "screen"), 20, desc=f"{a.name}: screen tile of Ada")
        assert tile.query_selector(".tile-name").inner_text() == "Ada (screen)"
        wait_media_flowing(a, [(sid, "screen"), (sid, "camera")])
    assert_no_error_banner(meeting)
    meeting.by_name("Grace").page.screenshot(path="/tmp/convene-e2e-Grace-screen.png")


def test_stopping_screen_share_removes_screen_tile(meeting):
    sharer = meeting.by_name("Ada")
    sid = meeting.ids["Ada"]
    sharer.click("#share-button")
    poll(lambda: sharer.page.inner_text("#share-button") == "Share screen", 10, desc="share stopped")
    for a in meeting.others(sharer):
        poll(lambda: remote_tile(a, sid, "screen") is None, 15, interval=0.1,
             desc=f"{a.name}: Ada's screen tile removed")
        poll(lambda: not any(t["attendee_id"] == sid and t["source"] == "screen" for t in a.tracks()), 15,
             desc=f"{a.name}: Ada's screen mid gone from tracks")
        # Camera keeps flowing after the renegotiation.
        wait_media_flowing(a, [(sid, "camera")])


# --------------------------------------------------------------------------- 3


def test_leaver_tile_disappears_within_2s(meeting):
    leaver = meeting.by_name("Linus")
    lid = meeting.ids["Linus"]
    observers = meeting.others(leaver)
    for o in observers:
        assert remote_tile(o, lid) is not None, f"{o.name} has no tile for Linus before the leave"

    t0 = time.monotonic()
    leaver.click("#leave-button")
    pending = {o.name: o for o in observers}
    gone_after = {}
    while pending and time.monotonic() - t0 <= TILE_REMOVAL_LIMIT_S:
        for name, o in list(pending.items()):
            if o.page.query_selector(f'.tile[data-attendee-id="{lid}"]') is None:
                gone_after[name] = time.monotonic() - t0
                del pending[name]
        time.sleep(0.05)
    assert not pending, (f"Linus's tile still shown {TILE_REMOVAL_LIMIT_S}s after Leave for: {sorted(pending)} "
                         f"(removed for others after {gone_after})")
    print(f"tile removed after: {gone_after}")
    leaver.wait_state("left", 5)
    meeting.present.remove(leaver)
    leaver.close()

    # And the media plane follows: Linus's mids leave the subscribe map; the rest keeps flowing.
    for o in meeting.present:
        poll(lambda: not any(t["attendee_id"] == lid for t in o.tracks()), 15,
             desc=f"{o.name}: Linus's tracks removed from the subscribe map")
        assert o.page.query_selector(f'#audio-sink audio[data-attendee-id="{lid}"]') is None
    for o in meeting.present:
        other = meeting.others(o)[0]
        wait_media_flowing(o, [(meeting.ids[other.name], "camera"), (meeting.ids[other.name], "audio")])


# --------------------------------------------------------------------------- 4


def test_late_joiner_decodes_video_within_1s(meeting):
    late = meeting.join("Margaret", init_scripts=(FIRST_DECODE_WATCH_JS,))
    others = {meeting.ids[o.name]: o.name for o in meeting.others(late)}

    def cameras_subscribed():
        mids = {t["attendee_id"]: t["mid"] for t in late.tracks() if t["source"] == "camera"}
        return mids if set(others) <= set(mids) else None

    cam_mids = poll(cameras_subscribed, 20, desc="late joiner subscribed to everyone's camera")

    def all_decoded():
        first = late.page.evaluate("() => window.__e2eFirstDecode")
        return first if all(m in first for m in cam_mids.values()) else None

    first_decode = poll(all_decoded, 20, interval=0.1, desc="late joiner decoding every camera")
    log = late.page.evaluate("() => window.convene.log")
    answers = [e for e in log if e["ev"] == "subscribe_answer"]
    latencies = {}
    for aid, mid in cam_mids.items():
        sent = next((e["t"] for e in answers if mid in e["mids"]), None)
        assert sent is not None, f"no subscribe_answer logged for mid {mid}: {answers}"
        latencies[others[aid]] = first_decode[mid] - sent
    print(f"late joiner: first decoded frame after subscribe answer (ms): {latencies}")
    slow = {n: round(ms) for n, ms in latencies.items() if ms > LATE_JOIN_DECODE_LIMIT_MS}
    assert not slow, f"late joiner needed more than {LATE_JOIN_DECODE_LIMIT_MS:.0f} ms to decode: {slow} (all: {latencies})"

    # Everyone now sees everyone.
    for a in meeting.present:
        expect = []
        for o in meeting.others(a):
            oid = meeting.ids[o.name]
            expect += [(oid, "camera"), (oid, "audio")]
            poll(lambda: remote_tile(a, oid), 10, desc=f"{a.name}: tile of {o.name}")
        wait_media_flowing(a, expect)
    assert_no_error_banner(meeting)
    late.page.screenshot(path="/tmp/convene-e2e-Margaret-meeting.png")


CAMERA_CODEC_ORDER_JS = r"""
() => {
  const pc = window.convene.pubPc;
  const caps = (RTCRtpSender.getCapabilities("video") || {codecs: []}).codecs;
  const h264 = caps.some((c) => /h264/i.test(c.mimeType) && /packetization-mode=1/.test(c.sdpFmtpLine || "")
                                && /profile-level-id=42e01f/i.test(c.sdpFmtpLine || ""));
  const tx = pc.getTransceivers().find((t) => t.sender.track && t.sender.track.kind === "video"
                                            && !/screen/i.test(t.sender.track.label));
  const sdp = pc.localDescription.sdp;
  const section = sdp.split(/\r\n(?=m=)/).find((m) => m.startsWith("m=video") && m.includes(`a=mid:${tx.mid}\r\n`));
  const firstPt = section.split("\r\n")[0].split(" ")[3];
  const rtpmap = (section.match(new RegExp(`a=rtpmap:${firstPt} ([^\r]+)`)) || [])[1];
  const fmtp = (section.match(new RegExp(`a=fmtp:${firstPt} ([^\r]+)`)) || [])[1] || "";
  return { h264, rtpmap, fmtp };
}
"""


def test_camera_offer_prefers_h264_constrained_baseline(meeting):
    """The web app puts H.264 constrained baseline (packetization-mode 1) first for the camera."""
    for a in meeting.present:
        r = a.page.evaluate(CAMERA_CODEC_ORDER_JS)
        if not r["h264"]:
            pytest.skip("this Chromium has no H.264 encoder")
        assert r["rtpmap"].lower().startswith("h264/90000"), f"{a.name}: first camera codec is {r}"
        assert "packetization-mode=1" in r["fmtp"] and "42e01f" in r["fmtp"].lower(), f"{a.name}: {r}"
        decoded = {k: sorted(v["codecs"]) for k, v in aggregate(a.stats()).items()}
        print(a.name, "decodes", decoded)
        # The server answers with H.264 first too, so cameras really travel as H.264 (room systems need it).
        cameras = [codecs for (_, source), codecs in decoded.items() if source == "camera"]
        assert cameras and all(c == ["video/H264"] for c in cameras), f"{a.name}: camera codecs {decoded}"
