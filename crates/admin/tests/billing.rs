//! Meeting events into billing, through the real journal and the real store, on SQLite and PostgreSQL:
//! Active Pro per the rules, once per user and day, and exactly once across crashes and replays.

mod support;

use convene_admin::billing::consumer::{CONSUMER, catch_up};
use convene_admin::model::{AccountType, License, UserType};
use convene_admin::store::Store;
use convene_admin::store::conferences::Applied;
use convene_admin::store::meetings::{MeetingKind, NewMeeting};
use convene_admin::store::users::{CreateUser, User};
use convene_core::{
    AttendeeId, AttendeeRole, ClientType, EventBus, EventId, EventJournal, LeaveReason,
    MeetingEvent, MeetingEventKind, MeetingId,
};
use support::{TempDir, TempPostgres};
use time::OffsetDateTime;
use time::macros::datetime;

struct Fixture {
    store: Store,
    host: User,
    guest: User,
}

async fn fixture(store: Store) -> Fixture {
    let t0 = datetime!(2026-11-24 08:00 UTC);
    let account = store
        .create_account("Billing team", AccountType::Team, License::Pro, t0)
        .await
        .unwrap();
    let mut users = Vec::new();
    for (email, license) in [
        ("host@example.com", License::Pro),
        ("guest@example.com", License::Pro),
    ] {
        let CreateUser::Created(u) = store
            .create_user(
                &account.id,
                email,
                email,
                license,
                UserType::PrivateUser,
                t0,
            )
            .await
            .unwrap()
        else {
            panic!("user");
        };
        users.push(*u);
    }
    let guest = users.pop().unwrap();
    let host = users.pop().unwrap();
    Fixture { store, host, guest }
}

fn at(t: OffsetDateTime, meeting: &MeetingId, kind: MeetingEventKind) -> MeetingEvent {
    MeetingEvent {
        id: EventId::new(),
        at_unix_ms: (t.unix_timestamp_nanos() / 1_000_000) as u64,
        meeting: meeting.clone(),
        kind,
    }
}

fn joined(n: u32, client: ClientType, user: Option<&User>) -> MeetingEventKind {
    MeetingEventKind::AttendeeJoined {
        attendee: AttendeeId::from_raw(n),
        name: format!("attendee {n}"),
        client,
        role: AttendeeRole::Attendee,
        user: user.map(|u| u.id.clone()),
    }
}

/// A whole conference: start, `clients` join (the first as the given user), all leave, end.
fn conference(
    meeting: &MeetingId,
    start: OffsetDateTime,
    end: OffsetDateTime,
    clients: &[ClientType],
    first_user: Option<&User>,
    recorded: bool,
) -> Vec<MeetingEvent> {
    let mut events = vec![at(start, meeting, MeetingEventKind::MeetingStarted)];
    for (i, &c) in clients.iter().enumerate() {
        let user = if i == 0 { first_user } else { None };
        events.push(at(start, meeting, joined(i as u32 + 1, c, user)));
    }
    if recorded {
        events.push(at(
            start,
            meeting,
            MeetingEventKind::RecordingStarted {
                attendee: AttendeeId::from_raw(1),
            },
        ));
    }
    for i in 0..clients.len() {
        events.push(at(
            end,
            meeting,
            MeetingEventKind::AttendeeLeft {
                attendee: AttendeeId::from_raw(i as u32 + 1),
                reason: LeaveReason::Left,
            },
        ));
    }
    events.push(at(end, meeting, MeetingEventKind::MeetingEnded));
    events
}

async fn new_meeting(f: &Fixture, kind: MeetingKind) -> MeetingId {
    let m = f
        .store
        .create_meeting(
            &NewMeeting {
                host: f.host.clone(),
                kind,
                title: "t".into(),
                starts_at: None,
                duration_minutes: None,
                invitees: vec![],
            },
            datetime!(2026-11-24 08:00 UTC),
        )
        .await
        .unwrap();
    m.id.parse().unwrap()
}

async fn apply_all(f: &Fixture, events: &[MeetingEvent]) -> Vec<Applied> {
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        out.push(f.store.apply_event(e, CONSUMER, i as u64).await.unwrap());
    }
    out
}

async fn billed(f: &Fixture) -> Vec<(String, String, String)> {
    let from = datetime!(2026-01-01 00:00 UTC).date();
    let to = datetime!(2026-12-31 00:00 UTC).date();
    f.store
        .active_pro_days(None, from, to)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.user_id, d.day, d.reason))
        .collect()
}

async fn rules_hold(f: Fixture) {
    use ClientType::*;
    let instant = new_meeting(&f, MeetingKind::Instant).await;
    // A two-person unscheduled call: not billed.
    let one_to_one = conference(
        &instant,
        datetime!(2026-11-24 09:00 UTC),
        datetime!(2026-11-24 09:30 UTC),
        &[Web, Web],
        Some(&f.host),
        false,
    );
    let results = apply_all(&f, &one_to_one).await;
    assert_eq!(results.last(), Some(&Applied::Ended { billed: None }));
    assert!(billed(&f).await.is_empty());

    // Across midnight with a SIP room system: billed on the later day.
    let late = conference(
        &instant,
        datetime!(2026-11-24 23:50 UTC),
        datetime!(2026-11-25 00:10 UTC),
        &[Web, Sip],
        Some(&f.host),
        false,
    );
    apply_all(&f, &late).await;
    assert_eq!(
        billed(&f).await,
        vec![(f.host.id.clone(), "2026-11-25".into(), "sip_or_h323".into())]
    );

    // A second qualifying meeting the same day: still one row (the first reason).
    let busy = conference(
        &instant,
        datetime!(2026-11-25 10:00 UTC),
        datetime!(2026-11-25 11:00 UTC),
        &[Web, Web, Native],
        Some(&f.guest),
        true,
    );
    let results = apply_all(&f, &busy).await;
    assert_eq!(
        results.last(),
        Some(&Applied::Ended {
            billed: Some("more_than_two_attendees+recorded".into())
        })
    );
    assert_eq!(billed(&f).await.len(), 1);

    // Scheduled, and a dial-in, on other days; the attendee-only guest (a Pro user) is never billed.
    let scheduled = new_meeting(&f, MeetingKind::Scheduled).await;
    apply_all(
        &f,
        &conference(
            &scheduled,
            datetime!(2026-11-26 10:00 UTC),
            datetime!(2026-11-26 10:30 UTC),
            &[Web, Web],
            Some(&f.guest),
            false,
        ),
    )
    .await;
    apply_all(
        &f,
        &conference(
            &instant,
            datetime!(2026-11-27 10:00 UTC),
            datetime!(2026-11-27 10:30 UTC),
            &[Web, Phone],
            None,
            false,
        ),
    )
    .await;
    let all = billed(&f).await;
    assert_eq!(
        all.iter()
            .map(|(u, d, r)| (u == &f.host.id, d.as_str(), r.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (true, "2026-11-25", "sip_or_h323"),
            (true, "2026-11-26", "scheduled"),
            (true, "2026-11-27", "dial_in"),
        ]
    );
    assert!(all.iter().all(|(u, _, _)| u != &f.guest.id));

    // Replaying every event changes nothing.
    for e in one_to_one.iter().chain(&late).chain(&busy) {
        assert_eq!(
            f.store.apply_event(e, CONSUMER, 0).await.unwrap(),
            Applied::Duplicate
        );
    }
    assert_eq!(billed(&f).await, all);

    // A Basic host is never billed, whatever the meeting.
    f.store
        .update_user(
            f.host.account_id.as_ref().unwrap(),
            &f.host.id,
            Some(License::Basic),
            None,
        )
        .await
        .unwrap();
    apply_all(
        &f,
        &conference(
            &scheduled,
            datetime!(2026-11-28 10:00 UTC),
            datetime!(2026-11-28 10:30 UTC),
            &[Web, Web, Sip, Phone],
            None,
            true,
        ),
    )
    .await;
    assert_eq!(billed(&f).await, all);
}

#[tokio::test]
async fn active_pro_rules_on_sqlite() {
    let dir = TempDir::new("billing");
    let store = Store::open(&Store::sqlite_url(&dir.0)).await.unwrap();
    rules_hold(fixture(store).await).await;
}

#[tokio::test]
async fn active_pro_rules_on_postgres() {
    let pg = TempPostgres::start();
    let store = Store::open(&pg.url).await.unwrap();
    rules_hold(fixture(store).await).await;
}

/// The journal + consumer across a "crash": events written and flushed, the process gone before the
/// consumer ran (and once more half-way through), then a fresh start bills exactly once.
#[tokio::test]
async fn a_crash_between_emit_and_consume_bills_exactly_once() {
    let dir = TempDir::new("billing-crash");
    let journal_path = dir.0.join("events").join("journal.jsonl");
    let url = Store::sqlite_url(&dir.0);
    let f = fixture(Store::open(&url).await.unwrap()).await;
    let meeting = new_meeting(&f, MeetingKind::Scheduled).await;
    let now = OffsetDateTime::now_utc();
    let events = conference(
        &meeting,
        now,
        now,
        &[ClientType::Web, ClientType::Web],
        Some(&f.host),
        false,
    );
    {
        let journal = EventJournal::open(&journal_path).unwrap();
        for e in &events {
            journal.publish(e.clone());
        }
        journal.flush();
        // "Crash": the journal and store go away without the consumer having run.
    }
    f.store.close().await;

    // Restart, but die after applying only the first three events.
    let store = Store::open(&url).await.unwrap();
    let journal = EventJournal::open(&journal_path).unwrap();
    let batch = convene_core::EventLog::read_from(&journal, 0, 3).unwrap();
    for (e, next) in &batch.events {
        store.apply_event(e, CONSUMER, *next).await.unwrap();
    }
    assert!(
        billed(&Fixture {
            store: store.clone(),
            host: f.host.clone(),
            guest: f.guest.clone()
        })
        .await
        .is_empty()
    );
    drop(journal);
    store.close().await;

    // Restart again: the consumer resumes at its offset and bills once.
    let store = Store::open(&url).await.unwrap();
    let journal = EventJournal::open(&journal_path).unwrap();
    let applied = catch_up(&store, &journal).await.unwrap();
    assert_eq!(applied, events.len() - 3);
    let f2 = Fixture {
        store: store.clone(),
        host: f.host.clone(),
        guest: f.guest.clone(),
    };
    let rows = billed(&f2).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].2, "scheduled");
    // Even with the offset lost, a full replay bills nothing twice.
    store.set_consumer_offset(CONSUMER, 0).await.unwrap();
    assert_eq!(catch_up(&store, &journal).await.unwrap(), events.len());
    assert_eq!(billed(&f2).await, rows);
}
