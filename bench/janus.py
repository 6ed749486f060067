"""Janus 1.1 (Debian `janus`) in a network namespace of its own: the benchmark's baseline SFU.

Janus skips loopback interfaces when it gathers ICE candidates, so it cannot serve clients on 127.0.0.1. It
runs instead in a namespace holding only `lo` and a veth pair with 10.200.0.1 (../shared/reference/test-peers.md),
and its clients (`convene-load --janus`) run in the same namespace. Nothing leaves the machine: the namespace has
no route anywhere else, and it is deleted when the run ends, also on failure.

Used by `bench/run` and by the end-to-end smoke test `tests/e2e/test_bench_janus.py`:

    with Janus(folder, "convene-bench-1") as j:
        subprocess.run(j.load_command(load_binary) + ["-n", "1", "-m", "2"], check=True)
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ADDRESS = "10.200.0.1"
WS_PORT = 8188
LIBRARIES = Path("/usr/lib/x86_64-linux-gnu/janus")


def missing():
    """Why Janus cannot run here, or None."""
    if not shutil.which("janus"):
        return "janus is not installed (apt-get install janus)"
    if not shutil.which("ip"):
        return "iproute2 (`ip`) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    return None


def write_config(folder, cores):
    """Config files for one run: only VideoRoom and the WebSocket transport, and what janus.jcfg advises for
    load: a static set of event loops, one per core, instead of a thread per handle. Warnings-only logging,
    no event handlers, no loggers."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind, names in (("plugins", ["libjanus_videoroom.so"]),
                        ("transports", ["libjanus_websockets.so"]), ("loggers", [])):
        (folder / kind).mkdir(exist_ok=True)
        for name in names:
            link = folder / kind / name
            if not link.exists():
                link.symlink_to(LIBRARIES / kind / name)
    (folder / "janus.jcfg").write_text(f"""general: {{
	configs_folder = "{folder}"
	plugins_folder = "{folder / 'plugins'}"
	transports_folder = "{folder / 'transports'}"
	events_folder = "{folder / 'loggers'}"
	loggers_folder = "{folder / 'loggers'}"
	debug_level = 3
	event_loops = {cores}
}}
media: {{
	rtp_port_range = "30000-39999"
}}
nat: {{
	ice_enforce_list = "jv0"
	ignore_mdns = true
}}
""")
    (folder / "janus.transport.websockets.jcfg").write_text(f"""general: {{
	json = "compact"
	ws = true
	ws_port = {WS_PORT}
	ws_ip = "127.0.0.1"
	wss = false
}}
admin: {{
	admin_ws = false
	admin_wss = false
}}
""")
    (folder / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")


def _ip(*args):
    subprocess.run(["ip", *args], check=True, stdout=subprocess.DEVNULL, timeout=10)


class Janus:
    """A running Janus in namespace `ns`, configured in `folder` (its log: `folder/janus.log`)."""

    def __init__(self, folder, ns, cores=None, prefix=()):
        self.folder = Path(folder)
        self.ns = ns
        self.cores = cores or os.cpu_count() or 1
        self.proc = None
        # Run Janus through this (e.g. `chrt --fifo 10`, which execs it: the pid stays Janus's).
        self.prefix = list(prefix)

    @property
    def pid(self):
        """Janus's own process id (`ip netns exec` execs it): sample its CPU and memory with this."""
        return self.proc.pid

    @property
    def log(self):
        return self.folder / "janus.log"

    def __enter__(self):
        write_config(self.folder, self.cores)
        # A namespace of this name can only be left over from a killed run (names carry a pid).
        subprocess.run(["ip", "netns", "del", self.ns], stderr=subprocess.DEVNULL, timeout=10)
        _ip("netns", "add", self.ns)
        try:
            _ip("-n", self.ns, "link", "set", "lo", "up")
            _ip("-n", self.ns, "link", "add", "jv0", "type", "veth", "peer", "name", "jv1")
            _ip("-n", self.ns, "addr", "add", f"{ADDRESS}/24", "dev", "jv0")
            _ip("-n", self.ns, "link", "set", "jv0", "up")
            _ip("-n", self.ns, "link", "set", "jv1", "up")
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns] + self.prefix + ["janus", "-C", str(self.folder / "janus.jcfg"),
                 "-F", str(self.folder), "-o", "-N", "-L", str(self.log)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            self._wait_listening()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_listening(self, timeout=20):
        probe = f"import socket; socket.create_connection(('127.0.0.1', {WS_PORT}), 1)"
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"janus exited with {self.proc.returncode}; see {self.log}")
            probe_run = subprocess.run(["ip", "netns", "exec", self.ns, sys.executable, "-c", probe],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
            if probe_run.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"janus not listening on port {WS_PORT} after {timeout} s; see {self.log}")

    def load_command(self, load_binary):
        """The start of a `convene-load` command line that loads this Janus from inside its namespace."""
        return ["ip", "netns", "exec", self.ns, str(load_binary), "--janus", f"ws://127.0.0.1:{WS_PORT}",
                "--local-ip", ADDRESS]

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        subprocess.run(["ip", "netns", "del", self.ns], stderr=subprocess.DEVNULL, timeout=10)
        return False
