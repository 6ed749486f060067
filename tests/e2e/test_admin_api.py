"""The admin API through unmodified boto3 and the AWS CLI: accounts, auth, policies, bad input.

The server bootstraps a root principal (FullAccess) on first start and writes its keys to
<data-dir>/bootstrap-credentials.json; further principals come from `convene admin create-principal`.
"""

from __future__ import annotations

import datetime
import json
import os
import stat
import subprocess
import urllib.parse
import urllib.request

import botocore.auth
import botocore.exceptions
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from accounts import admin_client
from convene_e2e import CONVENE_BIN, start_server, stop_server
from postgres import TempPostgres

REGION = "us-east-1"


def client(server, creds):
    return admin_client(server, creds)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request, tmp_path_factory):
    """The whole suite runs twice: on the default SQLite store and on a real PostgreSQL."""
    pg = TempPostgres() if request.param == "postgres" else None
    extra = ("--database-url", pg.url) if pg else ()
    srv = start_server(tmp_path_factory.mktemp(f"admin-{request.param}"), extra)
    srv.extra_cli_args = list(extra)  # `convene admin ...` must use the same database
    try:
        yield srv
    finally:
        problems = stop_server(srv)
        if pg:
            pg.stop()
        if problems:
            pytest.fail("server shutdown: " + "; ".join(problems) + "\n" + srv.logs(), pytrace=False)


@pytest.fixture(scope="module")
def root(server):
    path = server.data_dir / "bootstrap-credentials.json"
    creds = json.loads(path.read_text())
    return creds


def create_principal(server, name, policy):
    out = subprocess.run(
        [str(CONVENE_BIN), "admin", "create-principal", name, "--policy", policy, "--data-dir", str(server.data_dir),
         *server.extra_cli_args],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def signed_raw(server, creds, method, path, body=b"", when=None):
    """A request signed by botocore's own SigV4 signer, sent as is (for bodies boto3 would refuse to build)."""
    url = server.base_url + path
    request = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json"})
    signer = botocore.auth.SigV4Auth(Credentials(creds["AccessKeyId"], creds["SecretAccessKey"]), "chime", REGION)
    if when is None:
        signer.add_auth(request)
    else:
        original = botocore.auth.get_current_datetime
        botocore.auth.get_current_datetime = lambda: when
        try:
            signer.add_auth(request)
        finally:
            botocore.auth.get_current_datetime = original
    prepared = request.prepare()
    req = urllib.request.Request(url, data=body if body else None, method=method, headers=dict(prepared.headers))
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def test_bootstrap_credentials_are_private_and_work(server, root):
    path = server.data_dir / "bootstrap-credentials.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert root["AccessKeyId"] and root["SecretAccessKey"]
    assert client(server, root).list_accounts()["Accounts"] == []


def test_account_lifecycle(server, root):
    c = client(server, root)
    created = c.create_account(Name="Acme Robotics")["Account"]
    assert created["Name"] == "Acme Robotics"
    assert created["AccountType"] == "Team"
    assert created["DefaultLicense"] == "Pro"
    assert created["AccountStatus"] == "Active"
    assert isinstance(created["CreatedTimestamp"], datetime.datetime)
    account_id = created["AccountId"]

    assert c.get_account(AccountId=account_id)["Account"]["Name"] == "Acme Robotics"
    names = [a["Name"] for a in c.list_accounts(Name="Acme")["Accounts"]]
    assert names == ["Acme Robotics"]

    renamed = c.update_account(AccountId=account_id, Name="Acme Corp", DefaultLicense="Basic")["Account"]
    assert (renamed["Name"], renamed["DefaultLicense"]) == ("Acme Corp", "Basic")

    c.delete_account(AccountId=account_id)
    with pytest.raises(c.exceptions.NotFoundException):
        c.get_account(AccountId=account_id)
    with pytest.raises(c.exceptions.NotFoundException):
        c.delete_account(AccountId=account_id)


def test_pagination_is_stable_and_ends_without_token(server, root):
    c = client(server, root)
    made = [c.create_account(Name=f"page-{i}")["Account"]["AccountId"] for i in range(7)]
    first = c.list_accounts(Name="page-", MaxResults=3)
    assert len(first["Accounts"]) == 3 and "NextToken" in first
    pages = list(c.get_paginator("list_accounts").paginate(Name="page-", PaginationConfig={"PageSize": 3}))
    assert [len(p["Accounts"]) for p in pages] == [3, 3, 1]
    assert "NextToken" not in pages[-1]
    assert [a["AccountId"] for p in pages for a in p["Accounts"]] == made


def test_aws_cli_auto_paginates(server, root):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=root["AccessKeyId"], AWS_SECRET_ACCESS_KEY=root["SecretAccessKey"],
               AWS_DEFAULT_REGION=REGION, AWS_PAGER="")
    for i in range(5):
        client(server, root).create_account(Name=f"cli-{i}")
    out = subprocess.run(
        ["aws", "chime", "list-accounts", "--name", "cli-", "--page-size", "2", "--endpoint-url", server.base_url,
         "--output", "json"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    names = sorted(a["Name"] for a in json.loads(out.stdout)["Accounts"])
    assert names == [f"cli-{i}" for i in range(5)]
    bad = subprocess.run(
        ["aws", "chime", "get-account", "--account-id", "6f1c1b8e-0000-4000-8000-000000000000",
         "--endpoint-url", server.base_url],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert bad.returncode != 0 and "NotFoundException" in bad.stderr


def test_read_only_principal_reads_but_cannot_write(server, root):
    ro = client(server, create_principal(server, "auditor", "ReadOnly"))
    ro.list_accounts()
    with pytest.raises(ro.exceptions.AccessDeniedException):
        ro.create_account(Name="nope")
    um = client(server, create_principal(server, "helpdesk", "UserManagement"))
    um.list_accounts()
    with pytest.raises(um.exceptions.AccessDeniedException):
        um.create_account(Name="nope either")  # CreateAccount is FullAccess only in the guide


def test_bad_credentials_get_typed_errors(server, root):
    wrong_secret = dict(root, SecretAccessKey="x" * 40)
    with pytest.raises(client(server, wrong_secret).exceptions.ForbiddenException):
        client(server, wrong_secret).list_accounts()
    unknown = {"AccessKeyId": "AKCVNOSUCHKEY0000000", "SecretAccessKey": "y" * 40}
    with pytest.raises(client(server, unknown).exceptions.UnauthorizedClientException):
        client(server, unknown).list_accounts()
    stale = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=10)
    status, headers, body = signed_raw(server, root, "GET", "/accounts", when=stale)
    assert status == 403 and headers.get("x-amzn-errortype") == "ForbiddenException", (status, headers, body)
    # No Authorization at all.
    req = urllib.request.Request(server.base_url + "/accounts")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 401 and e.value.headers.get("x-amzn-errortype") == "UnauthorizedClientException"


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"Name": 5}', b'{"Name": ""}', b'{"Name": "   "}',
                                  b'{"Name": "' + b"x" * 101 + b'"}', b'{"Name": "ok", "Surprise": 1}'])
def test_malformed_create_is_a_bad_request_and_writes_nothing(server, root, body):
    before = len(list_all(server, root))
    status, headers, payload = signed_raw(server, root, "POST", "/accounts", body)
    assert status == 400, (status, payload)
    assert headers.get("x-amzn-errortype") == "BadRequestException"
    assert json.loads(payload)["Code"] == "BadRequest"
    assert len(list_all(server, root)) == before


def test_oversized_body_and_odd_ids(server, root):
    status, headers, _ = signed_raw(server, root, "POST", "/accounts", b'{"Name": "' + b"x" * (1024 * 1024) + b'"}')
    assert status == 400 and headers.get("x-amzn-errortype") == "BadRequestException"
    c = client(server, root)
    for odd in ["not-a-uuid", "1 OR 1=1", "../../etc/passwd"]:
        with pytest.raises(c.exceptions.NotFoundException):
            c.get_account(AccountId=odd)
    sql = "Robert'); DROP TABLE accounts;--"
    made = c.create_account(Name=sql)["Account"]
    assert c.get_account(AccountId=made["AccountId"])["Account"]["Name"] == sql


def list_all(server, root):
    c = client(server, root)
    return [a for p in c.get_paginator("list_accounts").paginate() for a in p["Accounts"]]


def test_account_settings(server, root):
    c = client(server, root)
    account_id = c.create_account(Name="settings-co")["Account"]["AccountId"]
    assert c.get_account_settings(AccountId=account_id)["AccountSettings"] == {
        "DisableRemoteControl": False, "EnableDialOut": False}
    c.update_account_settings(AccountId=account_id, AccountSettings={"DisableRemoteControl": True})
    c.update_account_settings(AccountId=account_id, AccountSettings={"EnableDialOut": True})
    assert c.get_account_settings(AccountId=account_id)["AccountSettings"] == {
        "DisableRemoteControl": True, "EnableDialOut": True}
    with pytest.raises(c.exceptions.NotFoundException):
        c.get_account_settings(AccountId="6f1c1b8e-0000-4000-8000-000000000000")
    status, headers, _ = signed_raw(server, root, "PUT", f"/accounts/{account_id}/settings",
                                    b'{"AccountSettings": {"EnableDialOut": "yes"}}')
    assert status == 400 and headers.get("x-amzn-errortype") == "BadRequestException"
    # ReadOnly reads settings; UserManagement also changes them; ReadOnly may not.
    ro = client(server, create_principal(server, "settings-reader", "ReadOnly"))
    assert ro.get_account_settings(AccountId=account_id)["AccountSettings"]["EnableDialOut"] is True
    with pytest.raises(ro.exceptions.AccessDeniedException):
        ro.update_account_settings(AccountId=account_id, AccountSettings={"EnableDialOut": False})
    um = client(server, create_principal(server, "settings-admin", "UserManagement"))
    um.update_account_settings(AccountId=account_id, AccountSettings={"EnableDialOut": False})
    assert c.get_account_settings(AccountId=account_id)["AccountSettings"]["EnableDialOut"] is False


def test_users_create_get_list_update_pin_and_delete_rule(server, root):
    c = client(server, root)
    account_id = c.create_account(Name="users-co")["Account"]["AccountId"]
    ada = c.create_user(AccountId=account_id, Email="Ada@Example.com", Username="Ada")["User"]
    assert ada["PrimaryEmail"] == "ada@example.com"
    assert ada["LicenseType"] == "Pro" and ada["UserType"] == "PrivateUser"
    assert ada["UserRegistrationStatus"] == "Unregistered"
    pin = ada["PersonalPIN"]
    assert len(pin) == 10 and pin.isdigit()
    with pytest.raises(c.exceptions.ConflictException):
        c.create_user(AccountId=account_id, Email="ada@example.com")
    for bad in ["not-an-email", "a b@example.com", "ada@nodot"]:
        with pytest.raises(c.exceptions.BadRequestException):
            c.create_user(AccountId=account_id, Email=bad)
    for i in range(4):
        c.create_user(AccountId=account_id, Email=f"room{i}@example.com", UserType="SharedDevice")
    assert c.get_user(AccountId=account_id, UserId=ada["UserId"])["User"]["PersonalPIN"] == pin
    pages = list(c.get_paginator("list_users").paginate(AccountId=account_id, PaginationConfig={"PageSize": 2}))
    assert [len(p["Users"]) for p in pages] == [2, 2, 1] and "NextToken" not in pages[-1]
    assert len(c.list_users(AccountId=account_id, UserType="SharedDevice")["Users"]) == 4
    assert [u["UserId"] for u in c.list_users(AccountId=account_id, UserEmail="ADA@example.com")["Users"]] == [ada["UserId"]]
    assert c.update_user(AccountId=account_id, UserId=ada["UserId"], LicenseType="Basic")["User"]["LicenseType"] == "Basic"
    new_pin = c.reset_personal_pin(AccountId=account_id, UserId=ada["UserId"])["User"]["PersonalPIN"]
    assert new_pin != pin and len(new_pin) == 10
    other = c.create_account(Name="other-co")["Account"]["AccountId"]
    with pytest.raises(c.exceptions.NotFoundException):
        c.get_user(AccountId=other, UserId=ada["UserId"])
    with pytest.raises(c.exceptions.UnprocessableEntityException):
        c.delete_account(AccountId=account_id)
    ro = client(server, create_principal(server, "users-reader", "ReadOnly"))
    assert len(ro.list_users(AccountId=account_id)["Users"]) == 5
    with pytest.raises(ro.exceptions.AccessDeniedException):
        ro.reset_personal_pin(AccountId=account_id, UserId=ada["UserId"])


def test_logout_batches_and_removal(server, root):
    c = client(server, root)
    account_id = c.create_account(Name="batch-co")["Account"]["AccountId"]
    ids = [c.create_user(AccountId=account_id, Email=f"b{i}@batch.example.com")["User"]["UserId"] for i in range(3)]
    c.logout_user(AccountId=account_id, UserId=ids[0])
    with pytest.raises(c.exceptions.NotFoundException):
        c.logout_user(AccountId=account_id, UserId="6f1c1b8e-0000-4000-8000-000000000000")
    # A team account's users cannot be suspended: per-user errors, not a failed batch.
    errors = c.batch_suspend_user(AccountId=account_id, UserIdList=ids)["UserErrors"]
    assert sorted(e["UserId"] for e in errors) == sorted(ids)
    assert all(e["ErrorCode"] == "BadRequest" for e in errors)
    assert c.get_user(AccountId=account_id, UserId=ids[0])["User"]["UserRegistrationStatus"] == "Unregistered"
    with pytest.raises(c.exceptions.BadRequestException):
        c.batch_suspend_user(AccountId=account_id, UserIdList=[f"id-{i}" for i in range(51)])
    # Removal (our extension, POST ?operation=remove): per-user errors for unknown ids.
    status, headers, payload = signed_raw(server, root, "POST", f"/accounts/{account_id}/users?operation=remove",
                                          json.dumps({"UserIdList": ids + ["nope"]}).encode())
    assert status == 200, payload
    assert [e["UserId"] for e in json.loads(payload)["UserErrors"]] == ["nope"]
    assert c.list_users(AccountId=account_id)["Users"] == []
    c.delete_account(AccountId=account_id)  # no users left: allowed now


def test_invitations_are_emailed_to_the_outbox(server, root):
    import email
    c = client(server, root)
    account_id = c.create_account(Name="Invite Co")["Account"]["AccountId"]
    c.update_account(AccountId=account_id, Name="Invite Corp")  # the new name is what e-mails show
    other = c.create_account(Name="Elsewhere")["Account"]["AccountId"]
    c.create_user(AccountId=other, Email="taken@elsewhere.example.com")
    invites = c.invite_users(AccountId=account_id, UserEmailList=[
        "Grace@Invite.example.com", "not an address", "taken@elsewhere.example.com", "linus@invite.example.com"])["Invites"]
    assert [(i["EmailAddress"], i["Status"], i["EmailStatus"]) for i in invites] == [
        ("grace@invite.example.com", "Pending", "Sent"),
        ("not an address", "Failed", "NotSent"),
        ("taken@elsewhere.example.com", "Failed", "NotSent"),
        ("linus@invite.example.com", "Pending", "Sent"),
    ]
    users = {u["PrimaryEmail"]: u for u in c.list_users(AccountId=account_id)["Users"]}
    assert set(users) == {"grace@invite.example.com", "linus@invite.example.com"}
    assert all(u["UserRegistrationStatus"] == "Unregistered" and u["LicenseType"] == "Pro" for u in users.values())
    eml = server.data_dir / "outbox" / f"{invites[0]['InviteId']}.eml"
    message = email.message_from_bytes(eml.read_bytes())
    assert message["To"] == "grace@invite.example.com"
    assert "Invite Corp" in message["Subject"]
    text = message.get_payload(decode=True).decode()
    assert "Invite Corp" in text and f"{server.base_url}/register?invite=" in text
    with pytest.raises(c.exceptions.BadRequestException):
        c.invite_users(AccountId=account_id, UserEmailList=[f"u{i}@invite.example.com" for i in range(51)])
    # Inviting again sends a fresh link to the same user.
    again = c.invite_users(AccountId=account_id, UserEmailList=["grace@invite.example.com"])["Invites"]
    assert again[0]["Status"] == "Pending" and again[0]["InviteId"] != invites[0]["InviteId"]
    assert len(c.list_users(AccountId=account_id)["Users"]) == 2


def test_batch_update_and_settings_documents(server, root):
    c = client(server, root)
    account_id = c.create_account(Name="settings-docs")["Account"]["AccountId"]
    a = c.create_user(AccountId=account_id, Email="a@docs.example.com")["User"]["UserId"]
    b = c.create_user(AccountId=account_id, Email="b@docs.example.com")["User"]["UserId"]
    errors = c.batch_update_user(AccountId=account_id, UpdateUserRequestItems=[
        {"UserId": a, "LicenseType": "Basic"},
        {"UserId": b, "UserType": "SharedDevice"},
        {"UserId": "6f1c1b8e-0000-4000-8000-000000000000", "LicenseType": "Pro"},
    ])["UserErrors"]
    assert [e["ErrorCode"] for e in errors] == ["NotFound"]
    assert c.get_user(AccountId=account_id, UserId=a)["User"]["LicenseType"] == "Basic"
    assert c.get_user(AccountId=account_id, UserId=b)["User"]["UserType"] == "SharedDevice"
    with pytest.raises(c.exceptions.BadRequestException):
        c.batch_update_user(AccountId=account_id, UpdateUserRequestItems=[{"UserId": a}] * 21)

    telephony = c.get_user_settings(AccountId=account_id, UserId=a)["UserSettings"]["Telephony"]
    assert telephony == {"InboundCalling": False, "OutboundCalling": False, "SMS": False}
    c.update_user_settings(AccountId=account_id, UserId=a,
                           UserSettings={"Telephony": {"InboundCalling": True, "OutboundCalling": False, "SMS": True}})
    assert c.get_user_settings(AccountId=account_id, UserId=a)["UserSettings"]["Telephony"]["SMS"] is True

    assert c.get_retention_settings(AccountId=account_id)["RetentionSettings"] == {}
    c.put_retention_settings(AccountId=account_id, RetentionSettings={"RoomRetentionSettings": {"RetentionDays": 30}})
    got = c.get_retention_settings(AccountId=account_id)["RetentionSettings"]
    assert got == {"RoomRetentionSettings": {"RetentionDays": 30}}
    status, headers, _ = signed_raw(server, root, "PUT", f"/accounts/{account_id}/retention-settings",
                                    b'{"RetentionSettings": {"RoomRetentionSettings": {"RetentionDays": 9999}}}')
    assert status == 400 and headers.get("x-amzn-errortype") == "BadRequestException"

    c.update_global_settings(BusinessCalling={"CdrBucket": "cdrs"}, VoiceConnector={"CdrBucket": "vc"})
    g = c.get_global_settings()
    assert g["BusinessCalling"] == {"CdrBucket": "cdrs"} and g["VoiceConnector"] == {"CdrBucket": "vc"}
    ro = client(server, create_principal(server, "docs-reader", "ReadOnly"))
    assert ro.get_global_settings()["BusinessCalling"]["CdrBucket"] == "cdrs"
    with pytest.raises(ro.exceptions.AccessDeniedException):
        ro.update_global_settings(BusinessCalling={"CdrBucket": "x"})


def test_list_accounts_by_user_email_and_cleanup(server, root):
    c = client(server, root)
    account_id = c.create_account(Name="by-email")["Account"]["AccountId"]
    user = c.create_user(AccountId=account_id, Email="finder@by-email.example.com")["User"]["UserId"]
    found = c.list_accounts(UserEmail="FINDER@by-email.example.com")["Accounts"]
    assert [a["AccountId"] for a in found] == [account_id]
    assert c.list_accounts(UserEmail="nobody@by-email.example.com")["Accounts"] == []
    c.put_retention_settings(AccountId=account_id, RetentionSettings={"RoomRetentionSettings": {"RetentionDays": 7}})
    c.update_user_settings(AccountId=account_id, UserId=user,
                           UserSettings={"Telephony": {"InboundCalling": True, "OutboundCalling": True, "SMS": True}})
    status, _, payload = signed_raw(server, root, "POST", f"/accounts/{account_id}/users?operation=remove",
                                    json.dumps({"UserIdList": [user]}).encode())
    assert status == 200 and json.loads(payload)["UserErrors"] == []
    c.delete_account(AccountId=account_id)
    # Deleted with everything that belonged to it: a new account of the same name starts clean.
    again = c.create_account(Name="by-email")["Account"]["AccountId"]
    assert c.get_retention_settings(AccountId=again)["RetentionSettings"] == {}
    assert c.list_accounts(UserEmail="finder@by-email.example.com")["Accounts"] == []


def lookup(server, creds, **params):
    query = "&".join(f"{k.replace('_', '-')}={urllib.parse.quote(str(v))}" for k, v in params.items())
    status, headers, body = signed_raw(server, creds, "GET", f"/audit/events?{query}")
    assert status == 200, body
    return json.loads(body)


def test_every_call_is_audited_before_the_answer(server, root):
    c = client(server, root)
    made = c.create_account(Name="audited")["Account"]["AccountId"]
    # The record of a successful call is there as soon as the call returns.
    events = lookup(server, root, event_name="CreateAccount", principal="root")["Events"]
    mine = [e for e in events if (e.get("responseElements") or {}).get("Account", {}).get("AccountId") == made]
    assert len(mine) == 1
    e = mine[0]
    for field in ["eventVersion", "userIdentity", "eventTime", "eventSource", "eventName", "awsRegion",
                  "sourceIPAddress", "userAgent", "requestParameters", "responseElements", "requestID",
                  "eventID", "eventType", "readOnly", "recipientAccountId"]:
        assert field in e, field
    assert e["userIdentity"]["userName"] == "root" and e["userIdentity"]["accessKeyId"] == root["AccessKeyId"]
    assert e["awsRegion"] == REGION and e["sourceIPAddress"] == "127.0.0.1" and e["errorCode"] is None
    assert e["readOnly"] is False and "Boto3" in e["userAgent"]
    assert e["requestParameters"]["body"] == {"Name": "audited"}

    # Denied and failed calls are recorded too.
    auditor = create_principal(server, "audit-denied", "ReadOnly")
    with pytest.raises(client(server, auditor).exceptions.AccessDeniedException):
        client(server, auditor).create_account(Name="denied")
    denied = lookup(server, root, principal="audit-denied", event_name="CreateAccount")["Events"]
    assert [d["errorCode"] for d in denied] == ["AccessDeniedException"]
    wrong = dict(root, SecretAccessKey="z" * 40)
    with pytest.raises(client(server, wrong).exceptions.ForbiddenException):
        client(server, wrong).get_account(AccountId=made)
    forged = [x for x in lookup(server, root, event_name="GetAccount")["Events"] if x["errorCode"] == "ForbiddenException"]
    assert forged and forged[-1]["userIdentity"]["userName"] is None

    # Lookups page with a token and can be bounded in time.
    first = lookup(server, root, max_results=2)
    assert len(first["Events"]) == 2 and "NextToken" in first
    future = lookup(server, root, start_time="2999-01-01T00:00:00Z")["Events"]
    assert future == []


def convene(*args, check=True):
    out = subprocess.run([str(CONVENE_BIN), *args], capture_output=True, text=True, timeout=60)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_audit_files_are_delivered_signed_and_verified(server, root):
    import gzip
    c = client(server, root)
    marker = c.create_account(Name="delivered-audit-marker")["Account"]["AccountId"]
    c.get_account(AccountId=marker)
    convene("audit", "deliver", "--data-dir", str(server.data_dir), *server.extra_cli_args)
    audit_dir = server.data_dir / "audit"
    files = sorted(audit_dir.glob("*.json.gz"))
    assert files and all(f.name.startswith("000000000000_CloudTrail_us-east-1_") for f in files)
    records = [r for f in files for r in json.loads(gzip.decompress(f.read_bytes()))["Records"]]
    mine = [r for r in records if marker in json.dumps(r)]
    assert [r["eventName"] for r in mine] == ["CreateAccount", "GetAccount"]
    assert convene("audit", "verify", str(audit_dir)).stdout.strip().endswith("intact")

    # One byte of a delivered file edited: verify fails and names the file.
    victim = files[-1]
    original = victim.read_bytes()
    edited = bytearray(original)
    edited[len(edited) // 2] ^= 1
    victim.write_bytes(bytes(edited))
    bad = convene("audit", "verify", str(audit_dir), check=False)
    assert bad.returncode != 0 and victim.name in bad.stderr
    victim.write_bytes(original)
    # A delivered file deleted: named too.
    victim.rename(server.data_dir / "aside.gz")
    gone = convene("audit", "verify", str(audit_dir), check=False)
    assert gone.returncode != 0 and victim.name in gone.stderr
    (server.data_dir / "aside.gz").rename(victim)
    assert convene("audit", "verify", str(audit_dir)).returncode == 0

    # `convene audit lookup` filters the store.
    out = convene("audit", "lookup", "--event-name", "GetAccount", "--principal", "root",
                  "--data-dir", str(server.data_dir), *server.extra_cli_args).stdout
    assert any(marker in line for line in out.splitlines())


def test_principals_can_be_listed_changed_and_deleted(server, root, tmp_path):
    base = ["--data-dir", str(server.data_dir), *server.extra_cli_args]
    ops = create_principal(server, "ops-person", "ReadOnly")
    c = client(server, ops)
    with pytest.raises(c.exceptions.AccessDeniedException):
        c.create_account(Name="ops-made")
    # A custom document: allow creating accounts, but only from loopback.
    doc = tmp_path / "create-from-loopback.json"
    doc.write_text(json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "chime:CreateAccount", "Resource": "*",
        "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}}]}))
    convene("admin", "attach-policy", "ops-person", "--policy", str(doc), *base)
    c.create_account(Name="ops-made")
    # An explicit deny wins over it.
    deny = tmp_path / "deny-create.json"
    deny.write_text(json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Action": "chime:Create*", "Resource": "*"}]}))
    convene("admin", "attach-policy", "ops-person", "--policy", str(deny), *base)
    with pytest.raises(c.exceptions.AccessDeniedException):
        c.create_account(Name="ops-denied")
    convene("admin", "detach-policy", "ops-person", "--policy", str(deny), *base)
    c.create_account(Name="ops-made-again")
    listed = [json.loads(line) for line in convene("admin", "list-principals", *base).stdout.splitlines()]
    mine = next(p for p in listed if p["Name"] == "ops-person")
    assert mine["AccessKeyId"] == ops["AccessKeyId"] and "ReadOnly" in mine["Policies"]
    assert all("Secret" not in json.dumps(p) for p in listed)
    bad = tmp_path / "bad.json"
    bad.write_text('{"Statement": [{"Effect": "Perhaps", "Action": "*", "Resource": "*"}]}')
    assert convene("admin", "attach-policy", "ops-person", "--policy", str(bad), *base, check=False).returncode != 0
    convene("admin", "delete-principal", "ops-person", *base)
    with pytest.raises(c.exceptions.UnauthorizedClientException):
        c.list_accounts()


def test_report_operations_validate_and_authorize(server, root):
    c = client(server, root)
    account_id = c.create_account(Name="Reported")["Account"]["AccountId"]
    base = f"/accounts/{account_id}/reports"

    def get(path, creds=root):
        status, _headers, body = signed_raw(server, creds, "GET", path)
        return status, json.loads(body or b"{}")

    status, usage = get(f"{base}/usage?from=2026-01-01&to=2026-01-31")
    assert status == 200, usage
    assert usage["UsageReport"]["MeetingsHeld"] == 0 and usage["UsageReport"]["DateRange"] == {
        "From": "2026-01-01", "To": "2026-01-31"}
    assert get(f"{base}/meetings")[1]["Meetings"] == []
    assert get(f"{base}/active-pro?from=2026-01-01")[1]["ActiveProUsers"] == []
    for query in ("from=yesterday", "from=2026-02-01&to=2026-01-01", "from=2020-01-01&to=2026-01-01"):
        status, err = get(f"{base}/usage?{query}")
        assert status == 400 and err["Code"] == "BadRequest", (query, err)
    status, err = get(f"{base}/meetings/6f1c1b8e-0000-4000-8000-000000000000")
    assert status == 404 and err["Code"] == "NotFound", err
    assert get(f"{base}/meetings/not-a-uuid")[0] == 404
    assert get(f"/accounts/6f1c1b8e-0000-4000-8000-000000000000/reports/usage")[0] == 404
    # ReadOnly reads usage but not meeting details (the guide keeps those from RO).
    ro = create_principal(server, "report-reader", "ReadOnly")
    assert get(f"{base}/usage", ro)[0] == 200
    status, err = get(f"{base}/meetings/6f1c1b8e-0000-4000-8000-000000000000", ro)
    assert status == 403 and err["Code"] == "AccessDenied", err
