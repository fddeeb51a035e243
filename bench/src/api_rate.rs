//! The API scheduling rate: how many posts per second `POST /api/v1/posts/schedule` accepts.
//!
//! The real `api serve` runs on a fresh database whose users are already connected to X; the
//! bench posts the same N posts as the herd, round-robin over the users, 32 requests in flight,
//! each due far in the future so no worker is involved. It bounds how fast a frontend can put a
//! herd in place, and (with `--via-api`) how far ahead the herd's due time must be chosen.

use chrono::Utc;

use crate::{
    harness::Harness,
    schedule::{self, Item, Scheduled},
};

/// Requests in flight.
pub const IN_FLIGHT: usize = 32;

/// What the measurement found.
#[derive(Debug, Clone)]
pub enum ApiRate {
    /// Measured.
    Measured(Scheduled),
    /// Not measured, and why.
    Skipped(String),
}

impl ApiRate {
    /// Accepted posts per second, if measured.
    pub fn rate(&self) -> Option<f64> {
        match self {
            Self::Measured(scheduled) if scheduled.accepted > 0 => Some(scheduled.rate()),
            _ => None,
        }
    }
}

/// Measures the rate; a failure becomes a skipped measurement with the reason.
pub async fn run(harness: &Harness) -> ApiRate {
    let options = &harness.options;
    if options.skip_api {
        return ApiRate::Skipped("--skip-api".into());
    }
    eprintln!("herd: api scheduling rate: {} posts, {IN_FLIGHT} in flight", options.posts);
    let mut stage = match harness.stage().await {
        Ok(stage) => stage,
        Err(error) => return ApiRate::Skipped(format!("setup failed: {error:#}")),
    };
    let result = async {
        stage.db.connect_users(options.users, &harness.cipher).await?;
        let client = schedule::start_api(harness, &mut stage, options.users, "api-rate").await?;
        let at = Utc::now() + chrono::Duration::days(30);
        let items = (1..=options.posts)
            .map(|n| Item { user: ((n - 1) % options.users) as usize, content: format!("bench post {n}"), at })
            .collect();
        anyhow::Ok(client.schedule_all(items, IN_FLIGHT).await)
    }
    .await;
    let api_log = stage.api.as_ref().map(|api| api.log().to_owned());
    stage.teardown(harness).await;
    match result {
        Ok(scheduled) => {
            if let (Some(failure), Some(log)) = (&scheduled.first_failure, api_log) {
                eprintln!(
                    "herd: api scheduling: {} failed, first: {failure} (api log: {})",
                    scheduled.failed,
                    log.display()
                );
            }
            ApiRate::Measured(scheduled)
        }
        Err(error) => ApiRate::Skipped(format!("failed: {error:#}")),
    }
}
