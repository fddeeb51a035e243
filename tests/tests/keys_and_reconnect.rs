//! Reconnecting (same account, another account, a token answer without a refresh token) and key
//! rotation with `rotate-keys`.

use shared::{
    App,
    app::Schema,
    config::{Secret, Settings},
    crypto::TokenCipher,
};
use tests::{Mode, TestApp};

async fn secrets(app: &TestApp) -> Vec<(i64, String, Option<String>)> {
    let rows = app.query("SELECT id, access_token, refresh_token FROM social_media_connections ORDER BY id").await;
    rows.iter()
        .map(|r| {
            (
                r.try_get::<i64>("", "id").expect("id"),
                r.try_get::<String>("", "access_token").expect("access"),
                r.try_get::<Option<String>>("", "refresh_token").expect("refresh"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_updates_or_replaces_and_keeps_a_valid_refresh_token() {
    let app = TestApp::spawn(Mode::Production).await;
    let html = app.connect_x("alice").await;
    assert!(html.contains(r#""connection":"created""#), "{html}");
    let first = secrets(&app).await;
    let html = app.connect_x("alice").await;
    assert!(html.contains(r#""connection":"reconnected""#), "{html}");
    let second = secrets(&app).await;
    assert_eq!(second.len(), 1);
    assert_eq!(first[0].0, second[0].0, "the same row was updated");
    app.x.sign_in_as("99", "someoneelse");
    let html = app.connect_x("alice").await;
    assert!(html.contains(r#""connection":"replaced""#) && html.contains("someoneelse"), "{html}");
    let (_, body) = app.get("alice", "/api/v1/auth/social/connections").await;
    assert_eq!(body["connections"][0]["platform_user_id"], "99");

    // LinkedIn: a reconnect whose token answer has no refresh token keeps the stored one.
    app.linkedin.issue_refresh_tokens(true);
    app.connect("alice", "linkedin").await;
    let refresh_of =
        |rows: Vec<(i64, String, Option<String>)>| rows.into_iter().filter_map(|r| r.2).collect::<Vec<_>>();
    let with_refresh = refresh_of(secrets(&app).await);
    app.linkedin.issue_refresh_tokens(false);
    let html = app.connect("alice", "linkedin").await;
    assert!(html.contains(r#""connection":"reconnected""#));
    assert_eq!(refresh_of(secrets(&app).await), with_refresh, "the refresh token was kept");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_keys_reencrypts_everything_and_resumes() {
    let app = TestApp::spawn(Mode::Production).await;
    for user in ["alice", "bob", "carol"] {
        app.connect_x(user).await;
    }
    let old_key = app.settings.token_encryption_keys.expose().to_owned();
    let new_key = fernet::Fernet::generate_key();
    let old = TokenCipher::new(&Secret::new(old_key.clone())).expect("old");
    let new = TokenCipher::new(&Secret::new(new_key.clone())).expect("new");
    let before = secrets(&app).await;

    // A rotation killed after one row: that row is under the new key, the others are not.
    let (id, access, refresh) = &before[0];
    let (a, r) = (
        new.encrypt(&old.decrypt(access).expect("a")),
        new.encrypt(&old.decrypt(refresh.as_deref().expect("r")).expect("r")),
    );
    app.exec(&format!(
        "UPDATE social_media_connections SET access_token = '{a}', refresh_token = '{r}' WHERE id = {id}"
    ))
    .await;

    let mut settings: Settings = app.settings.clone();
    settings.token_encryption_keys = Secret::new(format!("{new_key},{old_key}"));
    let rotating = App::start(settings, Schema::RequireCurrent).await.expect("app with both keys");
    let report = shared::keys::rotate(&rotating, 1).await.expect("rotate");
    assert_eq!(report.rows, 3);
    assert_eq!(report.reencrypted, 4, "two secrets of each of the two unrotated rows");
    assert_eq!(report.undecryptable, 0);

    // Every secret now opens with the new key alone, and holds what it held.
    let after = secrets(&app).await;
    for ((_, a0, r0), (_, a1, r1)) in before.iter().zip(&after) {
        assert_eq!(new.decrypt(a1).expect("new key"), old.decrypt(a0).expect("old key"));
        assert_eq!(
            new.decrypt(r1.as_deref().expect("r")).expect("new key"),
            old.decrypt(r0.as_deref().expect("r")).expect("old")
        );
    }
    let again = shared::keys::rotate(&rotating, 100).await.expect("rerun");
    assert_eq!(again.reencrypted, 0, "a second run has nothing to do");

    // A key list that cannot open the stored secrets is reported, and nothing is changed.
    let mut settings = app.settings.clone();
    settings.token_encryption_keys = Secret::new(fernet::Fernet::generate_key());
    let wrong = App::start(settings, Schema::RequireCurrent).await.expect("app with a wrong key");
    let report = shared::keys::rotate(&wrong, 10).await.expect("rotate");
    assert_eq!(report.undecryptable, 6);
    assert_eq!(secrets(&app).await, after);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_keys_reencrypts_webhook_secrets_and_the_previous_one() {
    let app = TestApp::spawn(Mode::Production).await;
    let hook = |url: &str| serde_json::json!({"url": url});
    let (status, created) = app.post("alice", "/api/v1/webhooks", &hook("http://127.0.0.1:9/a")).await;
    assert_eq!(status, 201, "{created}");
    let first = created["webhook"]["id"].as_str().expect("id").to_owned();
    let (status, _) = app.post("bob", "/api/v1/webhooks", &hook("http://127.0.0.1:9/b")).await;
    assert_eq!(status, 201);
    // Alice rotates her signing secret: the old one keeps signing, so it is stored too.
    let (status, rotated) =
        app.post("alice", &format!("/api/v1/webhooks/{first}/rotate-secret"), &serde_json::json!({})).await;
    assert_eq!(status, 200, "{rotated}");
    let stored = || async {
        let rows = app.query("SELECT id, secret, previous_secret FROM webhook_endpoints ORDER BY id").await;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("", "id").expect("id");
                let secret: String = r.try_get("", "secret").expect("secret");
                (id, secret, r.try_get::<Option<String>>("", "previous_secret").expect("previous"))
            })
            .collect::<Vec<_>>()
    };
    let before = stored().await;
    let old_key = app.settings.token_encryption_keys.expose().to_owned();
    let new_key = fernet::Fernet::generate_key();
    let old = TokenCipher::new(&Secret::new(old_key.clone())).expect("old");
    let new = TokenCipher::new(&Secret::new(new_key.clone())).expect("new");

    let mut settings: Settings = app.settings.clone();
    settings.token_encryption_keys = Secret::new(format!("{new_key},{old_key}"));
    let rotating = App::start(settings, Schema::RequireCurrent).await.expect("app with both keys");
    let report = shared::keys::rotate(&rotating, 1).await.expect("rotate");
    assert_eq!((report.rows, report.reencrypted, report.undecryptable), (2, 3, 0), "{report:?}");

    // Each secret opens with the new key alone and is the secret it was; the one shown at
    // rotation is the current one.
    let after = stored().await;
    for ((id, s0, p0), (_, s1, p1)) in before.iter().zip(&after) {
        assert_eq!(new.decrypt(s1).expect("new key"), old.decrypt(s0).expect("old key"), "{id}");
        assert_eq!(
            p1.as_deref().map(|p| new.decrypt(p).expect("new key")),
            p0.as_deref().map(|p| old.decrypt(p).expect("old key")),
            "{id}"
        );
    }
    let current = &after.iter().find(|(id, _, _)| *id == first).expect("alice's").1;
    assert_eq!(new.decrypt(current).expect("new key"), rotated["secret"].as_str().expect("secret"));
    assert_eq!(shared::keys::rotate(&rotating, 100).await.expect("rerun").reencrypted, 0);
    app.stop().await;
}
