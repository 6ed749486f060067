"""Hostile input while a two-browser meeting is in progress: junk UDP on the media ports and
malformed signaling. Every bad message must get the documented `error` code, and the
meeting must carry on undisturbed."""

from __future__ import annotations

import json
import os
import socket
import struct
import time

import pytest
import websocket  # websocket-client

from accounts import guest_grant, server_token_seed, sign_token
from convene_e2e import poll, wait_media_flowing
from raw_signal import Raw

DROPPED_METRIC = "convene_media_packets_dropped_total"


@pytest.fixture(scope="module")
def meeting(server, launch, host):
    mid = host.new_meeting()
    a = launch("Alice")
    b = launch("Bob")
    a.open_and_join(server.base_url, mid)
    b.open_and_join(server.base_url, mid)
    ids = {a.name: a.attendee_id, b.name: b.attendee_id}
    # Media must be flowing before we start throwing junk at the server.
    wait_media_flowing(a, [(ids["Bob"], "camera"), (ids["Bob"], "audio")])
    wait_media_flowing(b, [(ids["Alice"], "camera"), (ids["Alice"], "audio")])
    return {"id": mid, "a": a, "b": b, "ids": ids, "other_id": host.new_meeting()}


# --------------------------------------------------------------------------- UDP junk


def stun_binding_request() -> bytes:
    # type=Binding Request, length=0, magic cookie, 96-bit transaction id
    return struct.pack("!HHI", 0x0001, 0, 0x2112A442) + os.urandom(12)


def junk_datagrams() -> dict[str, bytes]:
    dtls_header = bytes([22, 0xFE, 0xFD]) + b"\x00\x00" + b"\x00" * 5 + b"\x01" + struct.pack("!H", 64)
    rtp_header = bytes([0x80, 96]) + struct.pack("!HII", 1, 0, 0x12345678)
    return {
        "random": os.urandom(200),
        "truncated_stun": stun_binding_request()[:10],
        "truncated_dtls": dtls_header + b"\x01\x00\x00",  # record claims 64 bytes, carries 3
        "truncated_rtp": rtp_header[:7],
        "random_small": os.urandom(1),
    }


def test_udp_junk_on_every_media_port(server, meeting):
    dropped_before = server.metric_sum(DROPPED_METRIC)
    datagrams = junk_datagrams()
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _round in range(3):
            for port in server.media_ports:
                for payload in datagrams.values():
                    s.sendto(payload, ("127.0.0.1", port))
                    sent += 1
    assert sent == 3 * len(server.media_ports) * len(datagrams)

    # The server counts what it drops; the total must become non-zero (and grow).
    def dropped():
        v = server.metric_sum(DROPPED_METRIC)
        return v if v > dropped_before else None

    total = poll(dropped, 10, desc=f"{DROPPED_METRIC} to grow above {dropped_before} after {sent} junk datagrams")
    assert total > 0
    assert server.alive(), "server died after UDP junk"


# --------------------------------------------------------------------------- signaling junk


@pytest.fixture
def raw(server):
    socks = []

    def _open():
        r = Raw(server)
        socks.append(r)
        return r

    yield _open
    for r in socks:
        r.close()


@pytest.mark.parametrize(
    "payload,code",
    [
        pytest.param('{"type": "join", "meeting": "x"', "bad_message", id="malformed_json"),
        pytest.param("not json at all", "bad_message", id="not_json"),
        pytest.param("[1, 2, 3]", "bad_message", id="json_array"),
        pytest.param('"join"', "bad_message", id="json_string"),
        pytest.param("42", "bad_message", id="json_number"),
        pytest.param('{"meeting": "x"}', "bad_message", id="no_type"),
        pytest.param('{"type": "teleport"}', "unknown_type", id="unknown_type"),
        pytest.param('{"type": "subscribe_answer", "sdp": "v=0\\r\\n"}', "not_joined", id="subscribe_answer_before_join"),
        pytest.param('{"type": "publish_offer", "sdp": "v=0\\r\\n", "tracks": []}', "not_joined", id="publish_offer_before_join"),
        pytest.param('{"type": "mute", "source": "audio", "muted": true}', "not_joined", id="mute_before_join"),
        pytest.param('{"type": "join", "meeting": "bad id!", "name": "Eve"}', "invalid_field", id="join_bad_meeting_id"),
        pytest.param('{"type": "join", "meeting": "' + "m" * 65 + '", "name": "Eve"}', "invalid_field", id="join_meeting_id_too_long"),
        pytest.param('{"type": "join", "meeting": "1234567890", "name": "Eve"}', "unauthorized", id="join_without_token"),
        pytest.param('{"type": "join", "meeting": "1234567890", "token": "v1.e30.AAAA"}', "unauthorized", id="join_garbage_token"),
        pytest.param('{"type": "join", "meeting": 42, "name": "Eve"}', "bad_message", id="join_meeting_wrong_type"),
    ],
)
def test_bad_signaling_message(raw, meeting, payload, code):
    r = raw()
    r.send(payload)
    r.expect_error(code)
    r.assert_still_open()


def test_binary_frame(raw, meeting):
    r = raw()
    r.ws.send_binary(b"\x00\x01\x02garbage\xff")
    r.expect_error("bad_message")
    r.assert_still_open()


def browser_offer_sdp(page) -> str:
    return page.evaluate("""async () => {
      const pc = new RTCPeerConnection();
      pc.addTransceiver("audio", {direction: "sendonly"});
      pc.addTransceiver("video", {direction: "sendonly"});
      const offer = await pc.createOffer();
      pc.close();
      return offer.sdp;
    }""")


def test_publish_offer_without_fingerprint(raw, meeting):
    sdp = browser_offer_sdp(meeting["a"].page)
    assert "a=fingerprint:" in sdp
    stripped = "".join(line for line in sdp.splitlines(keepends=True) if not line.startswith("a=fingerprint:"))
    r = raw()
    grant = guest_grant(r.server, meeting["id"], "Mallory")
    r.send({"type": "join", "meeting": meeting["id"], "token": grant["token"]})
    joined = r.recv_until("joined")
    assert joined["meeting"] == meeting["id"]
    assert joined["attendee_id"] == grant["attendee_id"]
    r.send({"type": "publish_offer", "sdp": stripped,
            "tracks": [{"mid": "0", "source": "audio"}, {"mid": "1", "source": "camera"}]})
    r.expect_error("bad_sdp")
    r.assert_still_open()
    # Downlink caps: too low or not a number are refused; a sane one is taken silently.
    r.send({"type": "downlink_cap", "kbps": 10})
    r.expect_error("invalid_field")
    r.send({"type": "downlink_cap", "kbps": "fast"})
    r.expect_error("bad_message")
    r.send({"type": "downlink_cap", "kbps": 300})
    r.send({"type": "downlink_cap", "kbps": None})
    r.assert_still_open()
    # A second join on the same socket is refused too.
    r.send({"type": "join", "meeting": meeting["id"], "token": grant["token"]})
    r.expect_error("already_joined")
    # An answer nobody asked for.
    r.send({"type": "subscribe_answer", "sdp": stripped})
    # The server may have a subscribe_offer outstanding for this socket (the others publish);
    # then the answer is judged against it (bad SDP); otherwise there is no offer to answer.
    err = r.recv_until("error")
    assert err["code"] in ("no_offer_outstanding", "bad_sdp"), err
    r.send({"type": "leave"})


@pytest.mark.parametrize("tracks,code", [
    pytest.param([{"mid": "7", "source": "audio"}], "invalid_field", id="unknown_mid"),
    pytest.param([{"mid": "0", "source": "hologram"}], "invalid_field", id="unknown_source"),
])
def test_publish_offer_with_bad_tracks_is_refused_not_answered(raw, meeting, tracks, code):
    """A refused publish_offer gets its error and nothing else (no publish_answer as well)."""
    sdp = browser_offer_sdp(meeting["a"].page)  # a valid offer: the problem is only in `tracks`
    r = raw()
    # A meeting of its own: an accidentally accepted publication must not reach the browsers.
    grant = guest_grant(r.server, meeting["other_id"], "Trudy")
    r.send({"type": "join", "meeting": meeting["other_id"], "token": grant["token"]})
    r.recv_until("joined")
    r.send({"type": "publish_offer", "sdp": sdp, "tracks": tracks})
    replies = r.collect(2.0)
    kinds = [(m["type"], m.get("code")) for m in replies]
    assert kinds == [("error", code)], f"expected exactly one error {code!r}, got {kinds}"
    r.assert_still_open()


def claims_for(meeting_id: str, **over) -> dict:
    claims = {"meeting": meeting_id, "attendee": "a-0badf00d", "name": "Eve", "role": "attendee",
              "client": "web", "expires_at": int(time.time()) + 300}
    claims.update(over)
    return claims


def test_join_token_refusals(server, raw, meeting):
    """Forged, expired, other-meeting and reused tokens are refused with `unauthorized` (or
    `already_joined` for a token in use); the socket stays usable."""
    seed = server_token_seed(server)
    other_meeting = guest_grant(server, meeting["other_id"], "Eve")["token"]
    cases = {
        "forged (another key)": (sign_token(bytes(32), claims_for(meeting["id"])), "unauthorized"),
        "expired": (sign_token(seed, claims_for(meeting["id"], expires_at=int(time.time()) - 1)), "unauthorized"),
        "for another meeting": (other_meeting, "unauthorized"),
    }
    for label, (token, code) in cases.items():
        r = raw()
        r.send({"type": "join", "meeting": meeting["id"], "token": token})
        err = r.expect_error(code)
        assert err["message"], label
        r.assert_still_open()
    # A genuine token signed with the server's key is accepted (so the refusals above are about the
    # claims, not the test's signing).
    r = raw()
    r.send({"type": "join", "meeting": meeting["id"], "token": sign_token(seed, claims_for(meeting["id"]))})
    assert r.recv_until("joined")["attendee_id"] == "a-0badf00d"
    # The same token on a second socket while the first is connected: refused.
    r2 = raw()
    r2.send({"type": "join", "meeting": meeting["id"], "token": sign_token(seed, claims_for(meeting["id"]))})
    r2.expect_error("already_joined")
    r.send({"type": "leave"})


def test_oversized_message_closes_socket_1009(raw, meeting):
    r = raw()
    try:
        r.send(json.dumps({"type": "ping", "pad": "x" * (300 * 1024)}))
    except (BrokenPipeError, ConnectionResetError, websocket.WebSocketConnectionClosedException):
        pass  # the server may close before it has read the whole frame; the close frame is what counts
    r.ws.settimeout(5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            # recv_frame (not recv_data): read the close frame without auto-replying to it.
            frame = r.ws.recv_frame()
        except ConnectionResetError as e:
            pytest.fail(f"connection reset before a close frame arrived: {e}")
        if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
            data = frame.data
            code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
            assert code == 1009, f"close code {code}, expected 1009"
            return
    pytest.fail("socket not closed after a 300 KiB message")


# --------------------------------------------------------------------------- aftermath


def test_meeting_undisturbed_and_drops_counted(server, meeting):
    a, b, ids = meeting["a"], meeting["b"], meeting["ids"]
    assert server.alive(), "server process died"
    assert a.state() == "joined" and b.state() == "joined"
    wait_media_flowing(a, [(ids["Bob"], "camera"), (ids["Bob"], "audio")])
    wait_media_flowing(b, [(ids["Alice"], "camera"), (ids["Alice"], "audio")])
    assert server.metric_sum(DROPPED_METRIC) > 0, f"{DROPPED_METRIC} is zero after junk traffic"
    status, _ = server.get("/readyz")
    assert status == 200
    # The junk attendee of test_publish_offer_without_fingerprint left; nobody else should be shown.
    for x, other in ((a, "Bob"), (b, "Alice")):
        tiles = x.page.query_selector_all(".tile[data-attendee-id]")
        ids_shown = sorted(t.get_attribute("data-attendee-id") for t in tiles)
        poll(lambda: sorted(t.get_attribute("data-attendee-id")
                            for t in x.page.query_selector_all(".tile[data-attendee-id]")) == [ids[other]],
             10, desc=f"{x.name}: only {other}'s tile shown (now {ids_shown})")
