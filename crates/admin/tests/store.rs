//! The repository layer, run unchanged on SQLite and on a real PostgreSQL.

mod support;

use convene_admin::model::{AccountId, AccountType, License};
use convene_admin::store::{Backend, Store};
use support::{TempDir, TempPostgres};
use time::macros::datetime;

async fn audit_chain_behaves(store: &Store) {
    use convene_admin::store::audit::{AuditQuery, GENESIS, chain_hash};
    let a = store
        .append_audit(
            "e1",
            "2026-11-24T08:00:00.000Z",
            "CreateAccount",
            "root",
            "{\"a\":1}",
        )
        .await
        .unwrap();
    let b = store
        .append_audit(
            "e2",
            "2026-11-24T08:00:01.000Z",
            "ListAccounts",
            "auditor",
            "{\"b\":2}",
        )
        .await
        .unwrap();
    let c = store
        .append_audit(
            "e3",
            "2026-11-24T08:00:02.000Z",
            "CreateAccount",
            "auditor",
            "{\"c\":3}",
        )
        .await
        .unwrap();
    assert_eq!((a.seq, b.seq, c.seq), (1, 2, 3));
    assert_eq!(a.prev_hash, GENESIS);
    assert_eq!(a.hash, chain_hash(GENESIS, "{\"a\":1}"));
    assert_eq!(b.prev_hash, a.hash);
    assert_eq!(c.prev_hash, b.hash);
    assert_eq!(c.hash, chain_hash(&b.hash, "{\"c\":3}"));
    let q = AuditQuery {
        event_name: "CreateAccount",
        ..Default::default()
    };
    let found = store.lookup_audit(&q, 0, 10).await.unwrap();
    assert_eq!(
        found
            .iter()
            .map(|r| r.event_id.as_str())
            .collect::<Vec<_>>(),
        vec!["e1", "e3"]
    );
    let q = AuditQuery {
        principal: "auditor",
        start: "2026-11-24T08:00:01.500Z",
        ..Default::default()
    };
    assert_eq!(store.lookup_audit(&q, 0, 10).await.unwrap().len(), 1);
    assert_eq!(
        store
            .lookup_audit(&AuditQuery::default(), 1, 1)
            .await
            .unwrap()[0]
            .event_id,
        "e2"
    );
}

async fn accounts_behave(store: &Store) {
    audit_chain_behaves(store).await;
    let t0 = datetime!(2026-11-24 08:00:00 UTC);
    let a = store
        .create_account("Acme", AccountType::Team, License::Pro, t0)
        .await
        .unwrap();
    assert_eq!(a.name, "Acme");
    assert_eq!(a.account_type, AccountType::Team);
    assert_eq!(a.default_license, License::Pro);
    assert_eq!(a.created_at, t0);
    assert_eq!(store.account(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.account(&AccountId::new()).await.unwrap(), None);

    // Names that look like SQL are just names.
    let weird = "x'); DROP TABLE accounts; --";
    let b = store
        .create_account(weird, AccountType::EnterpriseOIDC, License::Basic, t0)
        .await
        .unwrap();
    assert_eq!(store.account(&b.id).await.unwrap().unwrap().name, weird);

    // Pagination is stable, in creation order, with no token after the last page.
    for i in 0..5 {
        store
            .create_account(&format!("n{i}"), AccountType::Team, License::Pro, t0)
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_accounts(None, after, 3).await.unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|a| a.name.clone()));
        match page.next_after {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, vec!["Acme", weird, "n0", "n1", "n2", "n3", "n4"]);
    let exact = store.list_accounts(Some("n3"), None, 10).await.unwrap();
    assert_eq!(exact.items.len(), 1);
    assert_eq!(exact.next_after, None);
    let prefix = store.list_accounts(Some("n"), None, 10).await.unwrap();
    assert_eq!(prefix.items.len(), 5);
    // Prefix matching is literal: LIKE wildcards in a name are just characters.
    assert_eq!(
        store
            .list_accounts(Some("%"), None, 10)
            .await
            .unwrap()
            .items
            .len(),
        0
    );

    // Rename and relicense, partially.
    let renamed = store
        .update_account(&a.id, Some("Acme Corp"), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (renamed.name.as_str(), renamed.default_license),
        ("Acme Corp", License::Pro)
    );
    let relicensed = store
        .update_account(&a.id, None, Some(License::Basic))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (relicensed.name.as_str(), relicensed.default_license),
        ("Acme Corp", License::Basic)
    );
    assert_eq!(
        store
            .update_account(&AccountId::new(), Some("x"), None)
            .await
            .unwrap(),
        None
    );

    // Settings: off by default, changed one at a time.
    use convene_admin::store::accounts::AccountSettings;
    assert_eq!(
        store.account_settings(&a.id).await.unwrap(),
        Some(AccountSettings::default())
    );
    assert!(
        store
            .update_account_settings(&a.id, Some(true), None)
            .await
            .unwrap()
    );
    assert!(
        store
            .update_account_settings(&a.id, None, Some(true))
            .await
            .unwrap()
    );
    assert!(
        store
            .update_account_settings(&a.id, Some(false), None)
            .await
            .unwrap()
    );
    let settings = store.account_settings(&a.id).await.unwrap().unwrap();
    assert_eq!(
        (settings.disable_remote_control, settings.enable_dial_out),
        (false, true)
    );
    assert!(
        !store
            .update_account_settings(&AccountId::new(), Some(true), None)
            .await
            .unwrap()
    );
    assert_eq!(
        store.account_settings(&AccountId::new()).await.unwrap(),
        None
    );

    // Users: unique e-mails (case-insensitive), unique 10-digit PINs, scoped to their account.
    use convene_admin::model::{RegistrationStatus, UserType};
    use convene_admin::store::users::CreateUser;
    let CreateUser::Created(ada) = store
        .create_user(
            &b.id,
            "Ada@Example.com",
            "Ada",
            License::Pro,
            UserType::PrivateUser,
            t0,
        )
        .await
        .unwrap()
    else {
        panic!("user not created")
    };
    assert_eq!(ada.email, "ada@example.com");
    assert_eq!(ada.registration_status, RegistrationStatus::Unregistered);
    assert_eq!(ada.personal_pin.len(), 10);
    assert!(
        ada.personal_pin.bytes().all(|c| c.is_ascii_digit()) && !ada.personal_pin.starts_with('0')
    );
    assert_eq!(
        store
            .create_user(
                &b.id,
                "ADA@example.com",
                "Ada 2",
                License::Pro,
                UserType::PrivateUser,
                t0
            )
            .await
            .unwrap(),
        CreateUser::EmailTaken
    );
    assert_eq!(
        store
            .create_user(
                &AccountId::new(),
                "x@example.com",
                "X",
                License::Pro,
                UserType::PrivateUser,
                t0
            )
            .await
            .unwrap(),
        CreateUser::NoSuchAccount
    );
    let mut pins = vec![ada.personal_pin.clone()];
    for i in 0..4 {
        let CreateUser::Created(u) = store
            .create_user(
                &b.id,
                &format!("u{i}@example.com"),
                "U",
                License::Basic,
                UserType::SharedDevice,
                t0,
            )
            .await
            .unwrap()
        else {
            panic!("user not created")
        };
        pins.push(u.personal_pin);
    }
    let reset = store.reset_pin(&b.id, &ada.id).await.unwrap().unwrap();
    assert_ne!(reset.personal_pin, ada.personal_pin);
    pins.push(reset.personal_pin);
    pins.sort();
    pins.dedup();
    assert_eq!(pins.len(), 6);
    // Another account cannot see or change the user.
    assert_eq!(store.user(&a.id, &ada.id).await.unwrap(), None);
    assert_eq!(store.reset_pin(&a.id, &ada.id).await.unwrap(), None);
    let page = store.list_users(&b.id, None, None, None, 2).await.unwrap();
    assert_eq!(page.items.len(), 2);
    assert!(page.next_after.is_some());
    let devices = store
        .list_users(&b.id, None, Some(UserType::SharedDevice), None, 10)
        .await
        .unwrap();
    assert_eq!(devices.items.len(), 4);
    let by_mail = store
        .list_users(&b.id, Some("ADA@EXAMPLE.COM"), None, None, 10)
        .await
        .unwrap();
    assert_eq!(by_mail.items.len(), 1);
    let updated = store
        .update_user(&b.id, &ada.id, Some(License::Basic), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (updated.license, updated.user_type),
        (License::Basic, UserType::PrivateUser)
    );
    assert_eq!(store.user_count(&b.id).await.unwrap(), 5);

    // Suspension, logout revocation points and removal are scoped to the account too.
    assert!(
        store
            .set_registration_status(&b.id, &ada.id, RegistrationStatus::Suspended)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .user(&b.id, &ada.id)
            .await
            .unwrap()
            .unwrap()
            .registration_status,
        RegistrationStatus::Suspended
    );
    assert!(
        !store
            .set_registration_status(&a.id, &ada.id, RegistrationStatus::Registered)
            .await
            .unwrap()
    );
    assert_eq!(
        store.sessions_revoked_at(&b.id, &ada.id).await.unwrap(),
        None
    );
    let t1 = datetime!(2026-11-24 09:30:00.250 UTC);
    assert!(store.revoke_sessions(&b.id, &ada.id, t1).await.unwrap());
    assert_eq!(
        store.sessions_revoked_at(&b.id, &ada.id).await.unwrap(),
        Some(t1)
    );
    assert!(!store.revoke_sessions(&a.id, &ada.id, t1).await.unwrap());
    assert!(!store.remove_user(&a.id, &ada.id).await.unwrap());
    assert!(store.remove_user(&b.id, &ada.id).await.unwrap());
    assert_eq!(store.user_count(&b.id).await.unwrap(), 4);
    assert!(
        store
            .user_by_email("ada@example.com")
            .await
            .unwrap()
            .is_none()
    );

    assert!(store.delete_account(&a.id).await.unwrap());
    assert!(!store.delete_account(&a.id).await.unwrap());
    assert_eq!(store.account(&a.id).await.unwrap(), None);
}

/// Invitation acceptance, sessions (expiry, LogoutUser, suspension) and meetings.
async fn sign_in_and_meetings_behave(store: &Store) {
    use convene_admin::model::{EmailStatus, InviteStatus, RegistrationStatus, UserType};
    use convene_admin::store::invites::Invite;
    use convene_admin::store::meetings::{MeetingKind, NewMeeting};
    use convene_admin::store::users::{AcceptInvite, CreateUser};
    use std::time::Duration;

    let t0 = datetime!(2026-11-24 09:00 UTC);
    let account = store
        .create_account("Sign-in team", AccountType::Team, License::Pro, t0)
        .await
        .unwrap();
    let CreateUser::Created(user) = store
        .create_user(
            &account.id,
            "signin@example.com",
            "signin",
            License::Basic,
            UserType::PrivateUser,
            t0,
        )
        .await
        .unwrap()
    else {
        panic!("user not created");
    };
    let invite = Invite {
        id: "inv-1".into(),
        account_id: account.id.clone(),
        user_id: user.id.clone(),
        email: user.email.clone(),
        status: InviteStatus::Pending,
        email_status: EmailStatus::Sent,
    };
    store.create_invite(&invite, "tok-1", t0).await.unwrap();
    let AcceptInvite::Registered(registered) = store
        .accept_invite("tok-1", "Ada Lovelace", "$argon2id$fake", t0)
        .await
        .unwrap()
    else {
        panic!("invite not accepted");
    };
    assert_eq!(registered.display_name, "Ada Lovelace");
    assert_eq!(
        registered.registration_status,
        RegistrationStatus::Registered
    );
    assert_eq!(
        registered.license,
        License::Pro,
        "the account's default licence"
    );
    assert_eq!(
        store
            .accept_invite("tok-1", "Again", "h", t0)
            .await
            .unwrap(),
        AcceptInvite::Unknown,
        "a link works once"
    );
    assert_eq!(
        store.password_hash(&user.id).await.unwrap().as_deref(),
        Some("$argon2id$fake")
    );

    let hour = Duration::from_secs(3600);
    store
        .create_session(&user.id, "s1", t0, t0 + hour)
        .await
        .unwrap();
    let secs = |n: u64| t0 + Duration::from_secs(n);
    assert_eq!(
        store
            .session_user("s1", secs(1))
            .await
            .unwrap()
            .map(|u| u.id),
        Some(user.id.clone())
    );
    assert!(
        store
            .session_user("s1", secs(7200))
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    assert!(store.session_user("s9", secs(1)).await.unwrap().is_none());
    // LogoutUser: sessions issued before the revocation point stop working, later ones work.
    assert!(
        store
            .revoke_sessions(&account.id, &user.id, secs(10))
            .await
            .unwrap()
    );
    assert!(store.session_user("s1", secs(11)).await.unwrap().is_none());
    store
        .create_session(&user.id, "s2", secs(20), secs(20) + hour)
        .await
        .unwrap();
    assert!(store.session_user("s2", secs(21)).await.unwrap().is_some());
    // Suspension ends sessions at once; unsuspending restores them.
    store
        .set_registration_status(&account.id, &user.id, RegistrationStatus::Suspended)
        .await
        .unwrap();
    assert!(store.session_user("s2", secs(22)).await.unwrap().is_none());
    store
        .set_registration_status(&account.id, &user.id, RegistrationStatus::Registered)
        .await
        .unwrap();
    assert!(store.session_user("s2", secs(23)).await.unwrap().is_some());
    store.delete_session("s2").await.unwrap();
    assert!(store.session_user("s2", secs(24)).await.unwrap().is_none());

    let host = store.user_by_id(&user.id).await.unwrap().unwrap();
    let meeting = store
        .create_meeting(
            &NewMeeting {
                host: host.clone(),
                kind: MeetingKind::Scheduled,
                title: "Planning".into(),
                starts_at: Some(secs(3600)),
                duration_minutes: Some(45),
                invitees: vec!["x@example.com".into()],
            },
            t0,
        )
        .await
        .unwrap();
    assert_eq!(meeting.id.len(), 10);
    assert_ne!(meeting.id, host.personal_pin);
    assert_eq!(
        store.meeting(&meeting.id).await.unwrap(),
        Some(meeting.clone())
    );
    let personal = store.meeting(&host.personal_pin).await.unwrap().unwrap();
    assert_eq!(personal.kind, MeetingKind::Personal);
    assert_eq!(personal.host_user_id, host.id);
    assert!(store.meeting("0000000000").await.unwrap().is_none());
    assert_eq!(
        store.meetings_hosted_by(&host.id, 10).await.unwrap(),
        vec![meeting]
    );
    // Removing the user removes their sessions too.
    store
        .create_session(&user.id, "s3", secs(30), secs(30) + hour)
        .await
        .unwrap();
    assert!(store.remove_user(&account.id, &user.id).await.unwrap());
    assert!(store.session_user("s3", secs(31)).await.unwrap().is_none());
}

/// Self sign-up: an unmanaged user on a trial, confirmed once, then adopted by an account's invitation.
async fn self_signup_behaves(store: &Store) {
    use convene_admin::model::{EmailStatus, InviteStatus, RegistrationStatus};
    use convene_admin::store::invites::Invite;
    use convene_admin::store::users::{AcceptInvite, CreateUser};
    use std::time::Duration;

    let t0 = datetime!(2026-11-24 10:00 UTC);
    let CreateUser::Created(user) = store
        .create_unmanaged_user("Solo@Example.org", t0)
        .await
        .unwrap()
    else {
        panic!("unmanaged user not created");
    };
    assert_eq!(user.account_id, None);
    assert_eq!(user.email, "solo@example.org");
    assert_eq!(user.license, License::ProTrial);
    assert_eq!(user.registration_status, RegistrationStatus::Unregistered);
    assert_eq!(
        store
            .create_unmanaged_user("solo@example.org", t0)
            .await
            .unwrap(),
        CreateUser::EmailTaken
    );
    let day = Duration::from_secs(86_400);
    store
        .create_signup(&user.id, "signup-1", t0, t0 + day)
        .await
        .unwrap();
    assert_eq!(
        store
            .accept_signup("signup-1", "Solo", "hash", t0 + 2 * day, t0 + 32 * day)
            .await
            .unwrap(),
        AcceptInvite::Unknown,
        "an expired link"
    );
    store
        .create_signup(&user.id, "signup-2", t0, t0 + day)
        .await
        .unwrap();
    let AcceptInvite::Registered(solo) = store
        .accept_signup("signup-2", "Solo", "hash", t0, t0 + 30 * day)
        .await
        .unwrap()
    else {
        panic!("sign-up not confirmed");
    };
    assert_eq!(solo.registration_status, RegistrationStatus::Registered);
    assert_eq!(solo.trial_ends_at, Some(t0 + 30 * day));
    assert_eq!(solo.account_id, None);
    assert_eq!(
        store
            .accept_signup("signup-2", "Again", "h", t0, t0 + day)
            .await
            .unwrap(),
        AcceptInvite::Unknown,
        "a link works once"
    );

    // An account invites the unmanaged user: accepting brings them in and ends the trial.
    let account = store
        .create_account("Adopters", AccountType::Team, License::Pro, t0)
        .await
        .unwrap();
    let invite = Invite {
        id: "inv-adopt".into(),
        account_id: account.id.clone(),
        user_id: solo.id.clone(),
        email: solo.email.clone(),
        status: InviteStatus::Pending,
        email_status: EmailStatus::Sent,
    };
    store.create_invite(&invite, "adopt-1", t0).await.unwrap();
    let AcceptInvite::Registered(adopted) = store
        .accept_invite("adopt-1", "Solo Adopted", "hash2", t0 + day)
        .await
        .unwrap()
    else {
        panic!("invitation not accepted");
    };
    assert_eq!(adopted.account_id, Some(account.id.clone()));
    assert_eq!(adopted.license, License::Pro);
    assert_eq!(adopted.trial_ends_at, None);
    assert_eq!(
        store
            .user(&account.id, &solo.id)
            .await
            .unwrap()
            .map(|u| u.display_name),
        Some("Solo Adopted".into())
    );
    // Sign-up links do not work for managed users.
    store
        .create_signup(&solo.id, "signup-3", t0, t0 + 10 * day)
        .await
        .unwrap();
    assert_eq!(
        store
            .accept_signup("signup-3", "x", "h", t0 + day, t0 + day)
            .await
            .unwrap(),
        AcceptInvite::Unknown
    );
}

#[tokio::test]
async fn accounts_on_sqlite() {
    let dir = TempDir::new("sqlite");
    let store = Store::open(&Store::sqlite_url(&dir.0)).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    accounts_behave(&store).await;
    sign_in_and_meetings_behave(&store).await;
    self_signup_behaves(&store).await;
    store.close().await;
    // Reopening runs no migration twice and keeps the data.
    let again = Store::open(&Store::sqlite_url(&dir.0)).await.unwrap();
    assert_eq!(
        again
            .list_accounts(None, None, 100)
            .await
            .unwrap()
            .items
            .len(),
        8,
        "six from accounts_behave, one each from sign_in_and_meetings_behave and self_signup_behaves"
    );
}

#[tokio::test]
async fn accounts_on_postgres() {
    let pg = TempPostgres::start();
    let store = Store::open(&pg.url).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    accounts_behave(&store).await;
    sign_in_and_meetings_behave(&store).await;
    self_signup_behaves(&store).await;
    store.close().await;
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    assert!(Store::open("mysql://x").await.is_err());
}
