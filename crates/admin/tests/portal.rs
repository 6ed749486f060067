//! The users' web API through its real router and a real SQLite store: what suspension does to
//! sign-in and to existing sessions (suspension needs an enterprise account, which the admin API
//! cannot create yet, so the browser tests cannot reach this path).

mod support;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use convene_admin::mail::Mailer;
use convene_admin::model::{
    AccountType, EmailStatus, InviteStatus, License, RegistrationStatus, UserType,
};
use convene_admin::portal::{PortalState, router};
use convene_admin::store::Store;
use convene_admin::store::accounts::Account;
use convene_admin::store::invites::Invite;
use convene_admin::store::users::{CreateUser, User};
use convene_core::JoinTokenIssuer;
use http_body_util::BodyExt;
use support::TempDir;
use tower::ServiceExt;

struct Reply {
    status: StatusCode,
    cookie: Option<String>,
    body: serde_json::Value,
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: &str,
) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    if let Some(c) = cookie {
        request = request.header(header::COOKIE, format!("convene_session={c}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("convene_session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Reply {
        status,
        cookie,
        body,
    }
}

/// A Pro user of a new account, invited (not yet registered) with registration token `token`.
async fn invited_pro_user(
    store: &Store,
    account_type: AccountType,
    email: &str,
    token: &str,
    now: time::OffsetDateTime,
) -> (Account, User) {
    let account = store
        .create_account("Account", account_type, License::Pro, now)
        .await
        .unwrap();
    let name = email.split('@').next().unwrap_or(email);
    let CreateUser::Created(user) = store
        .create_user(
            &account.id,
            email,
            name,
            License::Pro,
            UserType::PrivateUser,
            now,
        )
        .await
        .unwrap()
    else {
        panic!("user");
    };
    let invite = Invite {
        id: format!("i-{token}"),
        account_id: account.id.clone(),
        user_id: user.id.clone(),
        email: user.email.clone(),
        status: InviteStatus::Pending,
        email_status: EmailStatus::Sent,
    };
    store.create_invite(&invite, token, now).await.unwrap();
    (account, *user)
}

#[tokio::test]
async fn suspended_users_cannot_sign_in_and_lose_their_sessions() {
    let dir = TempDir::new("portal");
    let store = Store::open(&Store::sqlite_url(&dir.0)).await.unwrap();
    let now = time::OffsetDateTime::now_utc();
    let (account, user) = invited_pro_user(
        &store,
        AccountType::EnterpriseDirectory,
        "sus@example.com",
        "tok",
        now,
    )
    .await;
    let app = router(PortalState::new(
        store.clone(),
        JoinTokenIssuer::from_seed(&[7; 32]),
        Mailer::folder(dir.0.join("outbox"), "Convene <noreply@convene.invalid>"),
        "http://127.0.0.1:8080",
    ));

    let registered = call(
        &app,
        "POST",
        "/v1/register",
        None,
        r#"{"invite":"tok","name":"Sue","password":"a good password"}"#,
    )
    .await;
    assert_eq!(registered.status, StatusCode::OK, "{}", registered.body);
    let session = registered.cookie.expect("a session cookie");
    let sign_in = r#"{"email":"sus@example.com","password":"a good password"}"#;
    assert_eq!(
        call(&app, "POST", "/v1/session", None, sign_in)
            .await
            .status,
        StatusCode::OK
    );

    store
        .set_registration_status(&account.id, &user.id, RegistrationStatus::Suspended)
        .await
        .unwrap();
    let me = call(&app, "GET", "/v1/session", Some(&session), "").await;
    assert_eq!(
        me.status,
        StatusCode::UNAUTHORIZED,
        "the session ends at once"
    );
    let refused = call(&app, "POST", "/v1/session", None, sign_in).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("suspended"),
        "{}",
        refused.body
    );
    assert!(refused.cookie.is_none());
    // A suspended host's meetings cannot take place either.
    let pin = &user.personal_pin;
    let join = call(
        &app,
        "POST",
        &format!("/v1/meetings/{pin}/join"),
        None,
        r#"{"name":"Guest"}"#,
    )
    .await;
    assert_eq!(join.status, StatusCode::FORBIDDEN, "{}", join.body);

    store
        .set_registration_status(&account.id, &user.id, RegistrationStatus::Registered)
        .await
        .unwrap();
    assert_eq!(
        call(&app, "POST", "/v1/session", None, sign_in)
            .await
            .status,
        StatusCode::OK
    );
    // Wrong passwords are refused without saying which part was wrong.
    let wrong = call(
        &app,
        "POST",
        "/v1/session",
        None,
        r#"{"email":"sus@example.com","password":"not the password"}"#,
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let unknown = call(
        &app,
        "POST",
        "/v1/session",
        None,
        r#"{"email":"nobody@example.com","password":"not the password"}"#,
    )
    .await;
    assert_eq!(unknown.body["message"], wrong.body["message"]);
}

#[tokio::test]
async fn join_tokens_carry_the_joiners_remote_control_policy() {
    let dir = TempDir::new("portal-rc");
    let store = Store::open(&Store::sqlite_url(&dir.0)).await.unwrap();
    let now = time::OffsetDateTime::now_utc();
    let (account, user) =
        invited_pro_user(&store, AccountType::Team, "rc@example.com", "tok-rc", now).await;
    let issuer = JoinTokenIssuer::from_seed(&[9; 32]);
    let verifier = issuer.verifier();
    let app = router(PortalState::new(
        store.clone(),
        issuer,
        Mailer::folder(dir.0.join("outbox"), "Convene <noreply@convene.invalid>"),
        "http://127.0.0.1:8080",
    ));
    let registered = call(
        &app,
        "POST",
        "/v1/register",
        None,
        r#"{"invite":"tok-rc","name":"Rae","password":"a good password"}"#,
    )
    .await;
    let session = registered.cookie.expect("a session cookie");
    let pin = user.personal_pin.clone();
    let path = format!("/v1/meetings/{pin}/join");
    let claims = |reply: Reply| {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let token = reply.body["token"].as_str().expect("a token").to_owned();
        verifier.verify(&token, 0).expect("a valid token")
    };

    // By default the account allows shared control: members and guests may grant it.
    let member = claims(call(&app, "POST", &path, Some(&session), r#"{"name":"Rae"}"#).await);
    assert!(member.remote_control);
    let guest = claims(call(&app, "POST", &path, None, r#"{"name":"Guest"}"#).await);
    assert!(guest.remote_control);

    // The administrator disables it: the account's members may no longer grant control; a guest, whom
    // no organisation's policy covers, still may.
    store
        .update_account_settings(&account.id, Some(true), None)
        .await
        .unwrap();
    let member = claims(call(&app, "POST", &path, Some(&session), r#"{"name":"Rae"}"#).await);
    assert!(!member.remote_control);
    let guest = claims(call(&app, "POST", &path, None, r#"{"name":"Guest"}"#).await);
    assert!(guest.remote_control);
}
