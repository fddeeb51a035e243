//! End-to-end harness: starts the real api and worker (through their library entry points, on
//! port 0) against the machine's real PostgreSQL and Redis, one database and one queue key prefix
//! per test, with fake platform servers that record what they receive.

pub mod fake_facebook;
pub mod fake_instagram;
pub mod fake_linkedin;
pub mod fake_tiktok;
pub mod fake_x;
mod graph;
pub mod media_server;
pub mod outage;
mod rows;
pub mod webhook_receiver;

pub use rows::{error_message, posting_error};

use std::{
    collections::HashMap,
    io::Write,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::Value;
use shared::{
    App,
    app::Schema,
    config::{Settings, Storage},
};

/// PostgreSQL admin URL (database `test`, trust auth); override with `HERALD_TEST_POSTGRES`.
pub fn postgres_admin_url() -> String {
    std::env::var("HERALD_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Redis URL; override with `HERALD_TEST_REDIS`.
pub fn redis_url() -> String {
    std::env::var("HERALD_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A request a fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query string.
    pub query: String,
    /// Headers, names lower-case.
    pub headers: HashMap<String, String>,
    /// Body as text (lossy UTF-8): at most the first [`RECORDED_BODY_LIMIT`] bytes.
    pub body: String,
    /// The full length of the body in bytes (final once the request is answered).
    pub body_len: usize,
    /// When it arrived.
    pub at: chrono::DateTime<chrono::Utc>,
}

impl RecordedRequest {
    /// The body parsed as a form.
    pub fn form(&self) -> HashMap<String, String> {
        url::form_urlencoded::parse(self.body.as_bytes()).into_owned().collect()
    }
}

/// What every fake platform offers: the requests it received.
pub trait Fake {
    /// The fake's recorder.
    fn recorder(&self) -> &Recorder;

    /// Every request received so far.
    fn requests(&self) -> Vec<RecordedRequest> {
        self.recorder().all()
    }

    /// Requests to one path.
    fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(|r| r.path == path).collect()
    }

    /// Requests whose path ends with `suffix`, whatever version segment precedes it.
    fn requests_ending_with(&self, suffix: &str) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(|r| r.path.ends_with(suffix)).collect()
    }

    /// Holds the next `method` request whose path ends with `path_suffix` before the fake
    /// handles it (see [`Recorder::hold`]).
    fn hold(&self, method: &str, path_suffix: &str) {
        self.recorder().hold(method, path_suffix);
    }

    /// Lets the fake handle the next matching request but withholds its answer (see
    /// [`Recorder::hold_reply`]).
    fn hold_reply(&self, method: &str, path_suffix: &str) {
        self.recorder().hold_reply(method, path_suffix);
    }

    /// Waits until a held request arrived; returns it (see [`Recorder::wait_held`]).
    fn wait_held(&self, timeout: Duration) -> impl Future<Output = RecordedRequest> + Send {
        self.recorder().wait_held(timeout)
    }

    /// Answers every held request and drops the holds not yet used (see [`Recorder::release_all`]).
    fn release_all(&self) {
        self.recorder().release_all();
    }
}

/// How much of a request body a [`RecordedRequest`] keeps.
pub const RECORDED_BODY_LIMIT: usize = 64 * 1024;

/// Records every request of a fake, and holds the requests a test asked to freeze.
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<RecorderInner>);

#[derive(Debug, Default)]
struct RecorderInner {
    requests: Mutex<Vec<RecordedRequest>>,
    holds: Mutex<Holds>,
    /// Bumped by every `release_all`; held requests wait for it to move.
    releases: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Holds {
    /// Holds not used yet, oldest first.
    pending: Vec<PendingHold>,
    /// Held requests `wait_held` has not returned yet, oldest first.
    arrived: std::collections::VecDeque<RecordedRequest>,
}

/// A hold not used yet: the requests it takes, and whether the fake handles the request first.
struct PendingHold {
    matches: Box<dyn Fn(&RecordedRequest) -> bool + Send + Sync>,
    after_handling: bool,
}

impl std::fmt::Debug for PendingHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingHold").field("after_handling", &self.after_handling).finish_non_exhaustive()
    }
}

/// Whether a request is `method` to a path ending with `path_suffix`.
fn is_to(method: &str, path_suffix: &str) -> impl Fn(&RecordedRequest) -> bool + Send + Sync + 'static {
    let (method, path_suffix) = (method.to_owned(), path_suffix.to_owned());
    move |request| request.method.eq_ignore_ascii_case(&method) && request.path.ends_with(path_suffix.as_str())
}

impl Recorder {
    /// Everything recorded.
    pub fn all(&self) -> Vec<RecordedRequest> {
        self.0.requests.lock().expect("recorder").clone()
    }

    /// Makes the next `method` request whose path ends with `path_suffix` be recorded and then
    /// never handled nor answered until [`Recorder::release_all`] (after which it is handled as
    /// usual): the client waits until it times out or is killed.
    pub fn hold(&self, method: &str, path_suffix: &str) {
        self.hold_where(is_to(method, path_suffix));
    }

    /// Like [`Recorder::hold`], but the fake handles the request first (its state changes: the
    /// post exists) and only the answer is withheld until [`Recorder::release_all`].
    pub fn hold_reply(&self, method: &str, path_suffix: &str) {
        self.hold_reply_where(is_to(method, path_suffix));
    }

    /// Like [`Recorder::hold`], for the next request `matches` accepts: for a step that its method
    /// and path do not tell apart (a query's `action=`, a form's `media_type`, a path that ends
    /// with an id not known yet).
    pub fn hold_where(&self, matches: impl Fn(&RecordedRequest) -> bool + Send + Sync + 'static) {
        self.push_hold(Box::new(matches), false);
    }

    /// Like [`Recorder::hold_reply`], for the next request `matches` accepts.
    pub fn hold_reply_where(&self, matches: impl Fn(&RecordedRequest) -> bool + Send + Sync + 'static) {
        self.push_hold(Box::new(matches), true);
    }

    fn push_hold(&self, matches: Box<dyn Fn(&RecordedRequest) -> bool + Send + Sync>, after_handling: bool) {
        self.0.holds.lock().expect("holds").pending.push(PendingHold { matches, after_handling });
    }

    /// Waits until a held request arrived and returns it (each held request is returned once,
    /// oldest first); panics after `timeout`.
    pub async fn wait_held(&self, timeout: Duration) -> RecordedRequest {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(request) = self.0.holds.lock().expect("holds").arrived.pop_front() {
                return request;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for a held request");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Lets every held request go on (handled and answered as usual) and drops unused holds.
    pub fn release_all(&self) {
        self.0.holds.lock().expect("holds").pending.clear();
        self.0.releases.send_modify(|generation| *generation += 1);
    }

    /// Takes the first pending hold matching this request: `Some(after_handling)`.
    fn take_hold(&self, request: &RecordedRequest) -> Option<bool> {
        let mut holds = self.0.holds.lock().expect("holds");
        let index = holds.pending.iter().position(|hold| (hold.matches)(request))?;
        Some(holds.pending.remove(index).after_handling)
    }

    /// Publishes a held request to `wait_held`, then waits for the next `release_all`.
    async fn park(&self, index: usize) {
        let mut releases = self.0.releases.subscribe();
        let seen = *releases.borrow_and_update();
        let request = self.0.requests.lock().expect("recorder")[index].clone();
        self.0.holds.lock().expect("holds").arrived.push_back(request);
        let _ = releases.wait_for(|generation| *generation > seen).await;
    }

    fn push(&self, request: RecordedRequest) -> usize {
        let mut requests = self.0.requests.lock().expect("recorder");
        requests.push(request);
        requests.len() - 1
    }

    fn add_body_len(&self, index: usize, len: usize) {
        self.0.requests.lock().expect("recorder")[index].body_len += len;
    }
}

/// Wraps a fake's whole endpoint (its routes behind the recorder); the sandbox adds its consent
/// page, request log and `GET /` page this way.
pub type Wrap = Box<dyn FnOnce(poem::endpoint::BoxEndpoint<'static>) -> poem::endpoint::BoxEndpoint<'static> + Send>;

/// Where and how a fake is served. The default, which every test uses, is a free loopback port
/// and nothing around the fake.
#[derive(Default)]
#[allow(missing_debug_implementations)]
pub struct Serve {
    /// The listener to serve on; `None`: a free port on 127.0.0.1.
    pub listener: Option<tokio::net::TcpListener>,
    /// What wraps the fake's endpoint; `None`: nothing.
    pub wrap: Option<Wrap>,
}

/// Serves a fake's routes on a free loopback port, recording each request; returns its base URL.
/// A body up to [`RECORDED_BODY_LIMIT`] is read before the handler runs (as a whole, as before);
/// a longer one is recorded by its first bytes and streamed on to the handler, its `body_len`
/// growing as the handler reads it (what the handler leaves unread is drained and counted before
/// the answer goes out), so a large upload never sits in memory here.
pub async fn serve_fake(routes: impl Endpoint + 'static, recorder: Recorder) -> String {
    serve_fake_with(routes, recorder, Serve::default()).await
}

/// [`serve_fake`] where and as `serve` says.
pub async fn serve_fake_with(routes: impl Endpoint + 'static, recorder: Recorder, serve: Serve) -> String {
    use futures::StreamExt;

    let record = recorder.clone();
    let endpoint = routes.around(move |next, mut req: Request| {
        let record = record.clone();
        async move {
            let at = chrono::Utc::now();
            let mut stream = req.take_body().into_bytes_stream();
            let mut chunks = Vec::new();
            let mut read = 0;
            let mut ended = false;
            while read <= RECORDED_BODY_LIMIT {
                match stream.next().await {
                    Some(Ok(chunk)) => {
                        read += chunk.len();
                        chunks.push(chunk);
                    }
                    // As before: a body that cannot be read is recorded (and handled) as empty.
                    Some(Err(_)) => {
                        chunks.clear();
                        read = 0;
                        ended = true;
                        break;
                    }
                    None => {
                        ended = true;
                        break;
                    }
                }
            }
            let mut head = Vec::with_capacity(read.min(RECORDED_BODY_LIMIT));
            for chunk in &chunks {
                let room = RECORDED_BODY_LIMIT - head.len();
                head.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            let request = RecordedRequest {
                method: req.method().to_string(),
                path: req.uri().path().to_owned(),
                query: req.uri().query().unwrap_or("").to_owned(),
                headers: req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                    .collect(),
                body: String::from_utf8_lossy(&head).into_owned(),
                body_len: read,
                at,
            };
            let hold = record.take_hold(&request);
            let index = record.push(request);
            // The rest of a long body, shared so that what the handler leaves unread is drained
            // (and counted) below.
            let mut unread = None;
            if ended {
                req.set_body(chunks.concat());
            } else {
                let counter = record.clone();
                let rest = Arc::new(Mutex::new(Box::pin(stream.map(move |item| {
                    if let Ok(chunk) = &item {
                        counter.add_body_len(index, chunk.len());
                    }
                    item
                }))));
                let reader = rest.clone();
                let rest_stream =
                    futures::stream::poll_fn(move |cx| reader.lock().expect("request body").poll_next_unpin(cx));
                let body = futures::stream::iter(chunks.into_iter().map(Ok)).chain(rest_stream);
                req.set_body(poem::Body::from_bytes_stream(body));
                unread = Some(rest);
            }
            if hold == Some(false) {
                record.park(index).await;
            }
            let result = next.call(req).await;
            if let Some(rest) = unread {
                let next_chunk =
                    || futures::future::poll_fn(|cx| rest.lock().expect("request body").poll_next_unpin(cx));
                while let Some(Ok(_)) = next_chunk().await {}
            }
            let response = result?.into_response();
            if hold == Some(true) {
                record.park(index).await;
            }
            Ok::<Response, poem::Error>(response)
        }
    });
    let endpoint = match serve.wrap {
        Some(wrap) => wrap(endpoint.boxed()),
        None => endpoint.boxed(),
    };
    let listener = match serve.listener {
        Some(listener) => listener,
        None => tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake"),
    };
    let addr = listener.local_addr().expect("fake addr");
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).expect("acceptor");
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(endpoint));
    format!("http://{addr}")
}

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures every log line of this process (debug level for Herald's crates) so tests can check
/// what was logged. Idempotent.
pub fn capture_logs() {
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = LogWriter(buffer.clone());
        let filter = tracing_subscriber::EnvFilter::new("info,api=debug,worker=debug,shared=debug");
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        buffer
    });
}

/// Everything logged so far.
pub fn captured_logs() -> String {
    LOGS.get().map(|b| String::from_utf8_lossy(&b.lock().expect("log buffer")).into_owned()).unwrap_or_default()
}

/// The captured lines that mention `id` (a post id, a connection id): the log of one test's own
/// work, since the buffer holds every test of the process.
pub fn log_lines_with(id: &str) -> Vec<String> {
    captured_logs().lines().filter(|line| line.contains(id)).map(str::to_owned).collect()
}

/// Polls `check` every 50 ms until it returns `Some` or `timeout` passes.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where the app keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// PostgreSQL + Redis, api and a separate worker.
    Production,
    /// SQLite file + in-process worker (no `DATABASE_URL`).
    Embedded,
}

/// A running Herald with a fake X.
#[allow(missing_debug_implementations)]
pub struct TestApp {
    /// `http://127.0.0.1:{port}`.
    pub base_url: String,
    /// A client that does not follow redirects.
    pub http: reqwest::Client,
    /// The fake X.
    pub x: fake_x::FakeX,
    /// The fake LinkedIn.
    pub linkedin: fake_linkedin::FakeLinkedin,
    /// The fake TikTok.
    pub tiktok: fake_tiktok::FakeTiktok,
    /// The fake Facebook.
    pub facebook: fake_facebook::FakeFacebook,
    /// The fake Instagram.
    pub instagram: fake_instagram::FakeInstagram,
    /// The test media server (plain http on loopback) the fakes and Herald download from.
    pub media: media_server::MediaServer,
    /// A direct database handle for assertions.
    pub db: DatabaseConnection,
    /// The settings the app runs with.
    pub settings: Settings,
    /// The environment those settings were read from (for worker processes started by a test).
    pub env: HashMap<String, String>,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    cleanup: Cleanup,
}

enum Cleanup {
    Postgres { database: String, redis_prefix: String },
    Dir(std::path::PathBuf),
}

/// The settings of a test app (before it starts): every platform points at its fake.
pub fn base_env(fakes: &[Vec<(String, String)>], backend_url: &str) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("AUTH_JWT_SECRET", "test-jwt-secret-0123456789abcdef0123456789"),
        ("OAUTH_STATE_SECRET", "test-state-secret-0123456789abcdef012345678"),
        ("BACKEND_URL", backend_url),
        ("FRONTEND_ORIGIN", "http://frontend.test:3000"),
        ("FRONTEND_URL", "http://frontend.test:3000/settings/connections"),
        ("WORKER_POLL_INTERVAL_MS", "100"),
        ("PUBLISH_RETRY_BASE_SECS", "1"),
        ("PLATFORM_HTTP_TIMEOUT_SECS", "3"),
        ("REFRESH_SWEEP_INTERVAL_SECS", "1"),
        // Herds of posts per account go to the fake X; the budget has tests of its own.
        ("X_POSTS_PER_15_MIN", "0"),
        // The test media server is on loopback over plain http.
        ("MEDIA_ALLOW_PRIVATE", "true"),
        // Tests send herds from one user and one address; the limits have tests of their own,
        // and these keep the limiter in the path of every request without ever refusing one.
        ("RATE_LIMIT_PER_MIN", "10000000"),
        ("RATE_LIMIT_BURST", "10000000"),
        ("RATE_LIMIT_INITIATE_PER_MIN", "10000000"),
        ("RATE_LIMIT_CALLBACK_PER_MIN", "10000000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    env.insert("SOCIAL_TOKEN_ENCRYPTION_KEY".into(), fernet::Fernet::generate_key());
    for fake in fakes {
        env.extend(fake.iter().cloned());
    }
    env
}

impl TestApp {
    /// Starts Herald in `mode` with default test settings.
    pub async fn spawn(mode: Mode) -> Self {
        Self::spawn_with(mode, |_| {}).await
    }

    /// Starts Herald in `mode`, letting the test adjust the environment first.
    pub async fn spawn_with(mode: Mode, adjust: impl FnOnce(&mut HashMap<String, String>)) -> Self {
        Self::start(mode, adjust, true).await
    }

    /// Starts the production api alone, with no worker: the test starts workers itself (in this
    /// process with [`TestApp::spawn_worker`], or as real processes from [`TestApp::env`]).
    pub async fn spawn_api_only(adjust: impl FnOnce(&mut HashMap<String, String>)) -> Self {
        Self::start(Mode::Production, adjust, false).await
    }

    async fn start(mode: Mode, adjust: impl FnOnce(&mut HashMap<String, String>), with_worker: bool) -> Self {
        capture_logs();
        let x = fake_x::FakeX::start().await;
        let linkedin = fake_linkedin::FakeLinkedin::start().await;
        let tiktok = fake_tiktok::FakeTiktok::start().await;
        let facebook = fake_facebook::FakeFacebook::start().await;
        let instagram = fake_instagram::FakeInstagram::start().await;
        let media = media_server::MediaServer::start().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind api");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let mut env = base_env(&[x.env(), linkedin.env(), tiktok.env(), facebook.env(), instagram.env()], &base_url);
        let id = uuid::Uuid::new_v4().simple().to_string();
        let cleanup = match mode {
            Mode::Production => {
                let database = format!("herald_test_{id}");
                let admin = shared::db::connect(&postgres_admin_url(), 1, std::time::Duration::from_secs(30))
                    .await
                    .expect("connect to PostgreSQL");
                admin.execute_unprepared(&format!("CREATE DATABASE {database}")).await.expect("create test database");
                let mut url = url::Url::parse(&postgres_admin_url()).expect("postgres url");
                url.set_path(&database);
                env.insert("DATABASE_URL".into(), url.to_string());
                env.insert("REDIS_URL".into(), redis_url());
                let redis_prefix = format!("herald-test-{id}");
                env.insert("HERALD_QUEUE_PREFIX".into(), redis_prefix.clone());
                Cleanup::Postgres { database, redis_prefix }
            }
            Mode::Embedded => Cleanup::Dir(std::env::temp_dir().join(format!("herald-test-{id}"))),
        };
        adjust(&mut env);
        let mut settings = Settings::from_map(&env).expect("test settings");
        if let Cleanup::Dir(dir) = &cleanup {
            std::fs::create_dir_all(dir).expect("temp dir");
            settings.storage = Storage::Embedded { path: dir.join("herald.db") };
        }

        let (shutdown, stop) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut tasks = Vec::new();
        let db = match mode {
            Mode::Production => {
                // `api migrate`, then the api and a worker as separate apps, as in production.
                let migrated = App::start(settings.clone(), Schema::Migrate).await.expect("migrate");
                if with_worker {
                    let worker_app = App::start(settings.clone(), Schema::RequireCurrent).await.expect("worker app");
                    tasks.push(tokio::spawn(worker::run(worker_app, stopped(stop.clone()))));
                }
                migrated.db.clone()
            }
            Mode::Embedded => {
                let Storage::Embedded { path } = &settings.storage else { unreachable!() };
                // The api creates the file and migrates; this handle waits for it below.
                let url = format!("sqlite://{}?mode=rwc", path.display());
                shared::db::connect(&url, 2, std::time::Duration::from_secs(30)).await.expect("sqlite")
            }
        };
        let api_settings = settings.clone();
        let api_stop = stopped(stop.clone());
        tasks.push(tokio::spawn(async move {
            api::run(api_settings, listener, api_stop).await.expect("api runs");
        }));
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let app = Self {
            base_url,
            http,
            x,
            linkedin,
            tiktok,
            facebook,
            instagram,
            media,
            db,
            settings,
            env,
            shutdown,
            tasks,
            cleanup,
        };
        wait_until(Duration::from_secs(20), "the api to answer /readyz", || async {
            let response = app.http.get(app.url("/readyz")).send().await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
        app
    }

    /// Starts one more worker process on the same database and queue (production mode), as a
    /// horizontally scaled deployment runs them.
    pub async fn spawn_worker(&mut self) {
        assert!(matches!(self.settings.storage, Storage::External { .. }), "extra workers need Redis");
        let app = App::start(self.settings.clone(), Schema::RequireCurrent).await.expect("worker app");
        let mut stop = self.shutdown.subscribe();
        self.tasks.push(tokio::spawn(worker::run(app, async move {
            let _ = stop.wait_for(|s| *s).await;
        })));
    }

    /// An absolute URL of the api.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A bearer token for `user`.
    pub fn token(&self, user: &str) -> String {
        shared::crypto::JwtKeys::new(&self.settings).sign(user, chrono::Duration::hours(1))
    }

    /// `GET` as `user`; returns the status and JSON body.
    pub async fn get(&self, user: &str, path: &str) -> (u16, Value) {
        let response = self.http.get(self.url(path)).bearer_auth(self.token(user)).send().await.expect("GET");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `POST` JSON as `user`; returns the status and JSON body.
    pub async fn post(&self, user: &str, path: &str, body: &Value) -> (u16, Value) {
        let response =
            self.http.post(self.url(path)).bearer_auth(self.token(user)).json(body).send().await.expect("POST");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Starts a connection: returns the `oauth_url` Herald answered with.
    pub async fn initiate(&self, user: &str, platform: &str) -> String {
        let (status, body) =
            self.post(user, "/api/v1/auth/social/initiate", &serde_json::json!({"platform": platform})).await;
        assert_eq!(status, 200, "initiate: {body}");
        body["oauth_url"].as_str().expect("oauth_url").to_owned()
    }

    /// Opens the consent URL the way a browser would: the fake platform consents and redirects;
    /// returns the callback URL it redirected to.
    pub async fn consent(&self, oauth_url: &str) -> String {
        let response = self.http.get(oauth_url).send().await.expect("authorize");
        assert_eq!(response.status().as_u16(), 302, "the fake platform refused the authorize request");
        response.headers()[reqwest::header::LOCATION].to_str().expect("location").to_owned()
    }

    /// Follows a callback URL; returns the status and HTML.
    pub async fn callback(&self, callback_url: &str) -> (u16, String) {
        let response = self.http.get(callback_url).send().await.expect("callback");
        (response.status().as_u16(), response.text().await.expect("html"))
    }

    /// Connects X for `user` end to end; returns the popup page.
    pub async fn connect_x(&self, user: &str) -> String {
        self.connect(user, "twitter").await
    }

    /// Connects `platform` for `user` end to end through its fake; returns the popup page.
    pub async fn connect(&self, user: &str, platform: &str) -> String {
        let (status, html) = self.try_connect(user, platform).await;
        assert_eq!(status, 200, "callback: {html}");
        html
    }

    /// Runs the whole consent flow; returns the callback's status and page, whatever they are.
    pub async fn try_connect(&self, user: &str, platform: &str) -> (u16, String) {
        let oauth_url = self.initiate(user, platform).await;
        let callback_url = self.consent(&oauth_url).await;
        self.callback(&callback_url).await
    }

    /// `DELETE` as `user`; returns the status and JSON body.
    pub async fn delete(&self, user: &str, path: &str) -> (u16, Value) {
        let response = self.http.delete(self.url(path)).bearer_auth(self.token(user)).send().await.expect("DELETE");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Every token any fake platform issued.
    pub fn issued_tokens(&self) -> Vec<String> {
        let mut tokens = self.x.issued_tokens();
        tokens.extend(self.linkedin.issued_tokens());
        tokens.extend(self.tiktok.issued_tokens());
        tokens.extend(self.facebook.issued_tokens());
        tokens.extend(self.instagram.issued_tokens());
        tokens
    }

    /// Waits until a post of `user` has one of `statuses`; returns it.
    pub async fn wait_for_post(&self, user: &str, post_id: &str, statuses: &[&str], timeout: Duration) -> Value {
        wait_until(timeout, &format!("post {post_id} to reach {statuses:?}"), || async {
            let (_, post) = self.get(user, &format!("/api/v1/posts/{post_id}")).await;
            statuses.contains(&post["status"].as_str()?).then_some(post)
        })
        .await
    }

    /// Returns once the worker is past `at`: a LinkedIn post of a user of its own
    /// (`sentinel`), scheduled 2 s after `at` (or after now, if later), has been published. Jobs
    /// are dispatched and run in the order they are due, so a negative check made after this
    /// ("X received nothing") comes after any wrong send due at `at` would have happened.
    pub async fn wait_past(&self, at: chrono::DateTime<chrono::Utc>) {
        const USER: &str = "sentinel";
        let (_, connections) = self.get(USER, "/api/v1/auth/social/connections").await;
        if connections["connections"].as_array().is_none_or(|list| list.is_empty()) {
            self.connect(USER, "linkedin").await;
        }
        let due = at.max(chrono::Utc::now()) + chrono::Duration::seconds(2);
        let body = serde_json::json!({"campaign_id": "sentinel", "platforms": ["linkedin"],
            "content": format!("sentinel {}", due.timestamp_millis()), "scheduled_time": due.to_rfc3339()});
        let (status, answer) = self.post(USER, "/api/v1/posts/schedule", &body).await;
        assert_eq!(status, 201, "sentinel: {answer}");
        let id = answer["posts"][0]["id"].as_str().expect("sentinel id");
        let post = self.wait_for_post(USER, id, &["posted", "failed", "unknown"], Duration::from_secs(30)).await;
        assert_eq!(post["status"], "posted", "sentinel: {post}");
    }

    /// Stops the api and worker and removes the test's database and queue keys.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let started = std::time::Instant::now();
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
            // A slow drain is a shutdown bug worth seeing; show the last log lines with it.
            if started.elapsed() > Duration::from_secs(5) {
                let logs = captured_logs();
                let tail: Vec<&str> = logs.lines().rev().take(40).collect();
                eprintln!("slow stop: {:?}; last log lines, newest first:\n{}", started.elapsed(), tail.join("\n"));
            }
        }
        match self.cleanup {
            Cleanup::Postgres { database, redis_prefix } => {
                drop(self.db);
                if let Ok(admin) =
                    shared::db::connect(&postgres_admin_url(), 1, std::time::Duration::from_secs(30)).await
                {
                    let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")).await;
                }
                if let Ok(client) = redis::Client::open(redis_url())
                    && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                {
                    let keys: Vec<String> = redis::cmd("KEYS")
                        .arg(format!("{redis_prefix}:*"))
                        .query_async(&mut conn)
                        .await
                        .unwrap_or_default();
                    if !keys.is_empty() {
                        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
                    }
                }
            }
            Cleanup::Dir(dir) => {
                drop(self.db);
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// A worker process a test started; killed when dropped, so a test that fails leaves none behind
/// holding database connections.
#[derive(Debug)]
pub struct WorkerProcess(std::process::Child);

impl std::ops::Deref for WorkerProcess {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for WorkerProcess {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a real `worker` process (`bin`: the test's `env!("CARGO_BIN_EXE_worker")`) with the
/// test app's environment only, plus `extra`; its output goes to a file named after `name`.
pub fn worker_process(app: &TestApp, bin: &str, name: &str, extra: &[(&str, &str)]) -> WorkerProcess {
    use std::process::{Command, Stdio};
    let log = std::env::temp_dir().join(format!("herald-{name}-{}.log", std::process::id()));
    let out = std::fs::File::create(&log).expect("worker log");
    eprintln!("worker {name} logs to {}", log.display());
    let child = Command::new(bin)
        .env_clear()
        .envs(&app.env)
        .env("RUST_LOG", "info")
        .envs(extra.iter().copied())
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("start the worker binary");
    WorkerProcess(child)
}

/// Lower-case hex of bytes (digests).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a fake platform got fetching a URL itself (Meta fetching `image_url`, a TikTok pull).
pub(crate) struct Fetched {
    /// The HTTP status; `None` when the request failed.
    pub status: Option<u16>,
    /// Body bytes received (none for a non-2xx answer, whose body is not read).
    pub bytes: u64,
    /// SHA-256 of those bytes, lower-case hex.
    pub sha256: String,
    /// Why it failed (the request, a non-2xx status, a broken body), if it did.
    pub error: Option<String>,
}

/// Fetches `url` as a platform does, the body streamed: each chunk counted, hashed and handed to
/// `on_chunk`, none kept.
pub(crate) async fn fetch_streamed(client: &reqwest::Client, url: &str, mut on_chunk: impl FnMut(&[u8])) -> Fetched {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut fetched = Fetched { status: None, bytes: 0, sha256: String::new(), error: None };
    match client.get(url).send().await {
        Err(error) => fetched.error = Some(error.to_string()),
        Ok(response) if !response.status().is_success() => {
            fetched.status = Some(response.status().as_u16());
            fetched.error = Some(format!("HTTP {}", response.status()));
        }
        Ok(mut response) => {
            fetched.status = Some(response.status().as_u16());
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        fetched.bytes += chunk.len() as u64;
                        hasher.update(&chunk);
                        on_chunk(&chunk);
                    }
                    Ok(None) => break,
                    Err(error) => {
                        fetched.error = Some(error.to_string());
                        break;
                    }
                }
            }
        }
    }
    fetched.sha256 = hex(&hasher.finalize());
    fetched
}
