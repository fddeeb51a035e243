//! Herald's shared library: configuration, domain types, database access, crypto, platform
//! clients, the job queue and the services the api and the worker call.
//!
//! The api and worker crates are thin layers over this one: they parse requests or dequeue jobs,
//! make one call in here, and translate the result.

pub mod app;
pub mod config;
pub mod crypto;
pub mod db;
pub mod dispatch;
pub mod domain;
pub mod error;
pub mod idempotency;
pub mod jobs;
pub mod keys;
pub mod layout;
pub mod locks;
pub mod media;
pub mod ops;
pub mod platforms;
pub mod ratelimit;
pub mod telemetry;

pub use app::App;
pub use error::Error;
pub mod chat;
pub mod connect;
pub mod posts;
pub mod publish;
pub mod tokens;
pub mod webhooks;
