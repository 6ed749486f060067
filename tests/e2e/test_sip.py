"""The SIP gateway end to end: the real `convene serve` with its gateway on a loopback port, driven by
SIPp scenarios (tests/e2e/sip/*.xml) and baresip, real SIP user agents from Debian.

Covered: OPTIONS keep-alive, late offer (SDP answer in the ACK), a call into a meeting with a checked
SDP answer, INFO DTMF and picture_fast_update, re-INVITE hold, UPDATE session refresh, BYE (UDP and TCP); an unknown meeting
(404 with a reason); DTMF by INFO into the IVR; malformed messages answered 400/505/513/416 with the
server still serving; baresip dialling a meeting and hanging up; BYE to live calls at shutdown (and
`convene gateway calls` listing the live call before); a SIP caller as an attendee of its meeting (roster, events); RFC 4733
DTMF over RTP into the IVR; a CANCEL racing admission; 422 for a too-short session timer; an OPTIONS
flood limited per source while another source is served; wrong meeting IDs limited per source
like the web's guesses; TCP connections limited per source; 420 for a required extension we lack.
baresip also dials over TLS (the self-signed certificate generated into the data directory).
Not yet: media (the gateway answers but bridges no audio).
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from accounts import admin_call, guest_grant, registered_user
from raw_signal import Raw
from conftest import _active_servers, serving
from convene_e2e import CONVENE_BIN, poll, start_server, stop_server

HERE = Path(__file__).parent
SCENARIOS = HERE / "sip"

pytestmark = pytest.mark.skipif(
    shutil.which("sipp") is None, reason="SIPp (Debian sip-tester) is not installed"
)


def free_sip_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free SIP port")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", 0))
        return u.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`convene serve` with the gateway on a free loopback port and its own RTP range."""
    with serving_sip(tmp_path_factory, rtp_lo=41000 + (os.getpid() % 400) * 20) as srv:
        yield srv


@contextlib.contextmanager
def serving_sip(tmp_path_factory, rtp_lo: int):
    """`convene serve` with its gateway on free loopback ports (`sip_port`, `sip_tls_port`) and 20 RTP ports
    from `rtp_lo`."""
    sip_port, tls_port = free_sip_port(), free_sip_port()
    with serving(tmp_path_factory, extra_args=("--sip", f"127.0.0.1:{sip_port}", "--sip-tls", f"127.0.0.1:{tls_port}",
                                               "--sip-rtp-ports", f"{rtp_lo}-{rtp_lo + 19}")) as srv:
        srv.sip_port = sip_port
        srv.sip_tls_port = tls_port
        yield srv


@pytest.fixture(scope="module")
def meeting_id(server) -> str:
    host = registered_user(server, name="Sip Host")
    return host.new_meeting()


def sipp_command(scenario: str, sip_port: int, service: str | None = None, transport: str = "u1") -> list[str]:
    """SIPp running one call of `scenario` against the gateway on loopback, from free local ports."""
    cmd = ["sipp", "-sf", str(SCENARIOS / scenario), f"127.0.0.1:{sip_port}",
           "-i", "127.0.0.1", "-p", str(free_sip_port()), "-mp", str(free_udp_port()),
           "-t", transport, "-m", "1", "-nostdin", "-timeout", "20s", "-trace_err"]
    return cmd + ["-s", service] if service else cmd


def sipp(server, scenario: str, tmp_path: Path, service: str | None = None, transport: str = "u1",
         extra: tuple[str, ...] = (), timeout: float = 30) -> subprocess.CompletedProcess:
    cmd = [*sipp_command(scenario, server.sip_port, service, transport), "-trace_msg", "-max_recv_loops", "1000",
           *extra]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        logs = "\n".join(p.read_text(errors="replace")[-6000:] for p in tmp_path.glob("*.log"))
        pytest.fail(f"sipp {scenario} exited {result.returncode}\n{result.stdout[-3000:]}\n"
                    f"{result.stderr[-3000:]}\n{logs}\n{server.logs(tail_chars=8000)}", pytrace=False)
    return result


def exchange(port: int, data: bytes, transport: str = "udp", timeout: float = 2.0) -> bytes:
    """Send one raw message and return the first answer (b"" if none came)."""
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.settimeout(timeout)
        s.bind(("127.0.0.1", 0))
        if transport == "udp":
            s.sendto(data, ("127.0.0.1", port))
        else:
            s.connect(("127.0.0.1", port))
            s.sendall(data)
        try:
            return s.recv(65536)
        except socket.timeout:
            return b""


def options(branch: str | None = None) -> str:
    branch = branch or "z9hG4bK" + uuid.uuid4().hex[:12]
    return (f"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch={branch};rport\r\n"
            f"From: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: {uuid.uuid4()}\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")


def test_options_keepalive_over_udp_and_tcp(server, tmp_path):
    sipp(server, "options.xml", tmp_path)
    sipp(server, "options.xml", tmp_path, transport="t1")


def test_call_into_a_meeting_over_udp_and_tcp(server, meeting_id, tmp_path):
    before = server.metric_sum("convene_gateway_calls_answered_total")
    sipp(server, "call_meeting.xml", tmp_path, service=meeting_id)
    sipp(server, "call_meeting.xml", tmp_path, service=meeting_id, transport="t1")
    assert server.metric_sum("convene_gateway_calls_answered_total") == before + 2
    logs = server.logs()
    assert "SIP caller admitted" in logs and meeting_id in logs


def test_late_offer_is_answered_in_the_ack(server, meeting_id, tmp_path):
    before = server.metric_sum("convene_gateway_calls_answered_total")
    sipp(server, "late_offer.xml", tmp_path, service=meeting_id)
    assert server.metric_sum("convene_gateway_calls_answered_total") == before + 1
    assert 'codec="PCMU"' in server.logs().split("SIPp Late")[-1]


def test_unknown_meeting_is_refused_with_a_reason(server, tmp_path):
    sipp(server, "unknown_meeting.xml", tmp_path, service="9999999999")
    # Not a meeting ID at all: 404 from the dial plan.
    reply = exchange(server.sip_port, invite("alice").encode())
    assert reply.startswith(b"SIP/2.0 100") or reply.startswith(b"SIP/2.0 404 No Such Meeting"), reply


def test_dtmf_by_info_into_the_ivr(server, meeting_id, tmp_path):
    digits = tmp_path / "digits.csv"
    digits.write_text("SEQUENTIAL\n" + ";".join([*meeting_id, "#"]) + ";\n")
    before = server.metric_sum("convene_gateway_dtmf_digits_total")
    admitted = server.logs().count("IVR caller admitted")
    sipp(server, "ivr_dtmf.xml", tmp_path, service="meet", extra=("-inf", str(digits)))
    assert server.metric_sum("convene_gateway_dtmf_digits_total") == before + 11
    # Admitted during the scenario's pause after '#', before its BYE.
    assert server.logs().count("IVR caller admitted") == admitted + 1


def invite(user: str, sdp: str | None = None) -> str:
    sdp = sdp if sdp is not None else (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0\r\n")
    return (f"INVITE sip:{user}@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK{uuid.uuid4().hex[:12]};rport\r\n"
            f"From: \"Probe\" <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:{user}@127.0.0.1>\r\n"
            f"Call-ID: {uuid.uuid4()}\r\nCSeq: 1 INVITE\r\nContact: <sip:probe@127.0.0.1:5999>\r\n"
            f"Max-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}")


def test_malformed_messages_get_errors_and_the_server_keeps_serving(server):
    good = options()
    cases = [
        (good.replace("SIP/2.0\r\nVia", "SIP/3.0\r\nVia", 1), b"SIP/2.0 505"),
        (good.replace("sip:127.0.0.1 SIP", "tel:+15551234 SIP", 1), b"SIP/2.0 416"),
        (good.replace("CSeq: 1 OPTIONS\r\n", ""), b"SIP/2.0 400"),
        (good.replace("Content-Length: 0", "Content-Length: 400"), b"SIP/2.0 400"),
        (good.replace("Max-Forwards: 70\r\n", "X-Big: " + "a" * 40000 + "\r\n"), b"SIP/2.0 513"),
        (good.rstrip("\r\n"), b"SIP/2.0 400"),
        (invite("1234567890", sdp="v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"), b"SIP/2.0 488"),
    ]
    for msg, want in cases:
        reply = exchange(server.sip_port, msg.encode())
        assert reply.startswith(want), (msg[:200], reply[:300])
    # No Via: nowhere to answer; dropped and counted.
    assert exchange(server.sip_port, b"garbage\r\n\r\n", timeout=0.5) == b""
    # A stream without Content-Length cannot be framed: the connection is closed.
    no_length = good.replace("Content-Length: 0\r\n", "")
    assert exchange(server.sip_port, no_length.encode(), transport="tcp") == b""
    assert exchange(server.sip_port, options().encode()).startswith(b"SIP/2.0 200")
    assert exchange(server.sip_port, options().replace("UDP", "TCP").encode(),
                    transport="tcp").startswith(b"SIP/2.0 200")
    assert server.metric_sum("convene_gateway_refused_total") >= 7


def free_sip_port_pair() -> int:
    """A SIP port whose next port is free too (baresip opens TLS on `sip_listen` + 1)."""
    while True:
        port = free_sip_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                t.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue


def baresip_tls_lines(tls_dir: Path, tmp_path: Path) -> str:
    """baresip config lines trusting the server's self-signed certificate in `tls_dir` (baresip takes
    certificate and key in one file; the certificate is also its CA)."""
    certkey = tmp_path / "certkey.pem"
    certkey.write_text((tls_dir / "cert.pem").read_text() + (tls_dir / "key.pem").read_text())
    return f"sip_certificate {certkey}\nsip_cafile {tls_dir / 'cert.pem'}\n"


def baresip_dial(server, tmp_path: Path, uri: str, tls: bool = False) -> str:
    """baresip dials `uri` with a tone as its microphone, hangs up after 4 s; returns its output."""
    conf = tmp_path / "baresip"
    conf.mkdir()
    sip_port = free_sip_port_pair()
    rtp = free_udp_port() & ~1
    tone = tmp_path / "tone.wav"
    write_tone(tone)
    tls_lines = baresip_tls_lines(Path(server.data_dir) / "sip-tls", tmp_path) if tls else ""
    (conf / "accounts").write_text("<sip:room@127.0.0.1>;regint=0;answermode=manual\n")
    (conf / "contacts").write_text("")
    (conf / "config").write_text(f"""poll_method epoll
sip_listen 127.0.0.1:{sip_port}
{tls_lines}net_interface 127.0.0.1
audio_player aufile,/dev/null
audio_source aufile,{tone}
audio_alert aufile,{tone}
ausrc_srate 8000
auplay_srate 8000
module_path /usr/lib/baresip/modules
module g711.so
module g722.so
module opus.so
module aufile.so
module_app account.so
module_app menu.so
module_app contact.so
rtp_ports {rtp}-{rtp + 10}
""")
    result = subprocess.run(["baresip", "-f", str(conf), "-e", f"/dial {uri}", "-t", "4"],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                            timeout=30)
    return result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip is not installed")
@pytest.mark.parametrize("transport", ["udp", "tls"])
def test_baresip_dials_a_meeting_and_hangs_up(server, meeting_id, tmp_path, transport):
    before = server.metric_sum("convene_gateway_calls_answered_total")
    ended_before = server.metric_sum("convene_gateway_calls_ended_total")
    rtp_before = server.metric_sum("convene_gateway_rtp_packets_total")
    if transport == "tls":
        uri = f"sip:{meeting_id}@127.0.0.1:{server.sip_tls_port};transport=tls"
    else:
        uri = f"sip:{meeting_id}@127.0.0.1:{server.sip_port}"
    out = baresip_dial(server, tmp_path, uri, tls=transport == "tls")
    assert server.metric_sum("convene_gateway_calls_answered_total") == before + 1, out[-3000:]
    assert re.search(r"call established", out, re.I), out[-3000:]
    assert "opus" in out, out[-3000:]
    deadline = time.monotonic() + 5
    while server.metric_sum("convene_gateway_calls_ended_total") < ended_before + 1:
        assert time.monotonic() < deadline, "baresip's BYE did not end the call\n" + out[-3000:]
        time.sleep(0.1)
    if transport == "tls":
        assert "from=tls:" in server.logs()
    # baresip sent its microphone (20 ms Opus packets) to the answer's RTP port for about 4 s.
    assert server.metric_sum("convene_gateway_rtp_packets_total") - rtp_before > 100


def write_tone(path: Path, seconds: int = 10, rate: int = 8000, hz: int = 440) -> None:
    """A 440 Hz stereo tone, baresip's microphone (it refuses to call without one; with Opus it reads
    two channels)."""
    import math
    import struct
    import wave
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<hh", v, v) for v in (
            int(12000 * math.sin(2 * math.pi * hz * i / rate)) for i in range(seconds * rate))))


def sipp_call(scenario: str, sip_port: int, meeting_id: str, cwd) -> subprocess.Popen:
    """One SIPp call over UDP running `scenario` in the background, dialling `meeting_id`."""
    return subprocess.Popen(sipp_command(scenario, sip_port, meeting_id), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_shutdown_sends_bye_to_live_calls(tmp_path_factory, tmp_path):
    """A separate server: a SIPp user agent in a call gets our BYE when the server stops."""
    workdir = tmp_path_factory.mktemp("convene-sip-bye")
    sip_port = free_sip_port()
    rtp_lo = 42000 + (os.getpid() % 400) * 20
    srv = start_server(workdir, ("--sip", f"127.0.0.1:{sip_port}", "--sip-tls", f"127.0.0.1:{free_sip_port()}",
                                 "--sip-rtp-ports", f"{rtp_lo}-{rtp_lo + 9}"))
    srv.sip_port = sip_port
    try:
        host = registered_user(srv, name="Bye Host")
        mid = host.new_meeting()
        proc = sipp_call("wait_for_bye.xml", sip_port, mid, tmp_path)
        deadline = time.monotonic() + 10
        while srv.metric_sum("convene_gateway_calls_answered_total") < 1:
            assert time.monotonic() < deadline, srv.logs()
            time.sleep(0.1)
        time.sleep(1.2)  # the ACK, and the call list's once-a-second rewrite
        listed = gateway_calls(srv)
        assert listed.returncode == 0, listed.stderr
        assert "meeting" in listed.stdout and mid in listed.stdout and "G722" in listed.stdout, listed.stdout
        assert "1 call(s)" in listed.stdout, listed.stdout
    finally:
        problems = stop_server(srv)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out[-3000:] + srv.logs(tail_chars=6000)
    assert not problems, problems
    gone = gateway_calls(srv)
    assert gone.returncode != 0 and "no SIP gateway is running" in gone.stderr, gone.stderr


def gateway_calls(srv) -> subprocess.CompletedProcess:
    """`convene gateway calls` against a server's data directory."""
    return subprocess.run([str(CONVENE_BIN), "gateway", "calls", "--data-dir", str(srv.data_dir)],
                          capture_output=True, text=True, timeout=10)


class RawUA:
    """A minimal SIP user agent over UDP for what SIPp scripts cannot time or shape: RTP DTMF,
    a CANCEL racing admission, floods."""

    def __init__(self, server, ip: str = "127.0.0.1"):
        self.server = server
        self.ip = ip
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.sock.settimeout(3)
        self.port = self.sock.getsockname()[1]
        self.call_id = str(uuid.uuid4())
        self.cseq = 1

    def close(self):
        self.sock.close()

    def send(self, text: str):
        self.sock.sendto(text.encode(), ("127.0.0.1", self.server.sip_port))

    def recv(self) -> str:
        return self.sock.recv(65536).decode(errors="replace")

    def recv_status(self, wanted: int) -> str:
        """Skip provisional answers until a response with `wanted` status."""
        while True:
            msg = self.recv()
            if msg.startswith(f"SIP/2.0 {wanted} "):
                return msg
            assert msg.startswith("SIP/2.0 1"), (wanted, msg[:300])

    def request(self, method: str, user: str, branch: str, to_tag: str = "", body: str = "",
                cseq: int | None = None, extra: str = "") -> str:
        cseq = self.cseq if cseq is None else cseq
        cseq_method = "INVITE" if method == "ACK" and not to_tag.strip() else method
        ctype = "Content-Type: application/sdp\r\n" if body else ""
        return (f"{method} sip:{user}@127.0.0.1:{self.server.sip_port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {self.ip}:{self.port};branch={branch};rport\r\n"
                f"From: \"Raw Room\" <sip:raw@{self.ip}:{self.port}>;tag=raw1\r\n"
                f"To: <sip:{user}@127.0.0.1>{to_tag}\r\nCall-ID: {self.call_id}\r\n"
                f"CSeq: {cseq} {cseq_method if method == 'ACK' else method}\r\n"
                f"Contact: <sip:raw@{self.ip}:{self.port}>\r\nMax-Forwards: 70\r\n{extra}{ctype}"
                f"Content-Length: {len(body)}\r\n\r\n{body}")


AUDIO_SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
             "m=audio 4002 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
             "a=fmtp:101 0-15\r\n")


def tag_of(msg: str) -> str:
    to = next(line for line in msg.split("\r\n") if line.lower().startswith("to:"))
    return ";tag=" + to.split(";tag=")[1].split(";")[0]


def test_rtp_dtmf_into_the_ivr(server, meeting_id):
    """RFC 4733 telephone-events (each key: start, updates, three end packets) to the answer's port."""
    ua = RawUA(server)
    try:
        branch = "z9hG4bK" + uuid.uuid4().hex[:10]
        ua.send(ua.request("INVITE", "meet", branch, body=AUDIO_SDP))
        ok = ua.recv_status(200)
        port = int(re.search(r"m=audio (\d+) RTP/AVP 0 101", ok).group(1))
        tag = tag_of(ok)
        ua.send(ua.request("ACK", "meet", "z9hG4bK" + uuid.uuid4().hex[:10], to_tag=tag))
        before = server.metric_sum("convene_gateway_dtmf_digits_total")
        admitted = server.logs().count("IVR caller admitted")
        events = {str(d): d for d in range(10)} | {"*": 10, "#": 11}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtp, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as intruder:
            seq = 0
            for n, key in enumerate([*meeting_id, "#"]):
                ts = 8000 * (n + 1)
                for end in (False, False, True, True, True):
                    seq += 1
                    header = bytes([0x80, 101]) + seq.to_bytes(2, "big") + ts.to_bytes(4, "big") + b"\0\0\0\x07"
                    payload = bytes([events[key], 0x8a if end else 0x0a, 0, 160])
                    rtp.sendto(header + payload, ("127.0.0.1", port))
                    time.sleep(0.002)
                if n == 0:
                    # Once the device's source is latched, keys from anywhere else are ignored.
                    forged = bytes([0x80, 101, 0, 99]) + (ts + 4000).to_bytes(4, "big") + b"\0\0\0\x09"
                    intruder.sendto(forged + bytes([9, 0x8a, 0, 160]), ("127.0.0.1", port))
        deadline = time.monotonic() + 5
        while server.logs().count("IVR caller admitted") == admitted:
            assert time.monotonic() < deadline, server.logs(tail_chars=5000)
            time.sleep(0.05)
        assert server.metric_sum("convene_gateway_dtmf_digits_total") == before + 11
        ua.cseq = 2
        ua.send(ua.request("BYE", "meet", "z9hG4bK" + uuid.uuid4().hex[:10], to_tag=tag))
        assert ua.recv_status(200)
    finally:
        ua.close()


def test_cancel_racing_admission(server, meeting_id):
    """INVITE and CANCEL back to back: 200 to the CANCEL and 487 to the INVITE, or, when admission
    won the race, a 200 OK to the INVITE (then the call is hung up with BYE). Never both, never neither."""
    ua = RawUA(server)
    try:
        branch = "z9hG4bK" + uuid.uuid4().hex[:10]
        ua.send(ua.request("INVITE", meeting_id, branch, body=AUDIO_SDP))
        ua.send(ua.request("CANCEL", meeting_id, branch))
        finals = {}
        while len(finals) < 2:
            msg = ua.recv()
            code = int(msg[8:11])
            method = re.search(r"CSeq: \d+ (\w+)", msg).group(1)
            if code >= 200:
                finals[method] = (code, msg)
        assert finals["CANCEL"][0] == 200, finals
        code, msg = finals["INVITE"]
        assert code in (200, 487), finals
        if code == 487:
            ua.send(ua.request("ACK", meeting_id, branch, to_tag=tag_of(msg)))
        else:
            tag = tag_of(msg)
            ua.send(ua.request("ACK", meeting_id, "z9hG4bK" + uuid.uuid4().hex[:10], to_tag=tag))
            ua.cseq = 2
            ua.send(ua.request("BYE", meeting_id, "z9hG4bK" + uuid.uuid4().hex[:10], to_tag=tag))
            ua.recv_status(200)
    finally:
        ua.close()


def test_session_timer_below_min_se_gets_422(server, meeting_id):
    ua = RawUA(server)
    try:
        ua.send(ua.request("INVITE", meeting_id, "z9hG4bK" + uuid.uuid4().hex[:10], body=AUDIO_SDP,
                           extra="Supported: timer\r\nSession-Expires: 30\r\n"))
        msg = ua.recv_status(422)
        assert "Min-SE: 90" in msg, msg
    finally:
        ua.close()


def test_an_options_flood_from_one_source_is_limited_and_others_still_served(server):
    refused_before = server.metric_sum("convene_gateway_refused_total")
    # From 127.0.0.3 (loopback too), so the other tests' source keeps its allowance.
    ua = RawUA(server, ip="127.0.0.3")
    try:
        for _ in range(60):
            ua.send(options().replace("127.0.0.1:5999", f"127.0.0.3:{ua.port}"))
        codes = []
        try:
            while len(codes) < 60:
                codes.append(int(ua.recv()[8:11]))
        except socket.timeout:
            pass
    finally:
        ua.close()
    assert codes.count(503) >= 30, codes
    assert server.metric_sum("convene_gateway_refused_total") >= refused_before + 30
    # Another source is served at once.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.2", 0))
        s.settimeout(2)
        s.sendto(options().encode(), ("127.0.0.1", server.sip_port))
        assert s.recv(65536).startswith(b"SIP/2.0 200")


def test_wrong_meeting_ids_are_limited_per_source_like_the_web(server, meeting_id):
    """Ten unknown meeting IDs from one address, then even a right one is refused for a while: the
    portal's guess limiter, shared with the web join endpoint."""
    ua = RawUA(server, ip="127.0.0.4")
    try:
        replies = []
        for n in range(11):
            ua.call_id = str(uuid.uuid4())
            ua.send(ua.request("INVITE", f"99999{n:05d}", "z9hG4bK" + uuid.uuid4().hex[:10], body=AUDIO_SDP))
            replies.append(ua.recv_status(403 if n == 10 else 404))
        assert "Unknown Meeting ID" in replies[0].split("\r\n")[0]
        assert replies[-1].startswith("SIP/2.0 403 Too Many Wrong Meeting IDs"), replies[-1][:200]
        ua.call_id = str(uuid.uuid4())
        ua.send(ua.request("INVITE", meeting_id, "z9hG4bK" + uuid.uuid4().hex[:10], body=AUDIO_SDP))
        assert ua.recv_status(403)
    finally:
        ua.close()
    # The web sees the same lockout for that address only; other addresses are unaffected.
    assert exchange(server.sip_port, options().encode()).startswith(b"SIP/2.0 200")


def test_tcp_connections_are_limited_per_source(server):
    """32 open connections from one address; the next is closed at once, while another address is
    still served over TCP."""
    held = []
    try:
        for _ in range(32):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.5", 0))
            s.connect(("127.0.0.1", server.sip_port))
            held.append(s)
        time.sleep(0.2)
        extra = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        held.append(extra)
        extra.settimeout(2)
        extra.bind(("127.0.0.5", 0))
        extra.connect(("127.0.0.1", server.sip_port))
        try:
            extra.sendall(options().replace("UDP", "TCP").encode())
            assert extra.recv(65536) == b""
        except ConnectionResetError:
            pass
        held[0].settimeout(2)
        held[0].sendall(options().replace("UDP", "TCP").encode())
        assert held[0].recv(65536).startswith(b"SIP/2.0 200")
        assert exchange(server.sip_port, options().replace("UDP", "TCP").encode(),
                        transport="tcp").startswith(b"SIP/2.0 200")
    finally:
        for s in held:
            s.close()


def test_a_required_extension_we_lack_gets_420(server, meeting_id):
    ua = RawUA(server)
    try:
        ua.send(ua.request("INVITE", meeting_id, "z9hG4bK" + uuid.uuid4().hex[:10], body=AUDIO_SDP,
                           extra="Require: 100rel\r\n"))
        msg = ua.recv_status(420)
        assert "Unsupported: 100rel" in msg, msg
    finally:
        ua.close()


def active_pro(server, account_id: str) -> list[dict]:
    day = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    status, reply = admin_call(server, "GET", f"/accounts/{account_id}/reports/active-pro?from={day}&to={day}")
    assert status == 200, reply
    return reply["ActiveProUsers"]


def test_a_sip_caller_is_an_attendee_of_its_meeting(server, tmp_path):
    """A SIPp call in a meeting is one of its attendees (client type `sip`, named after its From display
    name): web guests joining see it in the roster; a guest leaving does not end the meeting or hang up
    the call (the scenario fails on a BYE from the server); when the call hangs up, the others are told.
    Its events reach the journal billing reads, and the host is Active Pro because a room system took part."""
    host = registered_user(server, name="Roster Host")
    mid = host.new_meeting()
    answered = server.metric_sum("convene_gateway_calls_answered_total")
    proc = sipp_call("stay_then_hang_up.xml", server.sip_port, mid, tmp_path)
    guests = []
    try:
        deadline = time.monotonic() + 10
        while server.metric_sum("convene_gateway_calls_answered_total") < answered + 1:
            assert time.monotonic() < deadline, server.logs(tail_chars=5000)
            time.sleep(0.1)
        time.sleep(0.3)  # the ACK
        for name in ("First Guest", "Second Guest"):
            r = Raw(server)
            guests.append(r)
            joined = r.join(mid, guest_grant(server, mid, name)["token"])
            sip = [a for a in joined["attendees"] if a["client"] == "sip"]
            assert len(sip) == 1 and sip[0]["name"] == "SIPp Room", joined
        # The first guest leaves: the meeting goes on, and so does the call.
        guests[0].send({"type": "leave"})
        left = guests[1].recv_until("attendee_left", timeout=10)
        assert left["attendee_id"] != sip[0]["attendee_id"], left
        # The call hangs up by itself after 4 s: the remaining guest is told.
        left = guests[1].recv_until("attendee_left", timeout=10)
        assert left["attendee_id"] == sip[0]["attendee_id"], left
        guests[1].send({"type": "leave"})
        out, _ = proc.communicate(timeout=20)
    finally:
        for r in guests:
            r.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:] + server.logs(tail_chars=5000)
    # The caller's arrival and departure are in the event journal billing consumes, as a SIP attendee
    # (its writer thread appends them a moment after the shard publishes them).
    def journalled_with_leave() -> list[dict] | None:
        journal = (Path(server.data_dir) / "events" / "journal.jsonl").read_text().splitlines()
        mine = [json.loads(line) for line in journal if sip[0]["attendee_id"] in line]
        return mine if any(e.get("event") == "attendee_left" for e in mine) else None

    mine = poll(journalled_with_leave, 5, desc="the SIP caller's attendee_left in the journal")
    kinds = {(e.get("event"), e.get("client")) for e in mine}
    assert ("attendee_joined", "sip") in kinds, mine
    # With everyone gone the meeting ends, and its host is Active Pro for the day because a room system
    # took part (and three attendees did).
    rows = poll(lambda: active_pro(server, host.user["account_id"]), 10, desc="the host to become Active Pro")
    assert [(r["UserId"], r["Reason"]) for r in rows] == [
        (host.user["user_id"], "more_than_two_attendees+sip_or_h323")], rows
