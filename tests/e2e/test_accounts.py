"""Users and meetings end to end: invitation e-mail -> registration page -> sign-in -> hosting,
guests joining by meeting ID, Basic users refused as hosts, LogoutUser ending sessions, guessing
limits, bad join requests, and invitations delivered over real SMTP (aiosmtpd)."""

from __future__ import annotations

import http.client
import json
import time
import uuid

import pytest
from aiosmtpd.controller import Controller

from accounts import (PASSWORD, WebSession, admin_call, admin_client, guest_grant, invite_token, new_account,
                      registered_user, token_from_email)
from convene_e2e import free_tcp_port, poll, start_server, stop_server, wait_media_flowing


def from_source(server, source_ip: str, method: str, path: str, body: dict | None = None):
    """A request from another loopback address (the guess limiter counts per source address)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30, source_address=(source_ip, 0))
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        raw = r.read()
        return r.status, (json.loads(raw) if raw else None), dict(r.getheaders())
    finally:
        conn.close()


def test_invitation_link_registers_in_the_browser(server, launch):
    chime = admin_client(server)
    account_id = new_account(server)
    address = f"ada-{uuid.uuid4().hex[:6]}@example.com"
    invite = chime.invite_users(AccountId=account_id, UserEmailList=[address])["Invites"][0]
    token = invite_token(server, invite["InviteId"])
    a = launch("Registrant")
    a.page.goto(f"{server.base_url}/register?invite={token}")
    a.page.fill("#register-name", "Ada Lovelace")
    a.page.fill("#register-password", PASSWORD)
    a.page.fill("#register-password2", PASSWORD)
    a.page.click("#register-button")
    a.page.wait_for_function("() => window.convene.user && window.convene.user.display_name === 'Ada Lovelace'")
    assert a.page.inner_text("#user-name") == "Ada Lovelace"
    user = chime.list_users(AccountId=account_id, UserEmail=address)["Users"][0]
    assert user["UserRegistrationStatus"] == "Registered"
    assert user["LicenseType"] == "Pro"
    assert user["DisplayName"] == "Ada Lovelace"
    # The link works once.
    status, reply = WebSession(server.base_url).call(
        "POST", "/v1/register", {"invite": token, "name": "Mallory", "password": PASSWORD})
    assert status == 404 and "not valid" in reply["message"], reply


def test_pro_user_schedules_and_guests_join_by_id(server, launch):
    host_api = registered_user(server, name="Hedy Host")
    h = launch("Hedy")
    h.page.goto(server.base_url + "/?quality=low")
    h.page.fill("#signin-email", host_api.user["email"])
    h.page.fill("#signin-password", PASSWORD)
    h.page.click("#signin-button")
    h.page.wait_for_selector("#host-panel:not([hidden])")
    h.page.click("#schedule-details summary")
    h.page.fill("#schedule-title", "Design review")
    h.page.fill("#schedule-start", "2030-01-02T10:00")
    h.page.fill("#schedule-duration", "45")
    h.page.fill("#schedule-invitees", "grace@example.com, linus@example.com")
    h.page.click("#schedule-button")
    item = h.page.wait_for_selector('#my-meetings li[data-kind="scheduled"]')
    meeting_id = item.get_attribute("data-meeting-id")
    assert len(meeting_id) == 10 and meeting_id.isdigit()
    assert "Design review" in item.inner_text()
    listed = host_api.ok("GET", "/v1/meetings")["meetings"]
    assert [m for m in listed if m["meeting_id"] == meeting_id][0]["invitees"] == ["grace@example.com", "linus@example.com"]

    # The host joins from the list (as host), two guests by ID.
    item.query_selector("button").click()
    h.wait_state("joined")
    assert h.page.evaluate("() => window.convene.role") == "host"
    guests = []
    for name in ("Grace", "Linus"):
        g = launch(name)
        g.open_and_join(server.base_url, meeting_id)
        assert g.page.evaluate("() => window.convene.role") == "attendee"
        guests.append(g)
    ids = {a.name: a.attendee_id for a in [h, *guests]}
    wait_media_flowing(guests[0], [(ids["Hedy"], "camera"), (ids["Linus"], "audio")])
    guests[1].click("#leave-button")
    poll(lambda: not h.page.query_selector(f'.tile[data-attendee-id="{ids["Linus"]}"]'), 5,
         desc="Linus's tile to go away")
    for a in (h, guests[0]):
        a.click("#leave-button")
    # The meeting has ended: its host is Active Pro today, and the admin API says why.
    today = time.strftime("%Y-%m-%d", time.gmtime())
    path = f"/accounts/{host_api.user['account_id']}/reports/active-pro?from={today}&to={today}"

    def billed():
        status, reply = admin_call(server, "GET", path)
        assert status == 200, reply
        return reply["ActiveProUsers"]

    rows = poll(billed, 10, desc="the host to be Active Pro")
    assert [(r["UserId"], r["Day"], r["Reason"]) for r in rows] == [
        (host_api.user["user_id"], today, "scheduled+more_than_two_attendees")]


def test_basic_user_cannot_start_a_meeting(server, launch):
    basic = registered_user(server, name="Bart Basic", license="Basic")
    assert basic.user["license"] == "Basic" and basic.user["can_host"] is False
    status, reply = basic.call("POST", "/v1/meetings", {"kind": "instant"})
    assert status == 403 and "Basic users" in reply["message"], reply
    b = launch("Bart")
    b.page.goto(server.base_url + "/?quality=low")
    b.page.fill("#signin-email", basic.user["email"])
    b.page.fill("#signin-password", PASSWORD)
    b.page.click("#signin-button")
    b.page.wait_for_selector("#host-panel:not([hidden])")
    b.page.click("#instant-button")
    error = b.page.wait_for_selector("#host-error:not([hidden])")
    assert "Basic users can attend meetings but cannot start or schedule them" in error.inner_text()
    assert b.state() != "joined"
    # A Basic user's personal meeting room cannot take place either.
    status, reply = WebSession(server.base_url).call(
        "POST", f"/v1/meetings/{basic.user['personal_pin']}/join", {"name": "Guest"})
    assert status == 403 and "Basic" in reply["message"], reply


def test_personal_pin_meeting_admits_guests_and_the_host_as_host(server):
    host = registered_user(server, name="Pat Personal")
    pin = host.user["personal_pin"]
    assert host.join_grant(pin)["role"] == "host"
    grant = guest_grant(server, pin, "Visitor")
    assert grant["role"] == "attendee" and grant["name"] == "Visitor" and grant["meeting_id"] == pin


def test_logout_user_ends_every_session(server):
    first = registered_user(server, name="Lou Logout")
    second = WebSession(server.base_url)
    second.ok("POST", "/v1/session", {"email": first.user["email"], "password": PASSWORD})
    for s in (first, second):
        assert s.call("GET", "/v1/session")[0] == 200
    admin_client(server).logout_user(AccountId=first.user["account_id"], UserId=first.user["user_id"])
    for s in (first, second):
        status, reply = s.call("GET", "/v1/session")
        assert status == 401, reply
        assert s.call("POST", "/v1/meetings", {"kind": "instant"})[0] == 401
    # Signing in again afterwards works.
    again = WebSession(server.base_url)
    again.ok("POST", "/v1/session", {"email": first.user["email"], "password": PASSWORD})
    assert again.call("GET", "/v1/session")[0] == 200


def test_wrong_passwords_and_meeting_id_guessing_are_limited_per_source(server):
    user = registered_user(server, name="Gus Guessed")
    status, reply, _ = from_source(server, "127.0.0.3", "POST", "/v1/session",
                                   {"email": user.user["email"], "password": "wrong password"})
    assert status == 401 and reply["message"] == "the e-mail address or the password is wrong"
    statuses = []
    for n in range(12):
        status, reply, headers = from_source(server, "127.0.0.2", "POST", f"/v1/meetings/{1000000000 + n}/join",
                                             {"name": "Guesser"})
        statuses.append(status)
    assert statuses[:10] == [404] * 10, statuses
    assert statuses[10:] == [429, 429], statuses
    assert "too many failed attempts" in reply["message"] and int(headers["retry-after"]) > 0
    assert "no meeting with this ID" in WebSession(server.base_url).call(
        "POST", "/v1/meetings/1000000000/join", {"name": "Honest"})[1]["message"], \
        "another source is not locked out"


@pytest.mark.parametrize("body,fragment", [
    pytest.param({"name": "x" * 65}, "1-64 characters", id="oversized_name"),
    pytest.param({"name": "bell\u0007"}, "control characters", id="control_char_name"),
    pytest.param({"name": "   "}, "1-64 characters", id="blank_name"),
    pytest.param({}, "guests must give a name", id="guest_without_name"),
    pytest.param({"name": "Sid", "client": "sip"}, "cannot join here", id="sip_client_over_http"),
    pytest.param(b"not json", "request body", id="not_json"),
])
def test_bad_join_requests_get_clear_errors(server, host, body, fragment):
    meeting_id = host.new_meeting()
    status, reply = WebSession(server.base_url).call("POST", f"/v1/meetings/{meeting_id}/join", body)
    assert status == 400 and fragment in reply["message"], reply


class Inbox:
    """aiosmtpd handler: keeps every message it receives."""

    def __init__(self):
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


def test_invitations_are_delivered_over_smtp(tmp_path):
    inbox = Inbox()
    smtp_port = free_tcp_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    srv = start_server(tmp_path, ("--smtp-url", f"smtp://127.0.0.1:{smtp_port}",
                                  "--mail-from", "Convene Test <convene@example.org>"))
    try:
        chime = admin_client(srv)
        account_id = chime.create_account(Name="Mailed Team")["Account"]["AccountId"]
        invite = chime.invite_users(AccountId=account_id, UserEmailList=["mia@example.com"])["Invites"][0]
        assert invite["EmailStatus"] == "Sent", invite
        poll(lambda: inbox.messages, 10, desc="the invitation to reach the SMTP server")
        mail_from, rcpt_tos, content = inbox.messages[0]
        assert mail_from == "convene@example.org" and rcpt_tos == ["mia@example.com"]
        assert b"Mailed Team" in content
        assert not (srv.data_dir / "outbox").exists(), "SMTP mode must not write the outbox folder"
        session = WebSession(srv.base_url)
        session.ok("POST", "/v1/register",
                   {"invite": token_from_email(content), "name": "Mia", "password": PASSWORD})
        assert session.ok("GET", "/v1/session")["user"]["display_name"] == "Mia"
    finally:
        problems = stop_server(srv)
        controller.stop()
        assert not problems, problems


def test_unreachable_smtp_marks_the_invite_failed(tmp_path):
    srv = start_server(tmp_path, ("--smtp-url", f"smtp://127.0.0.1:{free_tcp_port()}",))
    try:
        chime = admin_client(srv)
        account_id = chime.create_account(Name="Unmailed Team")["Account"]["AccountId"]
        started = time.monotonic()
        invite = chime.invite_users(AccountId=account_id, UserEmailList=["noone@example.com"])["Invites"][0]
        assert invite["EmailStatus"] == "Failed", invite
        assert time.monotonic() - started < 60
    finally:
        assert not stop_server(srv)


def test_admin_invite_cli_prints_a_working_registration_link(server):
    import subprocess
    from convene_e2e import CONVENE_BIN

    address = f"first-{uuid.uuid4().hex[:6]}@example.com"
    out = subprocess.run([str(CONVENE_BIN), "admin", "invite", address, "--account", "CLI Team",
                          "--public-url", server.base_url, "--data-dir", str(server.data_dir)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    link = out.stdout.strip()
    assert link.startswith(server.base_url + "/register?invite="), link
    session = WebSession(server.base_url)
    user = session.ok("POST", "/v1/register",
                      {"invite": link.rsplit("=", 1)[1], "name": "First User", "password": PASSWORD})["user"]
    assert user["license"] == "Pro" and user["can_host"] is True
    assert len(session.new_meeting()) == 10
    accounts = admin_client(server).list_accounts(Name="CLI Team")["Accounts"]
    assert [a["Name"] for a in accounts] == ["CLI Team"]
    # Registered users are not invited again.
    again = subprocess.run([str(CONVENE_BIN), "admin", "invite", address, "--account", "CLI Team",
                            "--data-dir", str(server.data_dir)], capture_output=True, text=True, timeout=30)
    assert again.returncode != 0 and "registered already" in again.stderr


def test_self_signup_gives_a_trial_that_ends_when_an_account_adds_the_user(server, launch):
    from accounts import link_token, mails_to

    address = f"solo-{uuid.uuid4().hex[:6]}@example.net"
    s = launch("Solo")
    s.page.goto(server.base_url + "/?quality=low")
    s.page.fill("#signup-email", address)
    s.page.click("#signup-button")
    done = s.page.wait_for_selector("#signup-done:not([hidden])")
    assert "check your inbox" in done.inner_text()
    [mail] = poll(lambda: mails_to(server, address), 10, desc="the sign-up e-mail")
    s.page.goto(f"{server.base_url}/register?signup={link_token(mail, 'signup')}")
    s.page.fill("#register-name", "Solo Trialist")
    s.page.fill("#register-password", PASSWORD)
    s.page.fill("#register-password2", PASSWORD)
    s.page.click("#register-button")
    s.page.wait_for_function("() => window.convene.user && window.convene.user.license === 'ProTrial'")
    me = s.page.evaluate("() => window.convene.user")
    assert me["managed"] is False and me["can_host"] is True and me["trial_ends_at"]
    assert "Pro trial until" in s.page.inner_text("#user-name")

    # Trialists host.
    session = WebSession(server.base_url)
    session.ok("POST", "/v1/session", {"email": address, "password": PASSWORD})
    assert len(session.new_meeting()) == 10

    # Signing up again with a known address tells nobody anything, but mails the owner.
    status, reply = WebSession(server.base_url).call("POST", "/v1/signup", {"email": address})
    assert status == 202 and "check your inbox" in reply["message"]
    mails = poll(lambda: m if len(m := mails_to(server, address)) == 2 else None, 10, desc="the second e-mail")
    assert "already has a Convene user" in mails[1].get_body(preferencelist=("plain",)).get_content()
    assert WebSession(server.base_url).call("POST", "/v1/signup", {"email": "not-an-address"})[0] == 400

    # An account invites the trialist: accepting moves them into the account and ends the trial.
    chime = admin_client(server)
    account_id = new_account(server)
    invite = chime.invite_users(AccountId=account_id, UserEmailList=[address])["Invites"][0]
    assert invite["Status"] == "Pending", invite
    adopted = WebSession(server.base_url)
    user = adopted.ok("POST", "/v1/register", {"invite": invite_token(server, invite["InviteId"]),
                                               "name": "Solo Member", "password": PASSWORD})["user"]
    assert user["license"] == "Pro" and user["managed"] is True and user["trial_ends_at"] is None
    [listed] = chime.list_users(AccountId=account_id, UserEmail=address)["Users"]
    assert listed["UserRegistrationStatus"] == "Registered" and listed["DisplayName"] == "Solo Member"


def test_copy_invite_link_gives_a_link_that_opens_the_meeting_form(server, launch, host):
    meeting_id = host.new_meeting()
    a = launch("Linker")
    a.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base_url)
    a.open_and_join(server.base_url, meeting_id)
    a.click("#copy-link-button")
    a.page.wait_for_function("() => document.querySelector('#copy-link-button').textContent === 'Link copied'")
    link = a.page.evaluate("() => navigator.clipboard.readText()")
    assert link == f"{server.base_url}/?meeting={meeting_id}", link
    b = launch("Follower")
    b.page.goto(link)
    assert b.page.input_value("#meeting-id") == meeting_id
    a.click("#leave-button")
