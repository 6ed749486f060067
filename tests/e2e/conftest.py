"""Fixtures for the Convene end-to-end tests.

Run from the repository root:  python3 -m pytest tests/e2e -x -q
Environment: CONVENE_BIN (default target/debug/convene), CHROMIUM_BIN (default /usr/bin/chromium),
E2E_HEADFUL=1 to watch the browsers.
"""

from __future__ import annotations

import contextlib

import pytest
from playwright.sync_api import sync_playwright

from accounts import registered_user
from convene_e2e import Attendee, start_server, stop_server

# Things whose logs are attached to a failing test's report.
_active_servers: list = []
_active_attendees: list[Attendee] = []


@pytest.fixture(scope="session")
def pw():
    with sync_playwright() as p:
        yield p


@contextlib.contextmanager
def serving(tmp_path_factory, host: str = "127.0.0.1", extra_args: tuple[str, ...] = ()):
    """A fresh `convene serve` on `host` (with `extra_args`) whose log goes into failing reports; clean
    shutdown is asserted on exit. For modules that need their own `server` fixture."""
    workdir = tmp_path_factory.mktemp("convene")
    srv = start_server(workdir, extra_args, host=host)
    _active_servers.append(srv)
    try:
        yield srv
    finally:
        _active_servers.remove(srv)
        problems = stop_server(srv)
        if problems:
            pytest.fail("server shutdown: " + "; ".join(problems) + "\n" + srv.logs(), pytrace=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A fresh `convene serve` per test module; clean shutdown is asserted on teardown."""
    with serving(tmp_path_factory) as srv:
        yield srv


@pytest.fixture(scope="module")
def host(server):
    """A Pro user of a fresh account, registered through the invitation e-mail and signed in
    (accounts.WebSession): creates the meetings the module's browsers join as guests."""
    return registered_user(server)


@pytest.fixture(scope="module")
def launch(pw):
    """Factory: launch(name, init_scripts=(), extra_args=(), executable=None) -> Attendee (its own Chromium
    process). Closed at module end."""
    launched: list[Attendee] = []

    def _launch(name: str, init_scripts: tuple[str, ...] = (), extra_args: tuple[str, ...] = (),
                executable: str | None = None) -> Attendee:
        a = Attendee.launch(pw, name, init_scripts, extra_args, executable)
        launched.append(a)
        _active_attendees.append(a)
        return a

    yield _launch
    for a in launched:
        a.close()
        _active_attendees.remove(a)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for srv in _active_servers:
            rep.sections.append(("convene server log", srv.logs(tail_chars=30000)))
        for a in _active_attendees:
            text = "\n".join(a.console[-150:])
            rep.sections.append((f"browser console: {a.name}", text or "(empty)"))
