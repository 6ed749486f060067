"""Host controls and the end of a meeting: only the host's browser offers Record; recording shows on
everyone's screen and is refused to guests (`forbidden`); after leaving, "How was the meeting?" posts one
rating with the meeting's join token (retried while the server answers 404, shown as the server's message
otherwise). POST /v1/feedback is answered by a Playwright route here, so these tests check the page, not
the endpoint. Steps of one meeting, run in file order."""

from __future__ import annotations

import json
import time

import pytest

from accounts import guest_grant
from convene_e2e import poll
from raw_signal import Raw

RECORDING = "() => window.convene.recording"


@pytest.fixture(scope="module")
def room(server, launch, host):
    """The host's browser (signed in through its session cookie) and a guest's, in one meeting."""
    meeting_id = host.new_meeting()
    h = launch("Hedy Host")
    h.context.add_cookies([{"name": "convene_session", "value": host.cookie(), "url": server.base_url}])
    g = launch("Grace Guest")
    tokens = {}
    for a in (h, g):
        # The join grant's token is what the feedback must quote later: note it on its way in.
        with a.page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/join")) as grant:
            a.open_and_join(server.base_url, meeting_id)
        tokens[a.name] = grant.value.json()["token"]
    return {"id": meeting_id, "host": h, "guest": g, "tokens": tokens}


def recording_shown(a) -> bool:
    return a.page.evaluate(RECORDING) is True and a.page.is_visible("#recording-indicator")


def recording_hidden(a) -> bool:
    return a.page.evaluate(RECORDING) is False and not a.page.is_visible("#recording-indicator")


def test_only_the_host_gets_the_record_button(room):
    h, g = room["host"], room["guest"]
    assert h.page.evaluate("() => window.convene.role") == "host"
    assert g.page.evaluate("() => window.convene.role") == "attendee"
    assert h.page.is_visible("#record-button")
    assert h.page.inner_text("#record-button") == "Record"
    assert h.page.get_attribute("#record-button", "aria-pressed") == "false"
    assert not g.page.is_visible("#record-button")
    for a in (h, g):
        assert recording_hidden(a), f"{a.name} shows recording before anyone started it"


def guest_socket(server, meeting_id: str, name: str) -> Raw:
    """A guest's own signaling socket, to send what the web app never would."""
    raw = Raw(server)
    raw.joined = raw.join(meeting_id, guest_grant(server, meeting_id, name)["token"])
    return raw


def test_a_guest_cannot_record(server, room):
    raw = guest_socket(server, room["id"], "Mallory")
    try:
        assert raw.joined["recording"] is False, raw.joined
        raw.send({"type": "recording", "on": True})
        err = raw.recv_until("error")
        assert err["code"] == "forbidden" and "host" in err["message"], err
        raw.send({"type": "recording", "on": "yes"})
        assert raw.recv_until("error")["code"] == "bad_message"
        raw.send({"type": "ping"})  # the socket stays open
        raw.recv_until("pong")
    finally:
        raw.close()
    time.sleep(0.5)
    for a in (room["host"], room["guest"]):
        assert recording_hidden(a), f"{a.name} shows recording after a refused request"


def test_the_host_records_and_everyone_sees_it(server, room):
    h, g = room["host"], room["guest"]
    h.click("#record-button")
    for a in (h, g):
        poll(lambda: recording_shown(a), 10, desc=f"{a.name} to show the recording indicator")
    assert "Recording" in g.page.inner_text("#recording-indicator")
    poll(lambda: h.page.inner_text("#record-button") == "Stop recording", 5, desc="the button to say Stop recording")
    assert h.page.get_attribute("#record-button", "aria-pressed") == "true"
    for a in (h, g):
        a.page.screenshot(path=f"/tmp/convene-e2e-{a.name.split()[0]}-recording.png")

    # Someone arriving now learns it in `joined`.
    late = guest_socket(server, room["id"], "Late Larry")
    try:
        assert late.joined["recording"] is True, late.joined
    finally:
        late.close()

    h.click("#record-button")
    for a in (h, g):
        poll(lambda: recording_hidden(a), 10, desc=f"{a.name} to hide the recording indicator")
    poll(lambda: h.page.inner_text("#record-button") == "Record", 5, desc="the button to say Record")
    assert h.page.get_attribute("#record-button", "aria-pressed") == "false"
    for a in (h, g):
        assert a.banner_text() == "", f"{a.name} shows an error: {a.banner_text()!r}"


def test_the_host_turns_on_hd_and_the_cameras_ceiling_rises(room):
    h, g = room["host"], room["guest"]
    assert h.page.is_visible("#hd-button") and not g.page.is_visible("#hd-button")
    ceiling = """() => {
      const tx = window.convene.pubPc.getTransceivers().find((t) => t.sender.track && t.sender.track.kind === "video");
      const enc = tx ? tx.sender.getParameters().encodings || [] : [];
      return enc.length ? (enc[0].maxBitrate ?? null) : null;
    }"""
    poll(lambda: h.page.evaluate(ceiling) == 650_000, 10, desc="the 1:1 tier before HD")
    h.click("#hd-button")
    for a in (h, g):
        poll(lambda a=a: a.page.evaluate("() => window.convene.hdMode") is True
             and a.page.is_visible("#hd-indicator"), 5, desc=f"{a.name} to show HD")
    poll(lambda: h.page.evaluate(ceiling) == 1_400_000, 10, desc="the HD tier (1400 kbps) on the host's camera")
    h.click("#hd-button")
    poll(lambda: g.page.evaluate("() => window.convene.hdMode") is False, 5, desc="HD off for the guest")
    poll(lambda: h.page.evaluate(ceiling) == 650_000, 10, desc="back to the 1:1 tier")


def test_guest_rates_the_meeting_after_leaving(room):
    g = room["guest"]
    posted = []

    # The endpoint belongs to the admin plane; answer here so the page's behaviour is tested on its own.
    # First as the server does before it has applied the meeting's attendance (404: retry), then 204.
    def fulfil(route):
        posted.append(json.loads(route.request.post_data))
        if len(posted) == 1:
            route.fulfill(status=404, content_type="application/json",
                          body=json.dumps({"error": "not_found", "message": "no attendance yet"}))
        else:
            route.fulfill(status=204)

    g.page.route("**/v1/feedback", fulfil)
    g.click("#leave-button")
    g.page.wait_for_selector("#left-view:not([hidden])")
    assert "How was the meeting?" in g.page.inner_text("#feedback")
    g.page.screenshot(path="/tmp/convene-e2e-Grace-left.png")
    assert g.page.evaluate(RECORDING) is False
    with g.page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/feedback")) as sent:
        g.click("#feedback-up")
    req = sent.value
    assert req.headers.get("content-type", "").startswith("application/json"), req.headers
    assert json.loads(req.post_data) == {"token": room["tokens"][g.name], "rating": "up"}
    g.page.wait_for_selector("#feedback-result:not([hidden])", timeout=10_000)
    assert g.page.inner_text("#feedback-result") == "Thanks for your feedback"
    assert posted == [{"token": room["tokens"][g.name], "rating": "up"}] * 2, posted
    g.page.screenshot(path="/tmp/convene-e2e-Grace-feedback.png")
    assert not g.page.is_visible("#feedback-up") and not g.page.is_visible("#feedback-down")
    time.sleep(0.5)
    assert len(posted) == 2, f"ratings sent after the one that was recorded: {posted}"


def test_host_sees_the_servers_message_when_a_rating_is_refused(room):
    h = room["host"]
    message = "This meeting can no longer be rated."

    def refuse(route):
        route.fulfill(status=400, content_type="application/json",
                      body=json.dumps({"error": "bad_request", "message": message}))

    h.page.route("**/v1/feedback", refuse)
    h.click("#leave-button")
    h.page.wait_for_selector("#left-view:not([hidden])")
    with h.page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/feedback")) as sent:
        h.click("#feedback-down")
    assert json.loads(sent.value.post_data) == {"token": room["tokens"][h.name], "rating": "down"}
    h.page.wait_for_selector("#feedback-result:not([hidden])")
    assert h.page.inner_text("#feedback-result") == message
    assert not h.page.is_visible("#feedback-buttons")
