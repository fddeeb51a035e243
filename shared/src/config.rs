//! Typed configuration, read from the environment once at start.
//!
//! Every variable Herald reads is parsed here and nowhere else. A missing or malformed required
//! value stops the process with a message naming the variable. Secrets are wrapped in [`Secret`],
//! whose `Debug` output is redacted, so a settings dump in a log line never leaks one.
//! `.env.example` documents every variable read here.

use std::{collections::HashMap, fmt, path::PathBuf, time::Duration};

use rand::RngCore;
use url::Url;

use crate::{domain::Platform, ratelimit::Quota};

/// A secret string: usable by the code, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// A configuration error; the message names the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is absent or empty.
    #[error("{0} is required but not set")]
    Missing(String),
    /// A variable is set but cannot be parsed.
    #[error("{name} is malformed: {reason}")]
    Malformed { name: String, reason: String },
    /// The embedded default could not write its generated secrets file.
    #[error("cannot write generated secrets to {path}: {reason}")]
    SecretsFile { path: String, reason: String },
}

/// Where the data lives.
#[derive(Debug, Clone)]
pub enum Storage {
    /// Production: PostgreSQL (or any sea-orm URL) for rows, Redis for the queue. The api serves
    /// only HTTP; `worker` processes publish.
    External {
        /// `DATABASE_URL`.
        database_url: Secret,
        /// `REDIS_URL`.
        redis_url: Secret,
        /// Prefix of every Redis key Herald owns (`HERALD_QUEUE_PREFIX`, default `herald`).
        queue_prefix: String,
        /// Database connections one process opens at most (`DATABASE_MAX_CONNECTIONS`, default 20).
        max_connections: u32,
        /// How long a query waits for a connection, and a connection for the server, before the
        /// request answers 503 (`DATABASE_TIMEOUT_SECS`, default 3). Also bounds each queue call.
        timeout: Duration,
    },
    /// The embedded default: one SQLite file holds rows and queue, and the api runs the worker
    /// in-process.
    Embedded {
        /// The SQLite file (`herald.db` in the working directory).
        path: PathBuf,
    },
}

/// Client credentials and endpoints of one platform.
#[derive(Debug, Clone)]
pub struct PlatformSettings {
    /// OAuth client id (`{P}_CLIENT_ID`, Facebook: `FACEBOOK_APP_ID`).
    pub client_id: Option<String>,
    /// OAuth client secret (`{P}_CLIENT_SECRET`, Facebook: `FACEBOOK_APP_SECRET`).
    pub client_secret: Option<Secret>,
    /// Full authorize URL (`{P}_AUTH_URL`).
    pub auth_url: Url,
    /// Full token URL (`{P}_TOKEN_URL`).
    pub token_url: Url,
    /// Scheme and host of the platform API (`{P}_API_BASE`).
    pub api_base: Url,
}

impl PlatformSettings {
    /// The credentials, when both are set.
    pub fn credentials(&self) -> Option<(&str, &Secret)> {
        Some((self.client_id.as_deref()?, self.client_secret.as_ref()?))
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (Cloud Run).
    Json,
}

/// Tuning of the worker.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// How often an idle queue consumer asks for due jobs (`WORKER_POLL_INTERVAL_MS`).
    pub poll_interval: Duration,
    /// Jobs one worker process runs at once (`WORKER_CONCURRENCY`).
    pub concurrency: usize,
    /// Attempts before a transient failure becomes final (`PUBLISH_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// First retry delay; doubled each attempt, with jitter (`PUBLISH_RETRY_BASE_SECS`).
    pub retry_base: Duration,
    /// How long a post may stay `publishing` before a returning job presumes its worker died
    /// (`PUBLISH_STALE_AFTER_SECS`, default 300).
    pub stale_after: Duration,
    /// How the dispatcher feeds the queue.
    pub dispatch: DispatchSettings,
    /// After SIGTERM, how long in-flight attempts get to finish before the process exits anyway
    /// (`WORKER_SHUTDOWN_GRACE_SECS`, default 8, below Cloud Run's 10-second notice). An attempt
    /// cut off is resolved by the stale-claim rules.
    pub shutdown_grace: Duration,
    /// The api's `/readyz` fails when no worker has sent a heartbeat for this long while posts
    /// are overdue (`READYZ_NO_WORKER_SECS`, default 120).
    pub no_worker_after: Duration,
}

/// Tuning of the dispatcher (DESIGN §11), the loop that moves due posts into the queue.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// Time between two rounds, at most (`DISPATCH_INTERVAL_MS`, default 500).
    pub interval: Duration,
    /// Posts due this soon are pushed ahead of their time, due at their time
    /// (`DISPATCH_LOOKAHEAD_MS`, default 5000). The api pushes what it schedules inside it.
    pub lookahead: Duration,
    /// The most jobs the queue may hold at once, scheduled plus due (`DISPATCH_QUEUE_CAP`,
    /// default 2000; at most 7000, below apalis-redis's `unpack` limit of about 8,000).
    pub queue_cap: u64,
    /// A post whose job was pushed this long ago and that is still waiting lost its job (Redis
    /// flushed or restarted empty) and is pushed again (`DISPATCH_REDISPATCH_AFTER_SECS`, default
    /// 60).
    pub redispatch_after: Duration,
}

/// Everything Herald reads from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Rows and queue.
    pub storage: Storage,
    /// HTTP port (`PORT`, default 8080).
    pub port: u16,
    /// Public base URL of the api; redirect URIs are built from it (`BACKEND_URL`).
    pub backend_url: Url,
    /// The first of `frontend_origins` (the default of `FRONTEND_URL`).
    pub frontend_origin: String,
    /// The frontend's origins (`FRONTEND_ORIGIN`, comma-separated): the ones the OAuth popup page
    /// posts its result to and the API answers CORS for.
    pub frontend_origins: Vec<String>,
    /// Where the popup goes when it has no opener (`FRONTEND_URL`).
    pub frontend_url: Url,
    /// HS256 key of bearer tokens (`AUTH_JWT_SECRET`).
    pub jwt_secret: Secret,
    /// Required `iss` claim, when set (`AUTH_JWT_ISSUER`).
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim, when set (`AUTH_JWT_AUDIENCE`).
    pub jwt_audience: Option<String>,
    /// Key that signs OAuth state (`OAUTH_STATE_SECRET`).
    pub oauth_state_secret: Secret,
    /// Fernet keys, first encrypts, all decrypt (`SOCIAL_TOKEN_ENCRYPTION_KEY`).
    pub token_encryption_keys: Secret,
    /// Per-platform credentials and endpoints.
    pub platforms: HashMap<Platform, PlatformSettings>,
    /// Meta Graph API version for Facebook and Instagram (`GRAPH_API_VERSION`, default `v26.0`).
    pub graph_api_version: String,
    /// LinkedIn API version, sent as `LinkedIn-Version` (`LINKEDIN_API_VERSION`, default `202603`).
    pub linkedin_api_version: String,
    /// How often the worker looks for tokens to refresh (`REFRESH_SWEEP_INTERVAL_SECS`, default 300).
    pub refresh_sweep_interval: Duration,
    /// Timeout of one call to a platform (`PLATFORM_HTTP_TIMEOUT_SECS`, default 30).
    pub platform_timeout: Duration,
    /// Log format (`LOG_FORMAT`: `text` or `json`).
    pub log_format: LogFormat,
    /// Worker tuning.
    pub worker: WorkerSettings,
    /// Media fetching and multi-step publishing.
    pub media: MediaSettings,
    /// Webhook deliveries (DESIGN §14).
    pub webhooks: WebhookSettings,
    /// Where Facebook Page videos are posted (`FACEBOOK_VIDEO_API_BASE`, default
    /// `https://graph-video.facebook.com`), without a trailing slash.
    pub facebook_video_api_base: String,
    /// URL prefixes verified for TikTok's `PULL_FROM_URL` in the developer portal
    /// (`TIKTOK_VERIFIED_URL_PREFIXES`, comma-separated): videos under one are pulled by TikTok,
    /// others uploaded in chunks. Photo posts are always pulled, so need one.
    pub tiktok_verified_prefixes: Vec<String>,
    /// The API's rate limits.
    pub rate_limits: RateLimitSettings,
}

/// The API's rate limits (token buckets; 0 per minute turns one off).
#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    /// Requests per user (or, without a valid token, per client address) per minute
    /// (`RATE_LIMIT_PER_MIN`, default 600).
    pub per_user: Quota,
    /// `POST /api/v1/auth/social/initiate` per user per minute, on top of the above
    /// (`RATE_LIMIT_INITIATE_PER_MIN`, default 10; a burst of as many).
    pub initiate: Quota,
    /// The unauthenticated OAuth callback per client address per minute
    /// (`RATE_LIMIT_CALLBACK_PER_MIN`, default 30; a burst of as many).
    pub callback: Quota,
    /// Take the client address from the right-most `X-Forwarded-For` entry, the one the load
    /// balancer in front (Cloud Run's) added (`TRUST_FORWARDED_FOR`, default false: the peer).
    pub trust_forwarded_for: bool,
}

/// How webhooks are delivered.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// How long an endpoint has to answer (`WEBHOOK_TIMEOUT_SECS`, default 15).
    pub timeout: Duration,
    /// Multiplies every delay of the retry schedule (`WEBHOOK_RETRY_SCALE`, default 1; tests
    /// compress the day-long schedule with e.g. 0.0001).
    pub retry_scale: f64,
    /// An endpoint whose deliveries have all failed for this long is disabled
    /// (`WEBHOOK_DISABLE_AFTER_SECS`, default 5 days).
    pub disable_after: Duration,
    /// How long the secret before a rotation still signs (`WEBHOOK_ROTATION_OVERLAP_SECS`,
    /// default 24 h).
    pub rotation_overlap: Duration,
    /// Finished deliveries (succeeded or dead), their attempts and their events are deleted this
    /// long after they finished (`WEBHOOK_RETENTION_DAYS`, default 30).
    pub retention: Duration,
}

/// Media fetching and the waits of multi-step publishing (DESIGN §10, §12).
#[derive(Debug, Clone)]
pub struct MediaSettings {
    /// Lifts the address rules: plain `http` and private addresses allowed (`MEDIA_ALLOW_PRIVATE`,
    /// tests and local use only).
    pub allow_private: bool,
    /// Total time of one media fetch (`MEDIA_FETCH_TIMEOUT_SECS`, default 600).
    pub fetch_timeout: Duration,
    /// The longest a post waits on a platform's processing before it fails, or, past the point
    /// of no return, becomes `unknown` (`PUBLISH_MAX_WAIT_SECS`, default 3600).
    pub max_wait: Duration,
    /// X posts per account per 15 minutes, kept by every worker together
    /// (`X_POSTS_PER_15_MIN`, default 100, X's published limit; 0: not kept).
    pub x_posts_per_15_min: u32,
    /// TikTok post inits per account per minute (`TIKTOK_INITS_PER_MIN`, default 6; 0: not kept).
    pub tiktok_inits_per_min: u32,
}

/// Reads variables from a source; the process environment in production.
trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

struct Env<'a>(&'a HashMap<String, String>);

impl Source for Env<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }
}

const GENERATED_SECRETS: [&str; 3] = ["AUTH_JWT_SECRET", "OAUTH_STATE_SECRET", "SOCIAL_TOKEN_ENCRYPTION_KEY"];

/// The file the embedded default keeps its generated secrets in.
pub const SECRETS_FILE: &str = ".herald-secrets.env";

impl Settings {
    /// Reads the process environment. With no `DATABASE_URL`, secrets that are missing are
    /// generated once into [`SECRETS_FILE`] in the working directory (with a warning on stderr)
    /// so the embedded default starts with no setup.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut vars: HashMap<String, String> = std::env::vars().collect();
        let embedded = vars.get("DATABASE_URL").is_none_or(|v| v.trim().is_empty());
        if embedded {
            load_or_generate_secrets(&mut vars, std::path::Path::new(SECRETS_FILE))?;
        }
        Self::from_map(&vars)
    }

    /// Parses settings from a map of variables (used by `from_env` and by tests).
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let env = Env(vars);
        let port = parse_or(&env, "PORT", 8080u16)?;
        let storage = match env.get("DATABASE_URL") {
            Some(database_url) => Storage::External {
                database_url: Secret::new(database_url),
                redis_url: Secret::new(required(&env, "REDIS_URL")?),
                queue_prefix: env.get("HERALD_QUEUE_PREFIX").unwrap_or_else(|| "herald".into()),
                max_connections: parse_or(&env, "DATABASE_MAX_CONNECTIONS", 20u32)?.max(2),
                timeout: Duration::from_secs(parse_or(&env, "DATABASE_TIMEOUT_SECS", 3u64)?.max(1)),
            },
            None => Storage::Embedded { path: PathBuf::from("herald.db") },
        };
        let backend_url = match (&storage, env.get("BACKEND_URL")) {
            (_, Some(v)) => parse_url("BACKEND_URL", &v)?,
            (Storage::Embedded { .. }, None) => parse_url("BACKEND_URL", &format!("http://localhost:{port}"))?,
            (Storage::External { .. }, None) => return Err(ConfigError::Missing("BACKEND_URL".into())),
        };
        let backend_origin = backend_url.origin().ascii_serialization();
        let frontend_origins = match env.get("FRONTEND_ORIGIN") {
            Some(v) => {
                let mut origins = Vec::new();
                for item in v.split(',').map(str::trim).filter(|item| !item.is_empty()) {
                    let url = parse_url("FRONTEND_ORIGIN", item)?;
                    let origin = url.origin().ascii_serialization();
                    if origin == "null" || url.path() != "/" {
                        return malformed(
                            "FRONTEND_ORIGIN",
                            "must be origins such as https://app.example.com, separated by commas",
                        );
                    }
                    origins.push(origin);
                }
                if origins.is_empty() {
                    return malformed("FRONTEND_ORIGIN", "names no origin");
                }
                origins
            }
            None => vec![backend_origin],
        };
        let frontend_origin = frontend_origins[0].clone();
        let frontend_url = match env.get("FRONTEND_URL") {
            Some(v) => parse_url("FRONTEND_URL", &v)?,
            None => parse_url("FRONTEND_URL", &format!("{frontend_origin}/"))?,
        };
        let token_encryption_keys = Secret::new(required(&env, "SOCIAL_TOKEN_ENCRYPTION_KEY")?);
        crate::crypto::TokenCipher::new(&token_encryption_keys)
            .map_err(|reason| ConfigError::Malformed { name: "SOCIAL_TOKEN_ENCRYPTION_KEY".into(), reason })?;
        let jwt_secret = Secret::new(required(&env, "AUTH_JWT_SECRET")?);
        if jwt_secret.expose().len() < 32 {
            return malformed("AUTH_JWT_SECRET", "must be at least 32 characters");
        }
        let oauth_state_secret = Secret::new(required(&env, "OAUTH_STATE_SECRET")?);
        if oauth_state_secret.expose().len() < 32 {
            return malformed("OAUTH_STATE_SECRET", "must be at least 32 characters");
        }
        let log_format = match env.get("LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(_) => return malformed("LOG_FORMAT", "must be `text` or `json`"),
        };
        let graph_api_version = env.get("GRAPH_API_VERSION").unwrap_or_else(|| "v26.0".into());
        if !is_graph_version(&graph_api_version) {
            return malformed("GRAPH_API_VERSION", "must look like v26.0");
        }
        let linkedin_api_version = env.get("LINKEDIN_API_VERSION").unwrap_or_else(|| "202603".into());
        if linkedin_api_version.len() != 6 || !linkedin_api_version.chars().all(|c| c.is_ascii_digit()) {
            return malformed("LINKEDIN_API_VERSION", "must be YYYYMM, such as 202603");
        }
        let per_minute = |name: &str, default: u32| parse_or(&env, name, default);
        let rate_limits = RateLimitSettings {
            per_user: Quota {
                per_minute: per_minute("RATE_LIMIT_PER_MIN", 600)?,
                burst: per_minute("RATE_LIMIT_BURST", 100)?.max(1),
            },
            initiate: same_burst(per_minute("RATE_LIMIT_INITIATE_PER_MIN", 10)?),
            callback: same_burst(per_minute("RATE_LIMIT_CALLBACK_PER_MIN", 30)?),
            trust_forwarded_for: parse_or(&env, "TRUST_FORWARDED_FOR", false)?,
        };
        let mut platforms = HashMap::new();
        for platform in Platform::ALL {
            platforms.insert(platform, platform_settings(&env, platform, &graph_api_version)?);
        }
        Ok(Self {
            storage,
            port,
            backend_url,
            frontend_origin,
            frontend_origins,
            frontend_url,
            jwt_secret,
            jwt_issuer: env.get("AUTH_JWT_ISSUER"),
            jwt_audience: env.get("AUTH_JWT_AUDIENCE"),
            oauth_state_secret,
            token_encryption_keys,
            platforms,
            graph_api_version,
            linkedin_api_version,
            refresh_sweep_interval: Duration::from_secs(parse_or(&env, "REFRESH_SWEEP_INTERVAL_SECS", 300u64)?.max(1)),
            platform_timeout: Duration::from_secs(parse_or(&env, "PLATFORM_HTTP_TIMEOUT_SECS", 30u64)?),
            log_format,
            worker: WorkerSettings {
                poll_interval: Duration::from_millis(parse_or(&env, "WORKER_POLL_INTERVAL_MS", 500u64)?),
                concurrency: parse_or(&env, "WORKER_CONCURRENCY", 32usize)?.max(1),
                max_attempts: parse_or(&env, "PUBLISH_MAX_ATTEMPTS", 3u32)?.max(1),
                retry_base: Duration::from_secs(parse_or(&env, "PUBLISH_RETRY_BASE_SECS", 30u64)?),
                stale_after: Duration::from_secs(parse_or(&env, "PUBLISH_STALE_AFTER_SECS", 300u64)?.max(1)),
                dispatch: DispatchSettings {
                    interval: Duration::from_millis(parse_or(&env, "DISPATCH_INTERVAL_MS", 500u64)?.clamp(10, 1000)),
                    lookahead: Duration::from_millis(parse_or(&env, "DISPATCH_LOOKAHEAD_MS", 5000u64)?.min(60_000)),
                    queue_cap: parse_or(&env, "DISPATCH_QUEUE_CAP", 2000u64)?.clamp(1, 7000),
                    redispatch_after: Duration::from_secs(
                        parse_or(&env, "DISPATCH_REDISPATCH_AFTER_SECS", 60u64)?.max(1),
                    ),
                },
                shutdown_grace: Duration::from_secs(parse_or(&env, "WORKER_SHUTDOWN_GRACE_SECS", 8u64)?),
                no_worker_after: Duration::from_secs(parse_or(&env, "READYZ_NO_WORKER_SECS", 120u64)?.max(1)),
            },
            facebook_video_api_base: env
                .get("FACEBOOK_VIDEO_API_BASE")
                .map(|v| parse_url("FACEBOOK_VIDEO_API_BASE", &v).map(|u| u.as_str().trim_end_matches('/').to_owned()))
                .transpose()?
                .unwrap_or_else(|| "https://graph-video.facebook.com".into()),
            tiktok_verified_prefixes: env
                .get("TIKTOK_VERIFIED_URL_PREFIXES")
                .map(|v| v.split(',').map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect())
                .unwrap_or_default(),
            rate_limits,
            media: MediaSettings {
                allow_private: parse_or(&env, "MEDIA_ALLOW_PRIVATE", false)?,
                fetch_timeout: Duration::from_secs(parse_or(&env, "MEDIA_FETCH_TIMEOUT_SECS", 600u64)?.max(1)),
                max_wait: Duration::from_secs(parse_or(&env, "PUBLISH_MAX_WAIT_SECS", 3600u64)?.max(1)),
                x_posts_per_15_min: parse_or(&env, "X_POSTS_PER_15_MIN", 100u32)?,
                tiktok_inits_per_min: parse_or(&env, "TIKTOK_INITS_PER_MIN", 6u32)?,
            },
            webhooks: WebhookSettings {
                timeout: Duration::from_secs(parse_or(&env, "WEBHOOK_TIMEOUT_SECS", 15u64)?.max(1)),
                retry_scale: parse_or(&env, "WEBHOOK_RETRY_SCALE", 1.0f64)?.max(0.0),
                disable_after: Duration::from_secs(parse_or(&env, "WEBHOOK_DISABLE_AFTER_SECS", 5 * 86_400u64)?),
                retention: Duration::from_secs(86_400 * parse_or(&env, "WEBHOOK_RETENTION_DAYS", 30u64)?.max(1)),
                rotation_overlap: Duration::from_secs(parse_or(&env, "WEBHOOK_ROTATION_OVERLAP_SECS", 86_400u64)?),
            },
        })
    }

    /// The settings of one platform.
    pub fn platform(&self, platform: Platform) -> &PlatformSettings {
        &self.platforms[&platform]
    }

    /// The OAuth redirect URI of a platform: `{BACKEND_URL}/api/v1/auth/social/callback/{platform}`.
    pub fn redirect_uri(&self, platform: Platform) -> String {
        format!("{}/api/v1/auth/social/callback/{}", self.backend_url.as_str().trim_end_matches('/'), platform.as_str())
    }
}

/// Platform defaults: the production endpoints (PLATFORMS.md §0).
fn is_graph_version(v: &str) -> bool {
    v.strip_prefix('v')
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(major, minor)| !major.is_empty() && major.chars().all(|c| c.is_ascii_digit()) && minor == "0")
}

fn platform_settings(env: &Env<'_>, platform: Platform, graph: &str) -> Result<PlatformSettings, ConfigError> {
    let facebook_auth = format!("https://www.facebook.com/{graph}/dialog/oauth");
    let facebook_token = format!("https://graph.facebook.com/{graph}/oauth/access_token");
    let (prefix, id_var, secret_var, auth, token, api) = match platform {
        Platform::Linkedin => (
            "LINKEDIN",
            "LINKEDIN_CLIENT_ID",
            "LINKEDIN_CLIENT_SECRET",
            "https://www.linkedin.com/oauth/v2/authorization",
            "https://www.linkedin.com/oauth/v2/accessToken",
            "https://api.linkedin.com",
        ),
        Platform::Twitter => (
            "TWITTER",
            "TWITTER_CLIENT_ID",
            "TWITTER_CLIENT_SECRET",
            "https://x.com/i/oauth2/authorize",
            "https://api.x.com/2/oauth2/token",
            "https://api.x.com",
        ),
        Platform::Instagram => (
            "INSTAGRAM",
            "INSTAGRAM_CLIENT_ID",
            "INSTAGRAM_CLIENT_SECRET",
            "https://www.instagram.com/oauth/authorize",
            "https://api.instagram.com/oauth/access_token",
            "https://graph.instagram.com",
        ),
        Platform::Facebook => (
            "FACEBOOK",
            "FACEBOOK_APP_ID",
            "FACEBOOK_APP_SECRET",
            facebook_auth.as_str(),
            facebook_token.as_str(),
            "https://graph.facebook.com",
        ),
        Platform::Tiktok => (
            "TIKTOK",
            "TIKTOK_CLIENT_ID",
            "TIKTOK_CLIENT_SECRET",
            "https://www.tiktok.com/v2/auth/authorize/",
            "https://open.tiktokapis.com/v2/oauth/token/",
            "https://open.tiktokapis.com",
        ),
    };
    let url_var = |suffix: &str, default: &str| -> Result<Url, ConfigError> {
        let name = format!("{prefix}_{suffix}");
        parse_url(&name, &env.get(&name).unwrap_or_else(|| default.to_owned()))
    };
    Ok(PlatformSettings {
        client_id: env.get(id_var),
        client_secret: env.get(secret_var).map(Secret::new),
        auth_url: url_var("AUTH_URL", auth)?,
        token_url: url_var("TOKEN_URL", token)?,
        api_base: url_var("API_BASE", api)?,
    })
}

fn required(env: &Env<'_>, name: &str) -> Result<String, ConfigError> {
    env.get(name).ok_or_else(|| ConfigError::Missing(name.to_owned()))
}

fn malformed<T>(name: &str, reason: &str) -> Result<T, ConfigError> {
    Err(ConfigError::Malformed { name: name.to_owned(), reason: reason.to_owned() })
}

/// A bucket that holds a minute's worth of requests.
fn same_burst(per_minute: u32) -> Quota {
    Quota { per_minute, burst: per_minute.max(1) }
}

fn parse_or<T: std::str::FromStr>(env: &Env<'_>, name: &str, default: T) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    match env.get(name) {
        None => Ok(default),
        Some(v) => {
            v.parse().map_err(|e: T::Err| ConfigError::Malformed { name: name.to_owned(), reason: e.to_string() })
        }
    }
}

fn parse_url(name: &str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value).map_err(|e| ConfigError::Malformed { name: name.to_owned(), reason: e.to_string() })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return malformed(name, "must be an http(s) URL with a host");
    }
    Ok(url)
}

/// Fills missing embedded-default secrets from `path`, generating and appending any that the file
/// lacks too. Values already in the environment win.
fn load_or_generate_secrets(vars: &mut HashMap<String, String>, path: &std::path::Path) -> Result<(), ConfigError> {
    let file_err =
        |e: std::io::Error| ConfigError::SecretsFile { path: path.display().to_string(), reason: e.to_string() };
    let stored = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(file_err(e)),
    };
    for line in stored.lines() {
        if let Some((name, value)) = line.split_once('=') {
            vars.entry(name.trim().to_owned()).or_insert_with(|| value.trim().to_owned());
        }
    }
    let mut generated = String::new();
    for name in GENERATED_SECRETS {
        if vars.get(name).is_some_and(|v| !v.trim().is_empty()) {
            continue;
        }
        let value = if name == "SOCIAL_TOKEN_ENCRYPTION_KEY" {
            fernet::Fernet::generate_key()
        } else {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        };
        generated.push_str(&format!("{name}={value}\n"));
        vars.insert(name.to_owned(), value);
    }
    if !generated.is_empty() {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(file_err)?;
        file.write_all(generated.as_bytes()).map_err(file_err)?;
        eprintln!(
            "warning: generated development secrets into {} (embedded default only; set them in the environment for production)",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> HashMap<String, String> {
        [
            ("AUTH_JWT_SECRET", "a".repeat(40)),
            ("OAUTH_STATE_SECRET", "b".repeat(40)),
            ("SOCIAL_TOKEN_ENCRYPTION_KEY", fernet::Fernet::generate_key()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    #[test]
    fn embedded_defaults() {
        let settings = Settings::from_map(&base()).expect("settings");
        assert!(matches!(settings.storage, Storage::Embedded { .. }));
        assert_eq!(
            settings.redirect_uri(Platform::Twitter),
            "http://localhost:8080/api/v1/auth/social/callback/twitter"
        );
        assert_eq!(settings.frontend_origin, "http://localhost:8080");
    }

    #[test]
    fn missing_and_malformed_variables_are_named() {
        let mut vars = base();
        vars.remove("AUTH_JWT_SECRET");
        let err = Settings::from_map(&vars).expect_err("missing");
        assert_eq!(err.to_string(), "AUTH_JWT_SECRET is required but not set");

        let mut vars = base();
        vars.insert("SOCIAL_TOKEN_ENCRYPTION_KEY".into(), "not-a-key".into());
        let err = Settings::from_map(&vars).expect_err("malformed");
        assert!(err.to_string().starts_with("SOCIAL_TOKEN_ENCRYPTION_KEY is malformed"), "{err}");

        let mut vars = base();
        vars.insert("DATABASE_URL".into(), "postgres://localhost/x".into());
        vars.insert("BACKEND_URL".into(), "https://api.example.com".into());
        let err = Settings::from_map(&vars).expect_err("redis");
        assert_eq!(err.to_string(), "REDIS_URL is required but not set");

        let mut vars = base();
        vars.insert("TWITTER_API_BASE".into(), "ftp://x".into());
        let err = Settings::from_map(&vars).expect_err("url");
        assert!(err.to_string().starts_with("TWITTER_API_BASE is malformed"), "{err}");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let settings = Settings::from_map(&base()).expect("settings");
        let dump = format!("{settings:?}");
        assert!(!dump.contains(&"a".repeat(40)));
        assert!(!dump.contains(settings.token_encryption_keys.expose()));
    }
}
