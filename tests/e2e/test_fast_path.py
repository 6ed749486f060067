"""The fast path with real browsers: `convene serve --media-fast-path true` (issue 8).

Chromium is the receiver that matters: it must decode RTP the fast path wrote and protected itself, count
its padding probes in its transport-wide feedback, and take its retransmissions. Three browsers meet;
each decodes the others' video and hears their audio, and the server's metrics show the media left on the
fast path and its estimator heard back (the allocation's downlink budget is set from it).
"""

from __future__ import annotations

import time

import pytest

from conftest import serving
from convene_e2e import poll, wait_media_flowing

# The subscribe connection's remote-outbound-rtp entries: what the browser read from our sender reports.
REMOTE_OUTBOUND_JS = """
async () => {
  const pc = window.convene && window.convene.subPc;
  if (!pc) return [];
  const out = [];
  (await pc.getStats()).forEach((s) => {
    if (s.type === "remote-outbound-rtp") {
      out.push({ssrc: s.ssrc, kind: s.kind, packetsSent: s.packetsSent || 0, reportsSent: s.reportsSent || 0});
    }
  });
  return out;
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serving(tmp_path_factory, extra_args=("--media-fast-path", "true")) as srv:
        yield srv


def fast_packets(server, kind: str) -> float:
    status, text = server.get("/metrics")
    assert status == 200, text[:300]
    for line in text.splitlines():
        if line.startswith("convene_media_fast_path_packets_total{") and f'kind="{kind}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_three_browsers_meet_on_the_fast_path(server, launch, host):
    meeting = host.new_meeting()
    people = [launch(name) for name in ("Ada", "Grace", "Linus")]
    for a in people:
        a.open_and_join(server.base_url, meeting)
    ids = {a.name: a.attendee_id for a in people}
    for a in people:
        expect = []
        for o in people:
            if o is not a:
                expect += [(ids[o.name], "camera"), (ids[o.name], "audio")]
        wait_media_flowing(a, expect)

    # Our sender reports (SRTCP) reached Chromium: it lists what each of them said, per stream.
    for a in people:
        reports = poll(lambda: [r for r in a.page.evaluate(REMOTE_OUTBOUND_JS) if r["reportsSent"] > 0 and r["packetsSent"] > 0],
                       timeout=15, desc=f"{a.name}: sender reports")
        kinds = sorted({r["kind"] for r in reports})
        print(f"{a.name}: sender reports {reports}")
        assert kinds == ["audio", "video"], f"{a.name}: reports for {kinds} only"

    media = fast_packets(server, "media")
    time.sleep(2)
    later = fast_packets(server, "media")
    print(f"fast path media packets: {media:.0f} -> {later:.0f}; padding {fast_packets(server, 'padding'):.0f}, "
          f"rtx {fast_packets(server, 'rtx'):.0f}")
    assert media > 0 and later > media, "media did not leave on the fast path"
    # The server dated what it sent against the kernel's receipt of what caused it: its workers publish
    # the histogram each second, so it has counted the fast path's datagrams, each within reason.
    delays = poll(lambda: server.metric_sum("convene_media_send_delay_seconds_count"), timeout=5,
                  desc="send delays counted")
    delay_sum = server.metric_sum("convene_media_send_delay_seconds_sum")
    print(f"send delays: {delays:.0f} datagrams, mean {delay_sum / delays * 1e3:.3f} ms")
    assert delays >= media / 2, f"{delays} send delays for {media} fast-path media packets"
    assert 0 < delay_sum / delays < 0.1, f"mean send delay {delay_sum / delays} s"
    # The fast path's estimator heard the browsers' transport-wide feedback: the allocation spends a
    # downlink budget (set only from an estimate).
    budget = poll(lambda: server.metric_sum("convene_media_meeting_min_downlink_kbps"), timeout=20,
                  desc="a downlink budget from the fast path's estimate")
    assert budget > 100, f"downlink budget {budget} kbps"
