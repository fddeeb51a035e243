//! The command contract of DESIGN §9, run as the real binary: bad configuration stops the process
//! with a message naming the variable, `token` prints a usable token, `migrate` applies the
//! schema, `serve` refuses a schema that is behind, and SIGTERM ends `serve` with exit code 0.

use std::{
    process::{Command, Output, Stdio},
    time::Duration,
};

use sea_orm::ConnectionTrait;

fn api(args: &[&str], env: &[(&str, &str)], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_api"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .expect("run api")
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

const JWT: &str = "cli-test-jwt-secret-0123456789abcdef012345";
const STATE: &str = "cli-test-state-secret-0123456789abcdef01234";

#[test]
fn bad_configuration_names_the_variable() {
    let dir = temp_dir();
    let key = fernet::Fernet::generate_key();
    let production = [
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("BACKEND_URL", "https://herald.example.com"),
    ];
    let out = api(&["serve"], &production, &dir);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "api: SOCIAL_TOKEN_ENCRYPTION_KEY is required but not set");

    let mut env = production.to_vec();
    env.extend([
        ("SOCIAL_TOKEN_ENCRYPTION_KEY", "not-a-fernet-key"),
        ("AUTH_JWT_SECRET", JWT),
        ("OAUTH_STATE_SECRET", STATE),
    ]);
    let out = api(&["serve"], &env, &dir);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("api: SOCIAL_TOKEN_ENCRYPTION_KEY is malformed"), "{stderr}");
    assert!(!stderr.contains("not-a-fernet-key"), "the value itself is not echoed");

    let mut env = production.to_vec();
    env.extend([
        ("SOCIAL_TOKEN_ENCRYPTION_KEY", key.as_str()),
        ("OAUTH_STATE_SECRET", STATE),
        ("AUTH_JWT_SECRET", "short"),
    ]);
    let out = api(&["serve"], &env, &dir);
    assert!(String::from_utf8_lossy(&out.stderr).contains("AUTH_JWT_SECRET is malformed"));

    let out = api(&["frobnicate"], &[], &dir);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: api"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn openapi_matches_the_committed_document() {
    let out = api(&["openapi"], &[], &temp_dir());
    assert!(out.status.success());
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml")).expect("openapi.yaml");
    assert!(
        String::from_utf8_lossy(&out.stdout) == committed,
        "openapi.yaml is out of date: run `api openapi > openapi.yaml`"
    );
}

#[test]
fn token_prints_a_bearer_token_for_the_user() {
    let dir = temp_dir();
    // The embedded default generates its secrets once; `token` and `serve` then share them.
    let out = api(&["token", "alice", "--ttl", "2h"], &[], &dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).expect("utf8").trim().to_owned();
    let secrets = std::fs::read_to_string(dir.join(".herald-secrets.env")).expect("generated secrets");
    let vars: std::collections::HashMap<String, String> =
        secrets.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    let settings = shared::config::Settings::from_map(&vars).expect("settings");
    assert_eq!(shared::crypto::JwtKeys::new(&settings).verify(&token).expect("valid token"), "alice");
    let out = api(&["token", "alice", "--ttl", "soon"], &[], &dir);
    assert!(!out.status.success());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn migrate_then_serve_and_drain_on_sigterm() {
    let database = format!("herald_cli_{}", uuid::Uuid::new_v4().simple());
    let admin = shared::db::connect("postgres://postgres@127.0.0.1:5432/test", 1, std::time::Duration::from_secs(30))
        .await
        .expect("postgres");
    admin.execute_unprepared(&format!("CREATE DATABASE {database}")).await.expect("create database");
    let url = format!("postgres://postgres@127.0.0.1:5432/{database}");
    let key = fernet::Fernet::generate_key();
    let dir = temp_dir();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("HERALD_QUEUE_PREFIX", database.as_str()),
        ("BACKEND_URL", "http://127.0.0.1"),
        ("SOCIAL_TOKEN_ENCRYPTION_KEY", key.as_str()),
        ("AUTH_JWT_SECRET", JWT),
        ("OAUTH_STATE_SECRET", STATE),
        ("PORT", "0"),
    ];

    // An empty database is behind: `serve` refuses and names the fix.
    let out = api(&["serve"], &env, &dir);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("run `api migrate` first"), "{stderr}");

    let out = api(&["migrate"], &env, &dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut child = Command::new(env!("CARGO_BIN_EXE_api"))
        .arg("serve")
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn api");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(child.try_wait().expect("poll").is_none(), "serve exited early");
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll") {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "serve did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.code(), Some(0));
    let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")).await;
    let _ = std::fs::remove_dir_all(dir);
}
