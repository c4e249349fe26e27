//! Certificates and SNIs: private keys sealed at rest and in snapshots, never in an answer;
//! keys that do not belong to their certificate refused; nested and top-level SNIs; cascade on
//! delete; restore of every kind; tenant isolation.

mod common;

use std::time::Duration;

use common::{eventually, TestApi};
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{json, Value};
use tollgate_model::secret::is_sealed;
use uuid::Uuid;

struct Pair {
    cert: String,
    key: String,
}

fn pair(host: &str) -> Pair {
    let made = rcgen::generate_simple_self_signed(vec![host.to_string()]).expect("rcgen");
    Pair {
        cert: made.cert.pem(),
        key: made.signing_key.serialize_pem(),
    }
}

async fn version(api: &TestApi, token: &str, base: &str) -> i64 {
    let (_, cp) = api.get(base, token).await;
    cp["config_version"].as_i64().unwrap()
}

async fn database_of(api: &TestApi) -> DatabaseConnection {
    Database::connect(api.database_url())
        .await
        .expect("the test database")
}

/// One text column of every row `sql` selects.
async fn texts(db: &DatabaseConnection, sql: &str) -> Vec<String> {
    db.query_all(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query")
        .iter()
        .map(|row| row.try_get::<String>("", "t").expect("text column"))
        .collect()
}

/// No answer may carry a private key, sealed or not.
fn assert_no_key(body: &Value) {
    let text = body.to_string();
    assert!(
        !text.contains("PRIVATE KEY") && !text.contains("tgsealed:"),
        "a key leaked: {text}"
    );
    if let Some(object) = body.as_object() {
        assert!(
            !object.contains_key("key") && !object.contains_key("key_alt"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn private_keys_are_sealed_at_rest_and_never_returned() {
    let api = TestApi::start().await;
    let master_key = api.master_key.clone().unwrap();
    let token = api.tenant("tls").await;
    let cp = api.control_plane(&token, "tls").await;
    let cp_id: Uuid = cp["id"].as_str().unwrap().parse().unwrap();
    let base = format!("/api/v1/control-planes/{cp_id}");
    let pem = pair("api.example.com");

    let (status, cert) = api
        .post(
            &format!("{base}/certificates"),
            &token,
            json!({"cert": pem.cert, "key": pem.key, "tags": ["edge"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{cert}");
    assert_no_key(&cert);
    assert_eq!(cert["cert"], json!(pem.cert));
    let cert_id = cert["id"].as_str().unwrap().to_string();
    let item = format!("{base}/certificates/{cert_id}");

    // At rest: sealed for this control plane, and it opens to the key that was sent.
    let db = database_of(&api).await;
    let stored = texts(
        &db,
        "SELECT data->>'key' AS t FROM entities WHERE kind = 'certificates'",
    )
    .await;
    assert_eq!(stored.len(), 1);
    let sealed = stored[0].clone();
    assert!(
        is_sealed(&sealed) && !sealed.contains("PRIVATE KEY"),
        "{sealed}"
    );
    assert_eq!(master_key.open(cp_id, &sealed).unwrap(), pem.key);
    let all_data = texts(&db, "SELECT data::text AS t FROM entities").await;
    assert!(all_data.iter().all(|d| !d.contains("PRIVATE KEY")));

    // Nested and top-level SNIs.
    let (status, sni) = api
        .post(
            &format!("{item}/snis"),
            &token,
            json!({"name": "API.example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sni}");
    assert_eq!(
        (&sni["name"], &sni["certificate"]),
        (&json!("api.example.com"), &json!({"id": cert_id}))
    );
    let (status, www) = api
        .post(
            &format!("{base}/snis"),
            &token,
            json!({"name": "*.example.com", "certificate": {"id": cert_id}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{www}");
    let (status, body) = api
        .post(
            &format!("{base}/snis"),
            &token,
            json!({"name": "api.example.com", "certificate": {"id": cert_id}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["fields"]["name"].is_string(), "{body}");
    for key in [
        "api.example.com",
        "API.Example.com",
        sni["id"].as_str().unwrap(),
    ] {
        let (status, got) = api.get(&format!("{base}/snis/{key}"), &token).await;
        assert_eq!((status, &got["id"]), (StatusCode::OK, &sni["id"]), "{key}");
    }
    let (_, listed) = api.get(&format!("{item}/snis"), &token).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    let (status, patched) = api
        .patch(
            &format!("{base}/snis/api.example.com"),
            &token,
            json!({"tags": ["primary"]}),
        )
        .await;
    assert_eq!(
        (status, &patched["tags"]),
        (StatusCode::OK, &json!(["primary"]))
    );

    // PATCH of tags keeps the key (and its sealed text, so the snapshot does not churn).
    let (status, patched) = api
        .patch(&item, &token, json!({"tags": ["edge", "renewed"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_no_key(&patched);
    assert_eq!(patched["tags"], json!(["edge", "renewed"]));
    let after = texts(
        &db,
        "SELECT data->>'key' AS t FROM entities WHERE kind = 'certificates'",
    )
    .await;
    assert_eq!(after, std::slice::from_ref(&sealed));
    // PUT replaces: the key is required again, and a new one is sealed anew.
    let (status, body) = api.put(&item, &token, json!({"cert": pem.cert})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["fields"]["key"].is_string(), "{body}");
    let (status, body) = api
        .put(&item, &token, json!({"cert": pem.cert, "key": pem.key}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_no_key(&body);

    // Sealed text cannot be written back as a key: it would skip validation.
    let (status, body) = api
        .post(
            &format!("{base}/certificates"),
            &token,
            json!({"cert": pem.cert, "key": sealed}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["fields"]["key"].is_string(), "{body}");

    // Nothing the API answers carries the key.
    for path in [
        item.clone(),
        format!("{base}/certificates"),
        format!("{base}/certificates?tags=edge"),
        format!("{item}/snis"),
        format!("{base}/snis"),
    ] {
        let (status, body) = api.get(&path, &token).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_no_key(&body);
        for entry in body["data"].as_array().into_iter().flatten() {
            assert_no_key(entry);
        }
    }
    let latest = version(&api, &token, &base).await;
    for n in 1..=latest {
        let (status, detail) = api
            .get(&format!("{base}/config/versions/{n}"), &token)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_no_key(&detail);
    }
    let (_, detail) = api
        .get(&format!("{base}/config/versions/{latest}"), &token)
        .await;
    let snapshot = &detail["snapshot"];
    assert_eq!(snapshot["certificates"][0]["cert"], json!(pem.cert));
    assert_eq!(snapshot["snis"].as_array().unwrap().len(), 2);

    // Stored snapshots keep the key sealed; the one on the bus opens for this control plane.
    let snapshots = texts(&db, "SELECT snapshot::text AS t FROM config_versions").await;
    assert!(snapshots.iter().all(|s| !s.contains("PRIVATE KEY")));
    let published = eventually("the latest snapshot", Duration::from_secs(10), || async {
        let heads = api.bus.heads().await.ok()?;
        let head = heads.iter().find(|h| h.control_plane_id == cp_id)?;
        let snapshot = api.bus.fetch_snapshot(head).await.ok().flatten()?;
        (snapshot.version == latest).then_some(snapshot)
    })
    .await;
    let key = &published.certificates[0].key;
    assert!(is_sealed(key));
    assert_eq!(master_key.open(cp_id, key).unwrap(), pem.key);
    assert_eq!(published.snis.len(), 2);

    // A certificate in use as a client certificate stays; otherwise it goes with its SNIs.
    let (status, body) = api
        .post(
            &format!("{base}/upstreams"),
            &token,
            json!({"name": "mtls.internal", "client_certificate": {"id": cert_id}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api.delete(&item, &token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["fields"]["@entity"]
        .as_str()
        .unwrap()
        .contains("upstreams"));
    let (status, _) = api
        .delete(&format!("{base}/upstreams/mtls.internal"), &token)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.delete(&item, &token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, snis) = api.get(&format!("{base}/snis"), &token).await;
    assert_eq!(snis["data"], json!([]));
    let (status, _) = api.get(&format!("{item}/snis"), &token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, versions) = api.get(&format!("{base}/config/versions"), &token).await;
    assert_eq!(
        versions["data"][0]["summary"],
        format!("delete certificate {cert_id} with its 2 snis")
    );
    api.stop().await;
}

#[tokio::test]
async fn keys_that_are_not_the_certificates_are_refused_and_change_nothing() {
    let api = TestApi::start().await;
    let token = api.tenant("mismatch").await;
    let cp = api.control_plane(&token, "mismatch").await;
    let base = format!("/api/v1/control-planes/{}", cp["id"].as_str().unwrap());
    let (one, two) = (pair("one.example.com"), pair("two.example.com"));
    let (status, cert) = api
        .post(
            &format!("{base}/certificates"),
            &token,
            json!({"cert": one.cert, "key": one.key}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{cert}");
    let item = format!("{base}/certificates/{}", cert["id"].as_str().unwrap());
    let before = version(&api, &token, &base).await;
    let (_, before_list) = api.get(&format!("{base}/certificates"), &token).await;

    let cases = [
        (json!({"cert": one.cert, "key": two.key}), "key"),
        (json!({"cert": "not a certificate", "key": one.key}), "cert"),
        (json!({"cert": one.cert, "key": "not a key"}), "key"),
        (json!({"cert": one.cert}), "key"),
        (
            json!({"cert": one.cert, "key": one.key, "cert_alt": two.cert}),
            "key_alt",
        ),
        (
            json!({"cert": one.cert, "key": one.key, "cert_alt": two.cert, "key_alt": one.key}),
            "key_alt",
        ),
        (
            json!({"cert": one.cert, "key": one.key, "colour": 1}),
            "colour",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = api
            .post(&format!("{base}/certificates"), &token, body.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(answer["fields"][field].is_string(), "{field}: {answer}");
        assert_no_key(&answer);
    }
    // PATCH checks the new certificate against the stored key.
    let (status, answer) = api.patch(&item, &token, json!({"cert": two.cert})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["fields"]["key"].is_string(), "{answer}");
    let (status, answer) = api
        .post(
            &format!("{base}/snis"),
            &token,
            json!({"name": "bad name", "certificate": {"id": cert["id"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["fields"]["name"].is_string());
    let (status, answer) = api
        .post(
            &format!("{base}/snis"),
            &token,
            json!({"name": "x.example.com", "certificate": {"id": Uuid::now_v7()}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["fields"]["certificate"].is_string());
    assert_eq!(version(&api, &token, &base).await, before);
    let (_, list) = api.get(&format!("{base}/certificates"), &token).await;
    assert_eq!(list, before_list);

    // Both halves replaced together is fine.
    let (status, answer) = api
        .patch(&item, &token, json!({"cert": two.cert, "key": two.key}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["cert"], json!(two.cert));
    api.stop().await;
}

#[tokio::test]
async fn without_a_master_key_certificates_cannot_be_written() {
    let api = TestApi::start_with_master_key(None).await;
    let token = api.tenant("nokey").await;
    let cp = api.control_plane(&token, "nokey").await;
    let base = format!("/api/v1/control-planes/{}", cp["id"].as_str().unwrap());
    let pem = pair("nokey.example.com");
    let before = version(&api, &token, &base).await;
    let (status, body) = api
        .post(
            &format!("{base}/certificates"),
            &token,
            json!({"cert": pem.cert, "key": pem.key}),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("TOLLGATE_MASTER_KEY"),
        "{body}"
    );
    let (status, _) = api
        .put(
            &format!("{base}/certificates/{}", Uuid::now_v7()),
            &token,
            json!({"cert": pem.cert, "key": pem.key}),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(version(&api, &token, &base).await, before);
    // Kinds without secrets do not need the key.
    let (status, _) = api
        .post(&format!("{base}/upstreams"), &token, json!({"name": "u"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, list) = api.get(&format!("{base}/certificates"), &token).await;
    assert_eq!(list["data"], json!([]));
    api.stop().await;
}

#[tokio::test]
async fn another_tenant_gets_404_for_certificates_and_snis() {
    let api = TestApi::start().await;
    let owner = api.tenant("cert-owner").await;
    let other = api.tenant("cert-other").await;
    let cp = api.control_plane(&owner, "cert-private").await;
    let base = format!("/api/v1/control-planes/{}", cp["id"].as_str().unwrap());
    let pem = pair("secret.example.com");
    let (_, cert) = api
        .post(
            &format!("{base}/certificates"),
            &owner,
            json!({"cert": pem.cert, "key": pem.key}),
        )
        .await;
    let cert_id = cert["id"].as_str().unwrap().to_string();
    let (_, sni) = api
        .post(
            &format!("{base}/certificates/{cert_id}/snis"),
            &owner,
            json!({"name": "secret.example.com"}),
        )
        .await;
    let sni_id = sni["id"].as_str().unwrap();
    let theirs = api.control_plane(&other, "cert-theirs").await;
    let their_base = format!("/api/v1/control-planes/{}", theirs["id"].as_str().unwrap());
    for b in [&base, &their_base] {
        for path in [
            format!("{b}/certificates/{cert_id}"),
            format!("{b}/certificates/{cert_id}/snis"),
            format!("{b}/snis/{sni_id}"),
            format!("{b}/snis/secret.example.com"),
        ] {
            let (status, body) = api.get(&path, &other).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "GET {path}: {body}");
        }
        let (status, _) = api
            .patch(
                &format!("{b}/certificates/{cert_id}"),
                &other,
                json!({"tags": ["x"]}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = api
            .delete(&format!("{b}/certificates/{cert_id}"), &other)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = api.delete(&format!("{b}/snis/{sni_id}"), &other).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, body) = api
        .post(
            &format!("{their_base}/snis"),
            &other,
            json!({"name": "mine.example.com", "certificate": {"id": cert_id}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, list) = api.get(&format!("{their_base}/certificates"), &other).await;
    assert_eq!(list["data"], json!([]));
    let (status, _) = api
        .get(&format!("{base}/certificates/{cert_id}"), &owner)
        .await;
    assert_eq!(status, StatusCode::OK);
    api.stop().await;
}

#[tokio::test]
async fn restore_brings_back_every_kind() {
    let api = TestApi::start().await;
    let master_key = api.master_key.clone().unwrap();
    let token = api.tenant("undo").await;
    let cp = api.control_plane(&token, "undo").await;
    let cp_id: Uuid = cp["id"].as_str().unwrap().parse().unwrap();
    let base = format!("/api/v1/control-planes/{cp_id}");
    let pem = pair("undo.example.com");
    let (_, cert) = api
        .post(
            &format!("{base}/certificates"),
            &token,
            json!({"cert": pem.cert, "key": pem.key}),
        )
        .await;
    let cert_id = cert["id"].as_str().unwrap().to_string();
    api.post(
        &format!("{base}/certificates/{cert_id}/snis"),
        &token,
        json!({"name": "undo.example.com"}),
    )
    .await;
    api.post(
        &format!("{base}/upstreams"),
        &token,
        json!({"name": "pool"}),
    )
    .await;
    api.post(
        &format!("{base}/upstreams/pool/targets"),
        &token,
        json!({"target": "10.2.0.1:80"}),
    )
    .await;
    let full = version(&api, &token, &base).await;
    let (_, before) = api
        .get(&format!("{base}/config/versions/{full}"), &token)
        .await;
    let (status, _) = api.delete(&format!("{base}/upstreams/pool"), &token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api
        .delete(&format!("{base}/certificates/{cert_id}"), &token)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, restored) = api
        .post(
            &format!("{base}/config/versions/{full}/restore"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    assert_eq!(restored["hash"], before["hash"]);
    let (status, targets) = api
        .get(
            &format!("{base}/upstreams/pool/targets/10.2.0.1:80"),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{targets}");
    let (status, sni) = api
        .get(&format!("{base}/snis/undo.example.com"), &token)
        .await;
    assert_eq!(
        (status, &sni["certificate"]["id"]),
        (StatusCode::OK, &json!(cert_id))
    );
    let db = database_of(&api).await;
    let stored = texts(
        &db,
        "SELECT data->>'key' AS t FROM entities WHERE kind = 'certificates'",
    )
    .await;
    assert_eq!(master_key.open(cp_id, &stored[0]).unwrap(), pem.key);
    // The restored key still works for a PATCH.
    let (status, body) = api
        .patch(
            &format!("{base}/certificates/{cert_id}"),
            &token,
            json!({"tags": ["restored"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    api.stop().await;
}
