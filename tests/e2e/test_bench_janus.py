"""Smoke run of the benchmark's Janus baseline (issue 8): `convene-load --janus` against a real Janus 1.1
(Debian `janus`) in a network namespace of its own, exactly as `bench/run` runs it (`bench/janus.py`).

It checks what the benchmark's Janus numbers rest on, not timing: every connection comes up, media flows
through Janus both ways (publishers receive each other too), Janus forwards the camera layer it is told to
(the generator maps our lowest-first layers onto Janus's substreams), and the generator reports Janus's CPU per
packet. Needs root for the namespace (skipped otherwise); the namespace goes away at the end, also on failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from convene_e2e import CONVENE_BIN, REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))
import janus  # noqa: E402  (bench/janus.py)

LOAD_BIN = CONVENE_BIN.parent / "convene-load"
# The generator's default camera: q 150 kbps, h 450, f 1200 (bench/load/src/media.rs), plus Opus audio.
# A subscriber of one publisher receives one layer and the audio, so its rate tells the layer apart with a
# wide margin either way: well under 0.45 Mbit/s for q (measured 0.19), well over 0.8 for f (1.29).
MAX_LOWEST_LAYER_MBPS = 0.45
MIN_TOP_LAYER_MBPS = 0.8


@pytest.fixture(scope="module")
def janus_server(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace")
    why = janus.missing()
    if why:
        pytest.fail(f"{why}: tests/run installs it")
    if not LOAD_BIN.exists():
        pytest.fail(f"{LOAD_BIN} not found (cargo build -p convene-load, or set CONVENE_BIN)")
    with janus.Janus(tmp_path_factory.mktemp("janus"), f"cvn-janus-{os.getpid()}", cores=1) as j:
        yield j


def load(j: janus.Janus, name: str, *args: str) -> dict:
    cmd = j.load_command(LOAD_BIN) + ["--name", name, "--duration", "3", "--warmup", "1",
                                      "--connect-timeout", "20", "--threads", "1",
                                      "--server-pid", str(j.pid), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, f"convene-load failed:\n{out.stderr[-3000:]}\nJanus log:\n{tail(j.log)}"
    return json.loads(out.stdout)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def per_subscriber_mbps(summary: dict, subscribers: int) -> float:
    return summary["received_mbps"] / subscribers


def assert_flowing(summary: dict) -> None:
    assert summary["connections_connected"] == summary["connections_expected"], summary
    assert summary["attendee_failures"] == 0 and summary["signaling_errors"] == 0, summary
    assert summary["joined"] == summary["attendees"], summary
    assert summary["received_packets"] > 0 and summary["sent_packets"] > 0, summary
    # Loopback inside one namespace loses nothing; a little slack for a loaded CI machine.
    assert summary["loss_pct"] < 2.0, summary


def test_janus_forwards_the_lowest_layer_when_asked(janus_server):
    s = load(janus_server, "low", "--publishers", "1", "--subscribers", "2", "--janus-layer", "0")
    assert_flowing(s)
    assert s["connections_expected"] == 3
    assert per_subscriber_mbps(s, 2) < MAX_LOWEST_LAYER_MBPS, s
    # Janus's own CPU over the window, per packet the attendees received.
    assert s["server"] is not None and s["server"]["cpu_us_per_pkt"] > 0, s


def test_janus_forwards_the_top_layer_when_asked(janus_server):
    s = load(janus_server, "top", "--publishers", "1", "--subscribers", "2", "--janus-layer", "2")
    assert_flowing(s)
    assert per_subscriber_mbps(s, 2) > MIN_TOP_LAYER_MBPS, s


def test_publishers_receive_each_other_through_janus(janus_server):
    # Three publishers, nobody else: each publishes and subscribes to the other two (6 connections). Audio
    # only: this is about the subscription path, not the layers.
    s = load(janus_server, "mesh", "--publishers", "3", "--subscribers", "0", "--camera", "none",
             "--talk-ratio", "1")
    assert_flowing(s)
    assert s["connections_expected"] == 6
    # Each publisher's voice reaches both others: 2 receivers x 3 voices x 50 packets/s over 3 s, at least
    # half of it (talk spurts never pause at talk ratio 1).
    assert s["received_packets"] > 0.5 * 2 * 3 * 50 * 3, s
