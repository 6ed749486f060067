"""Accounts, users and meetings for end-to-end tests, made the way an operator and users make them:
an account and an invitation through the admin API (boto3, with the bootstrap principal's keys),
registration through the invitation link found in the e-mail Convene wrote, then the web API
(docs/web-api.md) with a cookie session, exactly as the web app calls it."""

from __future__ import annotations

import base64
import email
import email.policy
import http.cookiejar
import json
import re
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
from botocore.config import Config

REGION = "us-east-1"
PASSWORD = "correct horse battery"


def admin_client(server, creds: dict | None = None):
    """boto3's Chime client against the server, as the bootstrap (root) principal by default."""
    creds = creds or json.loads((server.data_dir / "bootstrap-credentials.json").read_text())
    return boto3.client(
        "chime",
        endpoint_url=server.base_url,
        region_name=REGION,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        config=Config(retries={"max_attempts": 1}),
    )


class WebSession:
    """One browser-like client of the web API, with its own cookie jar."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.user: dict | None = None

    def call(self, method: str, path: str, body=None, headers: dict | None = None) -> tuple[int, dict | None]:
        data = None
        hdrs = dict(headers or {})
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=hdrs)
        try:
            with self.opener.open(req, timeout=30) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, {"raw": raw.decode("utf-8", "replace")}

    def ok(self, method: str, path: str, body=None) -> dict | None:
        status, reply = self.call(method, path, body)
        assert 200 <= status < 300, f"{method} {path} -> {status}: {reply}"
        return reply

    def cookie(self, name: str = "convene_session") -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)

    # -- meetings

    def new_meeting(self, **schedule) -> str:
        body = {"kind": "scheduled", **schedule} if schedule else {"kind": "instant"}
        return self.ok("POST", "/v1/meetings", body)["meeting"]["meeting_id"]

    def join_grant(self, meeting_id: str, name: str | None = None) -> dict:
        return self.ok("POST", f"/v1/meetings/{meeting_id}/join", {"name": name} if name else {})


def invite_token(server, invite_id: str, timeout: float = 10.0) -> str:
    """The registration token from the invitation e-mail Convene wrote to <data-dir>/outbox/."""
    path = Path(server.data_dir) / "outbox" / f"{invite_id}.eml"
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"no invitation e-mail at {path}"
        time.sleep(0.1)
    return token_from_email(path.read_bytes())


def token_from_email(raw: bytes) -> str:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    body = msg.get_body(preferencelist=("plain",)).get_content()
    m = re.search(r"/register\?invite=([0-9a-f]{64})", body)
    assert m, f"no registration link in the e-mail:\n{body}"
    return m.group(1)


def new_account(server, name: str | None = None) -> str:
    chime = admin_client(server)
    return chime.create_account(Name=name or f"Team {uuid.uuid4().hex[:6]}")["Account"]["AccountId"]


def registered_user(server, account_id: str | None = None, name: str = "Hedy Host",
                    license: str = "Pro") -> WebSession:
    """A user invited by an account, registered through the link in the e-mail, signed in."""
    chime = admin_client(server)
    account_id = account_id or new_account(server)
    address = f"user-{uuid.uuid4().hex[:8]}@example.com"
    invite = chime.invite_users(AccountId=account_id, UserEmailList=[address])["Invites"][0]
    assert invite["Status"] == "Pending", invite
    session = WebSession(server.base_url)
    reply = session.ok("POST", "/v1/register",
                       {"invite": invite_token(server, invite["InviteId"]), "name": name, "password": PASSWORD})
    session.user = reply["user"]
    session.user["email"] = address
    session.user["account_id"] = account_id
    if license != "Pro":
        chime.update_user(AccountId=account_id, UserId=session.user["user_id"], LicenseType=license)
        session.user = session.ok("GET", "/v1/session")["user"]
    return session


def guest_grant(server, meeting_id: str, name: str) -> dict:
    return WebSession(server.base_url).join_grant(meeting_id, name)


def sign_token(seed: bytes, claims: dict) -> str:
    """A join token signed with `seed` (Ed25519), in Convene's wire form: for forged/expired-token tests."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    signed = "v1." + b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = Ed25519PrivateKey.from_private_bytes(seed).sign(signed.encode())
    return signed + "." + b64(sig)


def server_token_seed(server) -> bytes:
    return bytes.fromhex((Path(server.data_dir) / "join-token.key").read_text().strip())


def admin_call(server, method: str, path: str, body: bytes = b"", creds: dict | None = None) -> tuple[int, dict]:
    """An admin API request boto3 has no method for (our report and billing operations), signed with
    botocore's own SigV4 signer as the bootstrap principal."""
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    creds = creds or json.loads((Path(server.data_dir) / "bootstrap-credentials.json").read_text())
    request = AWSRequest(method=method, url=server.base_url + path, data=body,
                         headers={"Content-Type": "application/json"})
    botocore.auth.SigV4Auth(Credentials(creds["AccessKeyId"], creds["SecretAccessKey"]), "chime", REGION) \
        .add_auth(request)
    prepared = request.prepare()
    req = urllib.request.Request(prepared.url, data=body or None, method=method, headers=dict(prepared.headers))
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else {})
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, (json.loads(raw) if raw else {})


def mails_to(server, address: str) -> list[email.message.EmailMessage]:
    """Every e-mail Convene wrote to the outbox for `address`, oldest first."""
    outbox = Path(server.data_dir) / "outbox"
    found = []
    for path in sorted(outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime) if outbox.exists() else []:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if msg["To"] and address in str(msg["To"]):
            found.append(msg)
    return found


def link_token(msg, kind: str) -> str:
    body = msg.get_body(preferencelist=("plain",)).get_content()
    m = re.search(rf"/register\?{kind}=([0-9a-f]{{64}})", body)
    assert m, f"no {kind} link in the e-mail:\n{body}"
    return m.group(1)
