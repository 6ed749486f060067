"""Meetings become billing and reports: Active Pro for the host of a qualifying meeting (browser
meeting, end to end), the report operations, the end-of-meeting survey, the monthly CSV export, and
exactly-once billing across a SIGKILL between a meeting's end and its consumption."""

from __future__ import annotations

import datetime
import json
import signal
import subprocess
import time


from accounts import WebSession, admin_call, guest_grant, registered_user
from convene_e2e import CONVENE_BIN, poll, start_server, stop_server, wait_media_flowing
from raw_signal import Raw


def today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


def active_pro(server, account_id: str) -> list[dict]:
    status, reply = admin_call(server, "GET", f"/accounts/{account_id}/reports/active-pro?from={today()}&to={today()}")
    assert status == 200, reply
    return reply["ActiveProUsers"]


def test_scheduled_meeting_bills_its_host_and_shows_in_reports(server, launch):
    host = registered_user(server, name="Bea Billed")
    account_id = host.user["account_id"]
    h = launch("Bea")
    h.context.add_cookies([{"name": "convene_session", "value": host.cookie(), "url": server.base_url}])
    meeting_id = host.new_meeting(title="Budget", starts_at="2030-01-01T09:00:00Z", duration_minutes=30)
    h.open_and_join(server.base_url, meeting_id)
    assert h.page.evaluate("() => window.convene.role") == "host"
    guests = [launch(n) for n in ("Cy", "Di")]
    for g in guests:
        g.open_and_join(server.base_url, meeting_id)
    ids = {a.name: a.attendee_id for a in [h, *guests]}
    wait_media_flowing(guests[0], [(ids["Bea"], "audio")])
    assert active_pro(server, account_id) == [], "nothing is billed before the meeting ends"

    guests[1].click("#leave-button")  # one leaves...
    time.sleep(0.5)
    for a in (guests[0], h):  # ...then the meeting ends
        a.click("#leave-button")

    rows = poll(lambda: active_pro(server, account_id), 10, desc="the host to become Active Pro")
    assert [(r["UserId"], r["Day"], r["Reason"]) for r in rows] == [(host.user["user_id"], today(), "scheduled+more_than_two_attendees")]

    status, meetings = admin_call(server, "GET", f"/accounts/{account_id}/reports/meetings?from={today()}")
    assert status == 200, meetings
    [m] = meetings["Meetings"]
    assert m["MeetingId"] == meeting_id and m["Type"] == "scheduled" and m["Attendees"] == 3
    assert m["Organizer"] == "Bea Billed" and m["DurationSeconds"] >= 0
    status, detail = admin_call(server, "GET", f"/accounts/{account_id}/reports/meetings/{m['ConferenceId']}")
    assert status == 200, detail
    attendees = {a["Name"]: a for a in detail["Meeting"]["AttendeeList"]}
    assert set(attendees) == {"Bea", "Cy", "Di"}  # the names typed on the join form
    assert attendees["Bea"]["Role"] == "host" and attendees["Cy"]["Role"] == "attendee"
    assert attendees["Bea"]["UserId"] == host.user["user_id"] and attendees["Cy"]["UserId"] is None
    assert all(a["ClientType"] == "web" and a["LeaveTime"] for a in attendees.values())
    status, events = admin_call(server, "GET", f"/accounts/{account_id}/reports/meetings/{m['ConferenceId']}/events")
    kinds = [e["EventType"] for e in events["Events"]]
    assert kinds[0] == "meeting_started" and kinds[-1] == "meeting_ended" and kinds.count("attendee_joined") == 3
    status, usage = admin_call(server, "GET", f"/accounts/{account_id}/reports/usage?from={today()}&to={today()}")
    assert usage["UsageReport"]["MeetingsHeld"] == 1 and usage["UsageReport"]["ActiveUsers"] == 1
    status, activity = admin_call(
        server, "GET", f"/accounts/{account_id}/users/{host.user['user_id']}/activity?from={today()}")
    assert activity["UserActivity"]["MeetingsOrganized"] == 1 and activity["UserActivity"]["MeetingsAttended"] == 1


def test_survey_answers_reach_the_reports(server):
    host = registered_user(server, name="Sue Survey")
    meeting_id = host.new_meeting()
    grants = [guest_grant(server, meeting_id, n) for n in ("Ann", "Bob")]
    socks = []
    for g in grants:
        r = Raw(server)
        r.join(meeting_id, g["token"])
        socks.append(r)
    for r in socks:
        r.send({"type": "leave"})
        r.close()
    anon = WebSession(server.base_url)
    # The meeting's events reach the reports within moments; until then the answer is 404 (retry).
    for grant, rating in ((grants[0], "up"), (grants[1], "down")):
        poll(lambda: anon.call("POST", "/v1/feedback", {"token": grant["token"], "rating": rating})[0] == 204,
             10, desc=f"the {rating} answer to be accepted")
    status, reply = anon.call("POST", "/v1/feedback", {"token": grants[1]["token"], "rating": "meh"})
    assert status == 400 and "rating" in reply["message"]
    status, reply = anon.call("POST", "/v1/feedback", {"token": grants[1]["token"][:-4] + "AAAA", "rating": "up"})
    assert status == 401, reply
    account_id = host.user["account_id"]
    status, usage = admin_call(server, "GET", f"/accounts/{account_id}/reports/usage")
    assert usage["UsageReport"]["PositiveFeedback"] == 1 and usage["UsageReport"]["NegativeFeedback"] == 1
    assert usage["UsageReport"]["MeetingSatisfactionPercent"] == 50.0


def join_and_leave(server, meeting_id: str, names: list[str]):
    socks = []
    for n in names:
        r = Raw(server)
        r.join(meeting_id, guest_grant(server, meeting_id, n)["token"])
        socks.append(r)
    for r in socks:
        r.send({"type": "leave"})
        r.close()


def test_sigkill_before_billing_consumed_bills_exactly_once(tmp_path):
    # First life: events are journaled but this node does not consume them (billing off).
    srv = start_server(tmp_path, ("--billing", "false"))
    try:
        host = registered_user(srv, name="Kim Killed")
        meeting_id = host.new_meeting(starts_at="2030-01-01T09:00:00Z")
        join_and_leave(srv, meeting_id, ["One", "Two"])
        journal = srv.data_dir / "events" / "journal.jsonl"
        poll(lambda: journal.exists() and '"meeting_ended"' in journal.read_text(), 10,
             desc="meeting_ended in the event journal")
        assert active_pro(srv, host.user["account_id"]) == []
    finally:
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        srv.stopped = True

    # Second life (billing on): the journal is applied from the saved offset.
    for life in (2, 3):
        srv = start_server(tmp_path)
        try:
            rows = poll(lambda: active_pro(srv, host.user["account_id"]), 10, desc=f"billing in life {life}")
            assert [(r["UserId"], r["Reason"]) for r in rows] == [(host.user["user_id"], "scheduled")], rows
        finally:
            assert not stop_server(srv)

    month = today()[:7]
    out = subprocess.run([str(CONVENE_BIN), "billing", "report", "--month", month, "--data-dir", str(srv.data_dir)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "account,user,email,day,reason"
    assert lines[1:] == [f"{host.user['account_id']},{host.user['user_id']},{host.user['email']},{today()},scheduled"]
