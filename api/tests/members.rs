//! Members, roles and invitations: who may change what, invitations for new and existing users,
//! the last owner, and tenant isolation. Against Postgres, Redis and NATS, plus one pass on the
//! embedded stack (SQLite, memory bus and store).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{session_cookie, TestApi};
use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use serde_json::{json, Value};
use uuid::Uuid;

const PASSWORD: &str = "a long enough password";

async fn accept(api: &TestApi, token: &str, password: &str) -> (StatusCode, Value, Option<String>) {
    let resp = api
        .http
        .post(format!("{}/api/v1/invitations/accept", api.base))
        .json(&json!({"token": token, "password": password}))
        .send()
        .await
        .expect("accept");
    let cookie = session_cookie(&resp);
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body, cookie)
}

async fn invite(api: &TestApi, by: &str, email: &str, role: &str) -> Value {
    let (status, invitation) = api
        .post(
            "/api/v1/invitations",
            by,
            json!({"email": email, "role": role}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invitation}");
    invitation
}

/// A new user invited with `role` who accepted: their session cookie and `/me`.
async fn join(api: &TestApi, by: &str, role: &str) -> (String, Value) {
    let email = format!("{}@invited.example.com", Uuid::new_v4().simple());
    let invitation = invite(api, by, &email, role).await;
    let (status, me, cookie) = accept(api, invitation["token"].as_str().unwrap(), PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    (cookie.expect("accept sets the session cookie"), me)
}

async fn me(api: &TestApi, auth: &str) -> Value {
    let (status, me) = api.get("/api/v1/me", auth).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    me
}

fn ids(list: &Value, field: &str) -> Vec<String> {
    list["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|item| item[field].as_str().expect("field").to_string())
        .collect()
}

/// This test's own database, for what the API does not expose (expiry, the audit log).
async fn database_of(api: &TestApi) -> DatabaseConnection {
    Database::connect(api.database_url())
        .await
        .expect("the test database")
}

#[tokio::test]
async fn an_invited_viewer_reads_everything_and_changes_nothing() {
    let api = TestApi::start().await;
    let owner = api.tenant("viewing").await;
    let cp = api.control_plane(&owner, "shop").await;
    let cp_id = cp["id"].as_str().unwrap().to_string();
    let base = format!("/api/v1/control-planes/{cp_id}");
    let (status, _) = api
        .post(
            &format!("{base}/services"),
            &owner,
            json!({"name": "s", "url": "http://example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = api
        .post(
            &format!("{base}/routes"),
            &owner,
            json!({"name": "r", "paths": ["/"], "service": {"name": "s"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let invitation = invite(&api, &owner, "Viewer@Example.com", "viewer").await;
    assert_eq!(invitation["email"], "viewer@example.com");
    assert_eq!(invitation["role"], "viewer");
    let token = invitation["token"].as_str().unwrap();
    assert_eq!(
        invitation["url"],
        format!("{}/invite/{token}", api.base),
        "the URL points at the host the request was sent to"
    );
    let expires: chrono::DateTime<chrono::Utc> =
        invitation["expires_at"].as_str().unwrap().parse().unwrap();
    let days = (expires - chrono::Utc::now()).num_hours();
    assert!((167..=168).contains(&days), "valid 7 days: {days}h");
    let (_, pending) = api.get("/api/v1/invitations", &owner).await;
    assert_eq!(ids(&pending, "id"), [invitation["id"].as_str().unwrap()]);
    assert!(
        !pending.to_string().contains(token),
        "listed invitations never show the token"
    );

    let (status, joined, cookie) = accept(&api, token, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    assert_eq!(joined["role"], "viewer");
    assert_eq!(joined["user"]["email"], "viewer@example.com");
    let viewer = cookie.expect("session cookie");
    let my_org = me(&api, &owner).await["organization"].clone();
    assert_eq!(me(&api, &viewer).await["organization"], my_org);
    let (_, pending) = api.get("/api/v1/invitations", &owner).await;
    assert_eq!(
        pending["data"],
        json!([]),
        "an accepted invitation is no longer pending"
    );

    for path in [
        "/api/v1/control-planes".to_string(),
        base.clone(),
        format!("{base}/services"),
        format!("{base}/services/s"),
        format!("{base}/services/s/routes"),
        format!("{base}/routes"),
        format!("{base}/routes/r"),
        format!("{base}/config/versions"),
        format!("{base}/config/versions/2"),
        format!("{base}/nodes"),
        "/api/v1/members".to_string(),
        "/api/v1/invitations".to_string(),
    ] {
        let (status, body) = api.get(&path, &viewer).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    }

    let version_before = cp_version(&api, &owner, &cp_id).await;
    let (_, versions_before) = api.get(&format!("{base}/config/versions"), &owner).await;
    let writes: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            "/api/v1/control-planes".into(),
            Some(json!({"name": "mine"})),
        ),
        (
            Method::PATCH,
            base.clone(),
            Some(json!({"name": "renamed"})),
        ),
        (Method::DELETE, base.clone(), None),
        (
            Method::POST,
            format!("{base}/services"),
            Some(json!({"name": "s2", "url": "http://example.com"})),
        ),
        (
            Method::PATCH,
            format!("{base}/services/s"),
            Some(json!({"retries": 1})),
        ),
        (
            Method::PUT,
            format!("{base}/services/s3"),
            Some(json!({"host": "example.com"})),
        ),
        (Method::DELETE, format!("{base}/services/s"), None),
        (
            Method::POST,
            format!("{base}/routes"),
            Some(json!({"name": "r2", "paths": ["/x"], "service": {"name": "s"}})),
        ),
        (
            Method::POST,
            format!("{base}/services/s/routes"),
            Some(json!({"name": "r3", "paths": ["/y"]})),
        ),
        (
            Method::PATCH,
            format!("{base}/routes/r"),
            Some(json!({"strip_path": false})),
        ),
        (Method::DELETE, format!("{base}/routes/r"), None),
        (
            Method::POST,
            format!("{base}/config/versions/1/restore"),
            None,
        ),
        (
            Method::POST,
            "/api/v1/invitations".into(),
            Some(json!({"email": "x@example.com", "role": "viewer"})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/members/{}", joined["user"]["id"].as_str().unwrap()),
            Some(json!({"role": "owner"})),
        ),
    ];
    for (method, path, body) in writes {
        let (status, answer) = api.call(method.clone(), &path, Some(&viewer), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
        assert_eq!(answer["code"], 21, "{answer}");
    }
    assert_eq!(cp_version(&api, &owner, &cp_id).await, version_before);
    let (_, versions_after) = api.get(&format!("{base}/config/versions"), &owner).await;
    assert_eq!(versions_after, versions_before);
    let (_, planes) = api.get("/api/v1/control-planes", &owner).await;
    assert_eq!(ids(&planes, "id"), [cp_id.as_str()]);
    let (_, me_after) = api.get("/api/v1/me", &viewer).await;
    assert_eq!(me_after["role"], "viewer");

    // A viewer manages their own tokens, and a token carries the viewer's role.
    let (status, created) = api
        .post("/api/v1/tokens", &viewer, json!({"name": "read-only"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let viewer_token = created["token"].as_str().unwrap();
    let (status, _) = api.get(&format!("{base}/services"), viewer_token).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api
        .post("/api/v1/control-planes", viewer_token, json!({"name": "x"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, tokens) = api.get("/api/v1/tokens", &viewer).await;
    assert_eq!(ids(&tokens, "id"), [created["id"].as_str().unwrap()]);
    let (status, _) = api
        .delete(
            &format!("/api/v1/tokens/{}", created["id"].as_str().unwrap()),
            &viewer,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    api.stop().await;
}

async fn cp_version(api: &TestApi, token: &str, cp: &str) -> i64 {
    let (_, cp) = api
        .get(&format!("/api/v1/control-planes/{cp}"), token)
        .await;
    cp["config_version"].as_i64().unwrap()
}

#[tokio::test]
async fn an_existing_user_joins_with_their_password_and_tokens_work_once() {
    let api = TestApi::start().await;
    let alpha = api.tenant("alpha").await;
    let beta = api.tenant("beta").await;
    let alpha_me = me(&api, &alpha).await;
    let beta_me = me(&api, &beta).await;
    let beta_email = beta_me["user"]["email"].as_str().unwrap();

    let invitation = invite(&api, &alpha, beta_email, "member").await;
    let token = invitation["token"].as_str().unwrap();
    let (status, wrong, cookie) = accept(&api, token, "not the password").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong}");
    assert!(cookie.is_none());
    let (_, login_failure) = api
        .call(
            Method::POST,
            "/api/v1/login",
            None,
            Some(json!({"email": "nobody@example.com", "password": "not the password"})),
        )
        .await;
    assert_eq!(wrong, login_failure, "the same answer as a failed log-in");

    // The existing account keeps its password; the membership is added.
    let (status, joined, cookie) = accept(&api, token, "correct horse battery").await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    assert_eq!(joined["organization"], alpha_me["organization"]);
    assert_eq!(joined["user"]["id"], beta_me["user"]["id"]);
    assert_eq!(joined["role"], "member");
    let session = cookie.expect("session cookie");
    assert_eq!(
        me(&api, &session).await["organization"],
        alpha_me["organization"]
    );
    let cp = api.control_plane(&session, "made by a member").await;
    assert_eq!(cp["config_version"], 1);
    // Beta's token still acts in beta's organization.
    assert_eq!(
        me(&api, &beta).await["organization"],
        beta_me["organization"]
    );
    let (_, members) = api.get("/api/v1/members", &alpha).await;
    assert_eq!(members["data"].as_array().unwrap().len(), 2, "{members}");
    let (_, members) = api.get("/api/v1/members", &beta).await;
    assert_eq!(
        ids(&members, "user_id"),
        [beta_me["user"]["id"].as_str().unwrap()],
        "beta's list is beta's own"
    );

    // Used, unknown and expired tokens get one and the same answer.
    let (status, reused, _) = accept(&api, token, "correct horse battery").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{reused}");
    let (status, unknown, _) = accept(&api, "0123456789abcdef", PASSWORD).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(reused, unknown);
    let expiring = invite(&api, &alpha, "late@example.com", "viewer").await;
    let db = database_of(&api).await;
    let expired_at = chrono::Utc::now() - chrono::Duration::minutes(1);
    let changed = db
        .execute(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE invitations SET expires_at = $1 WHERE id = $2",
            [
                expired_at.into(),
                Uuid::parse_str(expiring["id"].as_str().unwrap())
                    .unwrap()
                    .into(),
            ],
        ))
        .await
        .expect("expire the invitation");
    assert_eq!(changed.rows_affected(), 1);
    let (status, expired, _) = accept(&api, expiring["token"].as_str().unwrap(), PASSWORD).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(expired, unknown);
    let (_, pending) = api.get("/api/v1/invitations", &alpha).await;
    assert_eq!(
        pending["data"],
        json!([]),
        "expired invitations are not pending"
    );

    // A revoked invitation is gone too; a member of the organization cannot be invited again.
    let revoked = invite(&api, &alpha, "revoked@example.com", "viewer").await;
    let (status, _) = api
        .delete(
            &format!("/api/v1/invitations/{}", revoked["id"].as_str().unwrap()),
            &alpha,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = accept(&api, revoked["token"].as_str().unwrap(), PASSWORD).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = api
        .post(
            "/api/v1/invitations",
            &alpha,
            json!({"email": beta_email, "role": "admin"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // A new invitation for the same email replaces the pending one.
    let first = invite(&api, &alpha, "twice@example.com", "viewer").await;
    let second = invite(&api, &alpha, "twice@example.com", "member").await;
    let (status, _, _) = accept(&api, first["token"].as_str().unwrap(), PASSWORD).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, joined, _) = accept(&api, second["token"].as_str().unwrap(), PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    assert_eq!(joined["role"], "member");
    // Already a member when an invitation is used (as when two are accepted at once): 409.
    db.execute(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE invitations SET accepted_at = NULL WHERE id = $1",
        [Uuid::parse_str(second["id"].as_str().unwrap())
            .unwrap()
            .into()],
    ))
    .await
    .expect("reopen the invitation");
    let (status, body, cookie) = accept(&api, second["token"].as_str().unwrap(), PASSWORD).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(cookie.is_none());

    // Bad input is refused before anything changes.
    for (body, field) in [
        (json!({"email": "not an email", "role": "viewer"}), "email"),
        (
            json!({"email": "a@example.com", "role": "superuser"}),
            "role",
        ),
        (
            json!({"email": "a@example.com", "role": "viewer", "x": 1}),
            "x",
        ),
        (json!({"email": "a@example.com"}), "role"),
    ] {
        let (status, answer) = api.post("/api/v1/invitations", &alpha, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(answer["fields"][field].is_string(), "{answer}");
    }
    let short = invite(&api, &alpha, "short@example.com", "viewer").await;
    let (status, body, _) = accept(&api, short["token"].as_str().unwrap(), "short").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["fields"]["password"].is_string(), "{body}");
    let (status, body) = api
        .call(
            Method::POST,
            "/api/v1/invitations/accept",
            None,
            Some(json!({"token": "x", "password": "y", "email": "z"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["fields"]["email"], "unknown field");

    api.stop().await;
}

#[tokio::test]
async fn guessing_passwords_through_invitations_is_rate_limited() {
    let api = TestApi::start().await;
    let alpha = api.tenant("alpha").await;
    let victim = api.tenant("victim").await;
    let victim_email = me(&api, &victim).await["user"]["email"]
        .as_str()
        .unwrap()
        .to_string();
    let mut statuses = Vec::new();
    // Fresh invitations do not buy fresh attempts: the limit is the account's.
    for _ in 0..6 {
        let invitation = invite(&api, &alpha, &victim_email, "viewer").await;
        for _ in 0..2 {
            let (status, _, _) = accept(
                &api,
                invitation["token"].as_str().unwrap(),
                "guess guess guess",
            )
            .await;
            statuses.push(status);
        }
    }
    // The harness logged the victim in once: nine guesses are left of the ten a minute.
    assert_eq!(statuses[..9], [StatusCode::UNAUTHORIZED; 9], "{statuses:?}");
    assert_eq!(statuses[9..], [StatusCode::TOO_MANY_REQUESTS; 3]);
    let (status, _) = api
        .call(
            Method::POST,
            "/api/v1/login",
            None,
            Some(json!({"email": victim_email, "password": "correct horse battery"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "log-in shares the limit"
    );
    api.stop().await;
}

#[tokio::test]
async fn roles_are_managed_by_admins_and_the_last_owner_stays() {
    let api = TestApi::start().await;
    let owner = api.tenant("roles").await;
    let owner_me = me(&api, &owner).await;
    let owner_id = owner_me["user"]["id"].as_str().unwrap().to_string();
    let (admin, admin_me) = join(&api, &owner, "admin").await;
    let (member, member_me) = join(&api, &owner, "member").await;
    let (_viewer, viewer_me) = join(&api, &owner, "viewer").await;
    let member_id = member_me["user"]["id"].as_str().unwrap().to_string();
    let viewer_id = viewer_me["user"]["id"].as_str().unwrap().to_string();
    let admin_id = admin_me["user"]["id"].as_str().unwrap().to_string();

    let (status, members) = api.get("/api/v1/members", &member).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ids(&members, "user_id"),
        [
            owner_id.clone(),
            admin_id.clone(),
            member_id.clone(),
            viewer_id.clone()
        ],
        "oldest first"
    );
    let first = &members["data"][0];
    assert_eq!(first["email"], owner_me["user"]["email"]);
    assert_eq!(first["role"], "owner");
    assert!(first["joined_at"].is_string());

    // An admin changes roles below owner.
    let member_path = format!("/api/v1/members/{member_id}");
    let (status, changed) = api
        .patch(&member_path, &admin, json!({"role": "viewer"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["role"], "viewer");
    assert_eq!(
        me(&api, &member).await["role"],
        "viewer",
        "effective at once"
    );
    let (status, _) = api
        .post("/api/v1/control-planes", &member, json!({"name": "nope"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, changed) = api
        .patch(&member_path, &admin, json!({"role": "member"}))
        .await;
    assert_eq!(
        (status, changed["role"].clone()),
        (StatusCode::OK, json!("member"))
    );

    // A member manages nobody.
    let (status, body) = api
        .patch(
            &format!("/api/v1/members/{viewer_id}"),
            &member,
            json!({"role": "member"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = api
        .delete(&format!("/api/v1/members/{viewer_id}"), &member)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api
        .post(
            "/api/v1/invitations",
            &member,
            json!({"email": "m@example.com", "role": "viewer"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Only an owner grants, takes away or invites the owner role.
    let owner_path = format!("/api/v1/members/{owner_id}");
    for (path, role) in [(&member_path, "owner"), (&owner_path, "admin")] {
        let (status, body) = api.patch(path, &admin, json!({"role": role})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path} {role}: {body}");
    }
    let (status, _) = api.delete(&owner_path, &admin).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api
        .post(
            "/api/v1/invitations",
            &admin,
            json!({"email": "boss@example.com", "role": "owner"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The last owner can be neither demoted nor removed.
    let (status, body) = api
        .patch(&owner_path, &owner, json!({"role": "admin"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("last owner"),
        "{body}"
    );
    let (status, body) = api.delete(&owner_path, &owner).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("last owner"));
    // With a second owner, the first may step down; then the second is the last.
    let admin_path = format!("/api/v1/members/{admin_id}");
    let (status, _) = api
        .patch(&admin_path, &owner, json!({"role": "owner"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api
        .patch(&owner_path, &owner, json!({"role": "admin"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api.delete(&admin_path, &admin).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = api
        .patch(&owner_path, &admin, json!({"role": "owner"}))
        .await;
    assert_eq!(status, StatusCode::OK);

    // An admin who is demoted loses the invitations they sent.
    let (status, _) = api
        .patch(&member_path, &owner, json!({"role": "admin"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let sent = invite(&api, &member, "friend@example.com", "admin").await;
    let (status, _) = api
        .patch(&member_path, &owner, json!({"role": "member"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = accept(&api, sent["token"].as_str().unwrap(), PASSWORD).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Ids outside the organization are 404, whoever they are.
    let other = api.tenant("other").await;
    let other_me = me(&api, &other).await;
    let other_id = other_me["user"]["id"].as_str().unwrap();
    let other_invitation = invite(&api, &other, "elsewhere@example.com", "admin").await;
    for path in [
        format!("/api/v1/members/{other_id}"),
        format!("/api/v1/members/{}", Uuid::now_v7()),
        "/api/v1/members/not-a-uuid".to_string(),
    ] {
        let (status, _) = api.patch(&path, &owner, json!({"role": "viewer"})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "PATCH {path}");
        let (status, _) = api.delete(&path, &owner).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "DELETE {path}");
    }
    let (status, _) = api
        .delete(
            &format!(
                "/api/v1/invitations/{}",
                other_invitation["id"].as_str().unwrap()
            ),
            &owner,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, mine) = api.get("/api/v1/invitations", &owner).await;
    assert!(
        !mine.to_string().contains("elsewhere@example.com"),
        "{mine}"
    );
    let (_, theirs) = api.get("/api/v1/invitations", &other).await;
    assert_eq!(
        ids(&theirs, "id"),
        [other_invitation["id"].as_str().unwrap()]
    );
    let (_, members) = api.get("/api/v1/members", &owner).await;
    assert!(!ids(&members, "user_id").contains(&other_id.to_string()));
    assert_eq!(ids(&members, "user_id").len(), 4);
    let (_, members) = api.get("/api/v1/members", &other).await;
    assert_eq!(ids(&members, "user_id"), [other_id]);

    // Removing a member ends their access: sessions and tokens alike.
    let (status, created) = api
        .post("/api/v1/tokens", &member, json!({"name": "script"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = api.delete(&member_path, &admin).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for auth in [member.as_str(), created["token"].as_str().unwrap()] {
        let (status, _) = api.get("/api/v1/me", auth).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = api.delete(&member_path, &admin).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Every change is in the audit log.
    let db = database_of(&api).await;
    let rows = db
        .query_all(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT action, target FROM audit_log WHERE organization_id = $1 ORDER BY id",
            [
                Uuid::parse_str(owner_me["organization"]["id"].as_str().unwrap())
                    .unwrap()
                    .into(),
            ],
        ))
        .await
        .expect("audit log");
    let actions: Vec<String> = rows
        .iter()
        .map(|r| r.try_get::<String>("", "action").unwrap())
        .collect();
    for action in [
        "invitation.create",
        "member.join",
        "member.update",
        "member.remove",
    ] {
        assert!(actions.iter().any(|a| a == action), "{action}: {actions:?}");
    }
    let updates = actions.iter().filter(|a| *a == "member.update").count();
    assert_eq!(updates, 7, "{actions:?}");
    api.stop().await;
}

#[tokio::test]
async fn member_and_invitation_endpoints_are_in_the_openapi_document() {
    let api = TestApi::start().await;
    let (status, doc) = api
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let paths = &doc["paths"];
    for (path, methods) in [
        ("/api/v1/members", &["get"][..]),
        ("/api/v1/members/{user_id}", &["patch", "delete"][..]),
        ("/api/v1/invitations", &["get", "post"][..]),
        ("/api/v1/invitations/{id}", &["delete"][..]),
        ("/api/v1/invitations/accept", &["post"][..]),
        (
            "/api/v1/control-planes/{cp}/config/versions/{version}/restore",
            &["post"][..],
        ),
    ] {
        for method in methods {
            assert!(paths[path][method].is_object(), "missing {method} {path}");
        }
    }
    let restore = &paths["/api/v1/control-planes/{cp}/config/versions/{version}/restore"]["post"];
    assert!(
        restore["description"]
            .as_str()
            .unwrap_or_default()
            .contains("Host names are not restored"),
        "{restore}"
    );
    api.stop().await;
}

/// The embedded stack of `tollgate dev`: SQLite, the memory bus and the memory session store.
#[tokio::test]
async fn members_invitations_and_restore_work_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let db = tollgate_api::store::connect(&url).await.expect("sqlite");
    tollgate_api::store::migrate(&db).await.expect("migrate");
    let running = tollgate_api::start(
        tollgate_api::ApiConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            proxy_public_url: "http://localhost:8000".into(),
            default_region: "default".into(),
            session_ttl: Duration::from_secs(3600),
            secure_cookies: true,
            console_dir: None,
            master_key: None,
            analytics: None,
        },
        db,
        Arc::new(tollgate_bus::MemoryBus::new()),
        Arc::new(tollgate_api::ephemeral::MemoryStore::default()),
    )
    .await
    .expect("start");
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let send = |method: Method, path: &str, cookie: Option<&str>, body: Option<Value>| {
        let mut req = http.request(method, format!("{base}{path}"));
        if let Some(cookie) = cookie {
            req = req.header("cookie", cookie);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send()
    };
    let resp = send(
        Method::POST,
        "/api/v1/signup",
        None,
        Some(json!({"email": "o@example.com", "password": PASSWORD, "organization": "Lite"})),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let owner = session_cookie(&resp).unwrap();

    let resp = send(
        Method::POST,
        "/api/v1/invitations",
        Some(&owner),
        Some(json!({"email": "v@example.com", "role": "admin"})),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let invitation: Value = resp.json().await.unwrap();
    let token = invitation["token"].as_str().unwrap();
    assert_eq!(
        invitation["url"],
        format!("https://{}/invite/{token}", running.addr),
        "secure cookies mean the console is served over https"
    );
    let resp = send(
        Method::POST,
        "/api/v1/invitations/accept",
        None,
        Some(json!({"token": token, "password": PASSWORD})),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let admin = session_cookie(&resp).unwrap();
    let joined: Value = resp.json().await.unwrap();
    let resp = send(
        Method::PATCH,
        &format!("/api/v1/members/{}", joined["user"]["id"].as_str().unwrap()),
        Some(&owner),
        Some(json!({"role": "member"})),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let members: Value = send(Method::GET, "/api/v1/members", Some(&admin), None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(members["data"].as_array().unwrap().len(), 2);

    let cp: Value = send(
        Method::POST,
        "/api/v1/control-planes",
        Some(&admin),
        Some(json!({"name": "lite"})),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let cp_path = format!("/api/v1/control-planes/{}", cp["id"].as_str().unwrap());
    let resp = send(
        Method::POST,
        &format!("{cp_path}/services"),
        Some(&admin),
        Some(json!({"name": "s", "url": "http://example.com"})),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = send(
        Method::POST,
        &format!("{cp_path}/config/versions/1/restore"),
        Some(&admin),
        None,
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let restored: Value = resp.json().await.unwrap();
    assert_eq!(restored["version"], 3);
    let services: Value = send(
        Method::GET,
        &format!("{cp_path}/services"),
        Some(&admin),
        None,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(services["data"], json!([]));
    running.shutdown().await;
}
