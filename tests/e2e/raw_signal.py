"""A raw signaling socket for tests that must send what the web app never would (see docs/signaling.md)."""

from __future__ import annotations

import json
import time

import websocket  # websocket-client


class Raw:
    """A raw signaling socket."""

    def __init__(self, server):
        self.server = server
        self.ws = websocket.create_connection(server.ws_url, timeout=5)

    def send(self, obj):
        self.ws.send(obj if isinstance(obj, str) else json.dumps(obj))

    def recv_until(self, want_type: str, timeout: float = 5.0) -> dict:
        """Next message of `want_type`, skipping others (e.g. attendee_joined, subscribe_offer)."""
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            self.ws.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                opcode, data = self.ws.recv_data()
            except websocket.WebSocketTimeoutException:
                break
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise AssertionError(f"socket closed while waiting for {want_type!r}; seen {seen}; close frame {data!r}")
            assert opcode == websocket.ABNF.OPCODE_TEXT, f"server sent a non-text frame (opcode {opcode})"
            msg = json.loads(data)
            assert isinstance(msg, dict) and isinstance(msg.get("type"), str), f"bad server message {data!r}"
            if msg["type"] == want_type:
                return msg
            seen.append(msg["type"])
        raise AssertionError(f"no {want_type!r} within {timeout}s; got {seen}")

    def collect(self, duration: float) -> list[dict]:
        """Every message that arrives within `duration` seconds."""
        out = []
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            self.ws.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                opcode, data = self.ws.recv_data()
            except websocket.WebSocketTimeoutException:
                break
            if opcode == websocket.ABNF.OPCODE_TEXT:
                out.append(json.loads(data))
        return out

    def expect_error(self, code: str) -> dict:
        msg = self.recv_until("error")
        assert msg.get("code") == code, f"expected error code {code!r}, got {msg}"
        assert isinstance(msg.get("message", ""), str)
        return msg

    def assert_still_open(self):
        self.send({"type": "ping"})
        self.recv_until("pong")

    def close(self):
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001
            pass

    def join(self, meeting_id: str, token: str) -> dict:
        """Join with a token; returns the `joined` message."""
        self.send({"type": "join", "meeting": meeting_id, "token": token})
        return self.recv_until("joined")
