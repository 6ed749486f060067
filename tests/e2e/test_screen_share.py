"""Screen sharing on/off/on: the web app reuses its screen m-line (inactive while not sharing),
the server must keep every subscriber's negotiation working across re-publication."""

from __future__ import annotations


import pytest

from convene_e2e import poll, wait_media_flowing


@pytest.fixture(scope="module")
def pair(server, launch, host):
    mid = host.new_meeting()
    a = launch("Sharer")
    b = launch("Viewer")
    a.open_and_join(server.base_url, mid)
    b.open_and_join(server.base_url, mid)
    return a, b, a.attendee_id


def screen_tile(page, attendee_id):
    return page.query_selector(f'.tile[data-attendee-id="{attendee_id}"][data-source="screen"]')


@pytest.mark.parametrize("round_no", [1, 2, 3])
def test_share_stop_share_again(pair, round_no):
    sharer, viewer, sid = pair
    if sharer.page.inner_text("#share-button") == "Stop sharing":  # a failed earlier round left it on
        sharer.click("#share-button")
        poll(lambda: sharer.page.inner_text("#share-button") == "Share screen", 10, desc="share stopped")
    sharer.click("#share-button")
    poll(lambda: sharer.page.inner_text("#share-button") == "Stop sharing", 10, desc="share started")
    poll(lambda: screen_tile(viewer.page, sid), 20,
         desc=f"round {round_no}: viewer shows the screen tile (viewer banner: {viewer.banner_text()!r})")
    wait_media_flowing(viewer, [(sid, "screen"), (sid, "camera"), (sid, "audio")])

    sharer.click("#share-button")
    poll(lambda: sharer.page.inner_text("#share-button") == "Share screen", 10, desc="share stopped")
    poll(lambda: screen_tile(viewer.page, sid) is None, 20,
         desc=f"round {round_no}: viewer drops the screen tile (viewer banner: {viewer.banner_text()!r})")
    wait_media_flowing(viewer, [(sid, "camera")])
    for who in (sharer, viewer):
        assert who.banner_text() == "", f"{who.name} shows an error: {who.banner_text()!r}"
