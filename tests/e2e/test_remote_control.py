"""Remote control in real browsers: a guest asks to control the host's shared screen, the host allows, and
the guest's pointer over the shared screen reaches the host's page through the server's data channel relay
(the host sees where the guest points); stopping ends it. Where the host's organisation disables shared
control (UpdateAccountSettings DisableRemoteControl, through boto3), the request is refused with the
guide's message and the host is never asked. Steps of one meeting, run in file order."""

from __future__ import annotations

import time

import pytest

from accounts import admin_client
from convene_e2e import poll

RC = "() => window.convene.remoteControl"


def screen_tile(page, attendee_id):
    return page.query_selector(f'.tile[data-attendee-id="{attendee_id}"][data-source="screen"]')


def share_screen(a):
    a.click("#share-button")
    poll(lambda: a.page.inner_text("#share-button") == "Stop sharing", 10, desc=f"{a.name} shares")


@pytest.fixture(scope="module")
def room(server, launch, host):
    """The host (signed in) shares a screen; a guest watches it."""
    meeting_id = host.new_meeting()
    h = launch("Hedy Host")
    h.context.add_cookies([{"name": "convene_session", "value": host.cookie(), "url": server.base_url}])
    g = launch("Grace Guest")
    h.open_and_join(server.base_url, meeting_id)
    g.open_and_join(server.base_url, meeting_id)
    share_screen(h)
    poll(lambda: screen_tile(g.page, h.attendee_id), 20, desc="the guest shows the host's screen")
    return {"id": meeting_id, "host": h, "guest": g}


def received(a) -> list[dict]:
    return a.page.evaluate(RC)["received"]


def test_a_granted_controllers_pointer_reaches_the_sharer(room):
    h, g = room["host"], room["guest"]
    request = g.page.locator('[data-action="request-control"]')
    poll(lambda: request.count() == 1, 20, desc="the guest is offered to request control")
    assert "Hedy Host" in request.inner_text()
    request.click()

    allow = h.page.locator('[data-action="allow-control"]')
    poll(lambda: allow.count() == 1, 10, desc="the host is asked")
    assert "Grace Guest asks to control your screen" in h.page.inner_text("#remote-control")
    allow.click()
    poll(lambda: g.page.evaluate(RC)["controlling"], 10, desc="the guest controls")
    poll(lambda: h.page.evaluate(RC)["controlled"], 10, desc="the host is controlled")
    assert "Grace Guest is controlling your screen" in h.page.inner_text("#remote-control")

    # The guest points at a quarter across, three quarters down the host's screen.
    box = screen_tile(g.page, h.attendee_id).query_selector("video").bounding_box()
    x, y = box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.75

    def pointed():
        g.page.mouse.move(x - 5, y)
        g.page.mouse.move(x, y, steps=3)
        return [e for e in received(h) if e["kind"] == "pointer"]

    events = poll(pointed, 10, desc="pointer events reach the host")
    last = events[-1]
    assert abs(last["x"] - 0.25) < 0.05 and abs(last["y"] - 0.75) < 0.05, last
    g.page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    clicks = poll(lambda: [e for e in received(h) if e["kind"] == "click"], 10, desc="a click reaches the host")
    assert abs(clicks[-1]["x"] - 0.5) < 0.05 and abs(clicks[-1]["y"] - 0.5) < 0.05, clicks[-1]
    # The host sees where the guest points, on its own screen preview.
    assert h.page.locator('figure.tile[data-self="1"][data-source="screen"] .remote-pointer').count() == 1

    g.page.locator('[data-action="stop-control"]').click()
    poll(lambda: not h.page.evaluate(RC)["controlled"], 10, desc="control ends for the host")
    poll(lambda: not g.page.evaluate(RC)["controlling"], 10, desc="control ends for the guest")
    before = len(received(h))
    g.page.mouse.move(x + 10, y, steps=5)
    time.sleep(0.5)
    assert len(received(h)) == before, "events still reach the host after control ended"
    for a in (h, g):
        assert a.banner_text() == "", f"{a.name} shows an error: {a.banner_text()!r}"


def test_where_the_hosts_organisation_disables_it_the_request_is_refused(room, server, host):
    h, g = room["host"], room["guest"]
    admin_client(server).update_account_settings(
        AccountId=host.user["account_id"], AccountSettings={"DisableRemoteControl": True})
    # The policy travels in the join token: the host's next join carries it.
    h.click("#leave-button")
    h.wait_state("left")
    h.open_and_join(server.base_url, room["id"])
    share_screen(h)
    poll(lambda: screen_tile(g.page, h.attendee_id), 20, desc="the guest shows the host's new screen")

    request = g.page.locator('[data-action="request-control"]')
    poll(lambda: request.count() == 1, 20, desc="the guest is offered to request control")
    request.click()
    poll(lambda: "remote control isn't available" in g.banner_text(), 10, desc="the guest is told")
    assert "organisation does not allow" in g.banner_text()
    time.sleep(0.5)
    assert h.page.locator('[data-action="allow-control"]').count() == 0, "the host was asked anyway"
    assert not h.page.evaluate(RC)["controlled"]
