"""SIP media end to end: baresip (a real SIP user agent from Debian) dials a meeting with a 440 Hz tone as
its microphone while a headless Chromium attendee plays a 1 kHz tone as its own. The browser must hear
the room's 440 Hz (a WebAudio analyser on the room's track finds the peak there), and the room must hear
the browser's 1 kHz (baresip's recording of what it received, read with numpy-free Goertzel filters),
over each device codec the gateway bridges: Opus, G.722 and PCMU. With video, the browser decodes the
room's H.264 camera and the room decodes the browser's (the speaker shown to it). A caller of `meet`
hears the IVR's spoken welcome and keys its way into a meeting.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import time
import wave
from pathlib import Path

import pytest

from accounts import registered_user
from convene_e2e import Attendee, poll, wait_media_flowing
from test_sip import baresip_tls_lines, free_sip_port_pair, free_udp_port, serving_sip

pytestmark = pytest.mark.skipif(
    shutil.which("baresip") is None, reason="baresip is not installed"
)

ROOM_HZ = 440
BROWSER_HZ = 1000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serving_sip(tmp_path_factory, rtp_lo=45000 + os.getpid() % 200 * 20) as srv:
        yield srv


def write_tone(path: Path, hz: int, rate: int, channels: int, seconds: int = 30, amplitude: int = 12000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = bytearray()
        for i in range(seconds * rate):
            v = int(amplitude * math.sin(2 * math.pi * hz * i / rate))
            frames += struct.pack("<h", v) * channels
        w.writeframes(bytes(frames))


def goertzel_power(samples: list[float], rate: int, hz: float) -> float:
    """Power of one frequency in `samples` (the Goertzel filter: one DFT bin, no numpy needed)."""
    k = 2 * math.cos(2 * math.pi * hz / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + k * s1 - s2, s1
    return s1 * s1 + s2 * s2 - k * s1 * s2


def read_mono(path: Path) -> tuple[list[float], int]:
    with wave.open(str(path), "rb") as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        raw = w.readframes(w.getnframes())
    assert width == 2, f"{path}: {width}-byte samples"
    values = struct.unpack(f"<{len(raw) // 2}h", raw)
    return [float(v) for v in values[::channels]], rate


class Baresip:
    """baresip as a room system: dials `uri`, a tone as microphone, records what it hears, and stays in the
    call until `quit()` (or `seconds`)."""

    def __init__(self, tmp_path: Path, uri: str, codec: str, seconds: int = 25, video: bool = False,
                 tls_dir: Path | None = None):
        """With `video`, it also sends a test pattern as H.264 (libx264 through avcodec) and decodes
        what it receives; `snapshot()` saves the next decoded picture. With `tls_dir` (the server's
        self-signed certificate), it trusts that certificate and requires SRTP (SDES) for its media."""
        conf = tmp_path / "baresip"
        conf.mkdir()
        self.records = tmp_path / "heard"
        self.records.mkdir()
        tone = tmp_path / "room-tone.wav"
        # baresip reads its source at ausrc_srate; with Opus it opens two channels.
        write_tone(tone, ROOM_HZ, 48000, 2 if codec.startswith("opus") else 1)
        sip_port = free_sip_port_pair()
        rtp = free_udp_port() & ~1
        tls_lines, mediaenc = "", ""
        if tls_dir is not None:
            tls_lines = baresip_tls_lines(tls_dir, tmp_path) + "module srtp.so\n"
            mediaenc = ";mediaenc=srtp-mand"
        # Its video codecs are not pinned: pinning "H264" keeps only its first, packetization-mode 0 one.
        (conf / "accounts").write_text(
            f"\"Room 440\" <sip:room@127.0.0.1>;regint=0;answermode=manual;audio_codecs={codec}{mediaenc}\n")
        video_lines = """video_source fakevideo,nil
video_display fakevideo,nil
video_size 352x288
video_bitrate 300000
video_fps 15
module avcodec.so
module fakevideo.so
module snapshot.so
""" if video else ""
        (conf / "contacts").write_text("")
        (conf / "config").write_text(f"""poll_method epoll
sip_listen 127.0.0.1:{sip_port}
{tls_lines}net_interface 127.0.0.1
audio_player aufile,/dev/null
audio_source aufile,{tone}
audio_alert aufile,/dev/null
ausrc_srate 48000
auplay_srate 48000
ausrc_channels {2 if codec.startswith("opus") else 1}
snd_path {self.records}
module_path /usr/lib/baresip/modules
module g711.so
module g722.so
module opus.so
module aufile.so
module sndfile.so
module stdio.so
{video_lines}module_app account.so
module_app menu.so
module_app contact.so
rtp_ports {rtp}-{rtp + 10}
""")
        self.proc = subprocess.Popen(["baresip", "-f", str(conf), "-e", f"/dial {uri}", "-t", str(seconds)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, errors="replace")

    def command(self, line: str) -> None:
        """A command on baresip's console (the stdio module), e.g. `/snapshot_recv FILE`."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self) -> str:
        """Hang up (baresip quits on SIGINT, ending the call with a BYE) and return its output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out

    @staticmethod
    def readable(out: str) -> str:
        """Its output without the console's status lines and typed-command echoes."""
        lines = out.replace("\r", "\n").splitlines()
        return "\n".join(l for l in lines if l.strip() and "efps=" not in l and not l.startswith("/"))

    def heard(self) -> list[Path]:
        return sorted(self.records.glob("*dec*.wav"))


def dial(server, tmp_path: Path, mid: str, codec: str, transport: str, video: bool = False) -> Baresip:
    """baresip dials meeting `mid` over UDP, or over TLS with mandatory SRTP."""
    if transport == "tls":
        return Baresip(tmp_path, f"sip:{mid}@127.0.0.1:{server.sip_tls_port};transport=tls", codec,
                       video=video, tls_dir=Path(server.data_dir) / "sip-tls")
    return Baresip(tmp_path, f"sip:{mid}@127.0.0.1:{server.sip_port}", codec, video=video)


# The room's track in the browser: a WebAudio analyser over its receiver's track; the peak frequency
# over a second and a half of audio.
PEAK_JS = """
async (attendeeId) => {
  const c = window.convene;
  const t = c.tracks.find((t) => t.attendee_id === attendeeId && t.source === "audio");
  if (!t) return { error: "no audio track from the room" };
  const tx = c.subPc.getTransceivers().find((x) => String(x.mid) === String(t.mid));
  if (!tx) return { error: "no transceiver for mid " + t.mid };
  const ctx = new AudioContext();
  await ctx.resume();
  const source = ctx.createMediaStreamSource(new MediaStream([tx.receiver.track]));
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  analyser.smoothingTimeConstant = 0.5;
  source.connect(analyser);
  await new Promise((r) => setTimeout(r, 1500));
  const bins = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(bins);
  let best = 1;
  for (let i = 2; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
  const hz = (i) => i * ctx.sampleRate / analyser.fftSize;
  const near = (f) => bins[Math.round(f * analyser.fftSize / ctx.sampleRate)];
  const result = { peakHz: hz(best), peakDb: bins[best], at1000Db: near(1000), at200Db: near(200) };
  await ctx.close();
  return result;
}
"""


@pytest.mark.parametrize("codec,transport", [
    ("opus/48000/2", "udp"), ("G722/8000/1", "udp"), ("PCMU/8000/1", "udp"),
    # Over TLS with SDES-SRTP, which baresip makes mandatory: the call only works encrypted.
    ("G722/8000/1", "tls"),
])
def test_a_room_and_a_browser_hear_each_other(server, pw, tmp_path, codec, transport):
    host = registered_user(server, name="Audio Host")
    mid = host.new_meeting()
    browser_tone = tmp_path / "browser-tone.wav"
    write_tone(browser_tone, BROWSER_HZ, 48000, 1)
    answered = server.metric_sum("convene_gateway_calls_answered_total")
    frames = server.metric_sum("convene_gateway_audio_frames_total")
    att = Attendee.launch(pw, "Listener", extra_args=(f"--use-file-for-fake-audio-capture={browser_tone}",))
    room = None
    try:
        att.open_and_join(server.base_url, mid)
        room = dial(server, tmp_path, mid, codec, transport)
        poll(lambda: server.metric_sum("convene_gateway_calls_answered_total") > answered, 15,
             desc="the call to be answered")
        if transport == "tls":
            assert re.search(rf"SIP caller admitted call=\d+ meeting={mid} .*srtp=true", server.logs()), \
                server.logs(tail_chars=3000)
        room_id = poll(lambda: next((t["attendee_id"] for t in att.tracks() if t["source"] == "audio"), None),
                       15, desc="the room's audio track in the browser")
        wait_media_flowing(att, [(room_id, "audio")], timeout=20)
        # The browser hears the room's tone.
        peak = att.page.evaluate(PEAK_JS, room_id)
        assert "error" not in peak, peak
        assert abs(peak["peakHz"] - ROOM_HZ) < 15, (peak, server.logs(tail_chars=4000))
        assert peak["peakDb"] > -70, peak
        # Let the room hear the browser for a few seconds, then hang up.
        time.sleep(4)
    finally:
        att.close()
        out = room.finish() if room else ""
    assert "call established" in out.lower(), Baresip.readable(out)[-3000:]
    # Operators see the bridging: several seconds of 20 ms frames each way, and the time it cost.
    assert server.metric_sum("convene_gateway_audio_frames_total") - frames > 2 * 200
    assert server.metric_sum("convene_gateway_transcode_seconds_total") > 0
    recordings = room.heard()
    assert recordings, f"baresip recorded nothing\n{Baresip.readable(out)[-3000:]}"
    samples, rate = read_mono(recordings[0])
    # The loudest second of what the room heard (the browser talked for part of the call only).
    second = rate
    windows = [samples[i:i + second] for i in range(0, max(1, len(samples) - second), second // 2)]
    loudest = max(windows, key=lambda w: sum(x * x for x in w))
    rms = math.sqrt(sum(x * x for x in loudest) / max(1, len(loudest)))
    assert rms > 300, f"the room heard silence (rms {rms:.0f}) in {recordings[0].name}\n{Baresip.readable(out)[-2000:]}"
    at_tone = goertzel_power(loudest, rate, BROWSER_HZ)
    others = max(goertzel_power(loudest, rate, hz) for hz in (300, 440, 700, 1500, 2500))
    assert at_tone > 10 * others, (at_tone, others, rms)


@pytest.mark.parametrize("transport", ["udp", "tls"])
def test_a_room_and_a_browser_see_each_other(server, pw, tmp_path, transport):
    """H.264 both ways without transcoding: the browser decodes the room's camera (baresip's test pattern
    through libx264), and the room receives the browser's camera, the meeting's only speaker, and decodes
    it (baresip saves a decoded picture). Over TLS the video (and its RTCP) is SRTP."""
    host = registered_user(server, name="Video Host")
    mid = host.new_meeting()
    sent = server.metric_sum("convene_gateway_video_packets_total")
    att = Attendee.launch(pw, "Viewer")
    room = None
    try:
        att.open_and_join(server.base_url, mid)
        room = dial(server, tmp_path, mid, "opus/48000/2", transport, video=True)
        room_id = poll(lambda: next((t["attendee_id"] for t in att.tracks() if t["source"] == "camera"), None),
                       15, desc="the room's camera track in the browser")
        flowing = wait_media_flowing(att, [(room_id, "camera"), (room_id, "audio")], timeout=25)
        assert any("H264" in c for c in flowing[(room_id, "camera")]["codecs"]), flowing
        # The room shows the browser (the only camera) and decodes it.
        picture = tmp_path / "room-saw.png"
        poll(lambda: server.metric_sum("convene_gateway_video_packets_total") - sent > 100, 15,
             desc="video relayed")
        for _ in range(10):
            room.command(f"/snapshot_recv {picture}")
            time.sleep(1)
            if picture.exists() and picture.stat().st_size > 0:
                break
    finally:
        att.close()
        out = room.finish() if room else ""
    assert picture.exists() and picture.stat().st_size > 1000, f"baresip decoded no picture\n{Baresip.readable(out)[-4000:]}"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_ivr_speaks_and_a_room_keys_its_way_into_the_meeting(server, tmp_path):
    """baresip dials `meet`: it hears the spoken welcome (speech-like energy in what it recorded before
    keying anything), keys the meeting ID and `#` as RFC 4733 DTMF on its console, and joins the meeting
    as its SIP attendee."""
    host = registered_user(server, name="IVR Host")
    mid = host.new_meeting()
    answered = server.metric_sum("convene_gateway_calls_answered_total")
    digits = server.metric_sum("convene_gateway_dtmf_digits_total")
    room = Baresip(tmp_path, f"sip:meet@127.0.0.1:{server.sip_port}", "PCMU/8000/1")
    try:
        poll(lambda: server.metric_sum("convene_gateway_calls_answered_total") > answered, 15,
             desc="the IVR call to be answered")
        time.sleep(6)  # the welcome prompt (about 5 s)
        for key in f"{mid}#":
            room.command(key)
            time.sleep(0.25)
        poll(lambda: re.search(rf"IVR caller admitted call=\d+ meeting={mid}", server.logs()), 10,
             desc="the keyed meeting ID to admit the room")
        time.sleep(2)  # the "joining" prompt
    finally:
        out = room.finish()
    assert server.metric_sum("convene_gateway_dtmf_digits_total") - digits == 11, Baresip.readable(out)[-3000:]
    events = [json.loads(line) for line in
              (Path(server.data_dir) / "events" / "journal.jsonl").read_text().splitlines()]
    assert any(e.get("meeting") == mid and e.get("event") == "attendee_joined" and e.get("client") == "sip"
               for e in events), [e for e in events if e.get("meeting") == mid]
    recordings = room.heard()
    assert recordings, Baresip.readable(out)[-3000:]
    samples, rate = read_mono(recordings[0])
    # What it heard in its first five seconds: the welcome, a voice (energy in most 100 ms windows,
    # unlike the silence a prompt-less IVR sends), spread over speech frequencies rather than one tone.
    first = samples[: 5 * rate]
    window = rate // 10
    loud = [i for i in range(0, len(first) - window, window)
            if math.sqrt(sum(x * x for x in first[i:i + window]) / window) > 200]
    assert len(loud) > 15, f"{len(loud)} of 50 windows carried sound"
    bands = [goertzel_power(first, rate, hz) for hz in (300, 500, 800, 1200, 2000)]
    assert sum(1 for b in bands if b > max(bands) / 1000) >= 3, bands
