//! Delivered audit files verify, and every kind of tampering is caught and named.

mod support;

use convene_admin::audit_log::{deliver, signing_key, verify};
use convene_admin::store::Store;
use support::TempDir;
use time::macros::datetime;

async fn append(store: &Store, n: usize, offset: usize) {
    for i in offset..offset + n {
        let record =
            serde_json::json!({ "eventID": format!("e{i}"), "eventName": "ListAccounts", "n": i })
                .to_string();
        store
            .append_audit(
                &format!("e{i}"),
                "2026-11-24T08:00:00.000Z",
                "ListAccounts",
                "root",
                &record,
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn delivered_files_verify_and_tampering_is_named() {
    let data = TempDir::new("audit");
    let store = Store::open(&Store::sqlite_url(&data.0)).await.unwrap();
    let key = signing_key(&data.0).unwrap();
    let dir = data.0.join("audit");
    append(&store, 3, 0).await;
    let first = deliver(
        &store,
        &key,
        &dir,
        "000000000000",
        "us-east-1",
        datetime!(2026-11-24 08:05 UTC),
    )
    .await
    .unwrap()
    .unwrap();
    append(&store, 2, 3).await;
    let second = deliver(
        &store,
        &key,
        &dir,
        "000000000000",
        "us-east-1",
        datetime!(2026-11-24 08:10 UTC),
    )
    .await
    .unwrap()
    .unwrap();
    // Nothing new: no file.
    assert!(
        deliver(
            &store,
            &key,
            &dir,
            "000000000000",
            "us-east-1",
            datetime!(2026-11-24 08:15 UTC)
        )
        .await
        .unwrap()
        .is_none()
    );
    let name = first.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("000000000000_CloudTrail_us-east-1_20261124T0805Z_"),
        "{name}"
    );
    let public = key.verifying_key();
    assert_eq!(verify(&dir, &public).unwrap(), Vec::<String>::new());

    // One byte changed in a delivered file.
    let original = std::fs::read(&first).unwrap();
    let mut edited = original.clone();
    let mid = edited.len() / 2;
    edited[mid] ^= 0x01;
    std::fs::write(&first, &edited).unwrap();
    let problems = verify(&dir, &public).unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&name) && p.contains("altered")),
        "{problems:?}"
    );
    std::fs::write(&first, &original).unwrap();
    assert!(verify(&dir, &public).unwrap().is_empty());

    // A file removed, with its digest: the gap is named at the next file.
    let second_name = second.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::rename(&first, data.0.join("moved.gz")).unwrap();
    let digest = dir.join(format!("{name}.digest.json"));
    std::fs::rename(&digest, data.0.join("moved.digest")).unwrap();
    let problems = verify(&dir, &public).unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&second_name) && p.contains("missing")),
        "{problems:?}"
    );

    // Just the log file removed.
    std::fs::rename(data.0.join("moved.digest"), &digest).unwrap();
    let problems = verify(&dir, &public).unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&name) && p.contains("missing")),
        "{problems:?}"
    );
    std::fs::rename(data.0.join("moved.gz"), &first).unwrap();
    assert!(verify(&dir, &public).unwrap().is_empty());

    // A digest signed by someone else.
    let other = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).verifying_key();
    assert!(
        verify(&dir, &other)
            .unwrap()
            .iter()
            .all(|p| p.contains("signature"))
    );
}
