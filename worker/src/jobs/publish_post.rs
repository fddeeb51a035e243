//! `PublishPost`: one publish attempt for one post, through [`shared::publish`].
//!
//! The job is thin: the post row decides everything, and the publishing service records every
//! decision on it. Retries are Herald's (a `retrying` row that the dispatcher pushes again when it
//! is due), never apalis's blind re-runs, so the handler acknowledges every job it has decided
//! about and hands apalis an error only when the database could not be reached.

use std::sync::Arc;

use apalis::prelude::{BoxDynError, Data};
use shared::{App, jobs::PublishPost};
use tracing::Instrument;

/// The apalis handler.
///
/// The attempt runs in a task of its own, which the handler awaits: when apalis ends the consumer
/// on a backend error (Redis went away), it drops the handler futures it was polling, and an
/// attempt dropped mid-way would leave its post claimed until the claim goes stale (minutes, then
/// `unknown` if it had sent). Detached, the attempt finishes and records its outcome; the job apalis
/// lost track of is re-run later and finds the post already decided. At the end of a shutdown grace
/// period the process exits, and the stale-claim rules resolve what was still running.
pub async fn handle(job: PublishPost, app: Data<Arc<App>>) -> Result<(), BoxDynError> {
    let app: Arc<App> = Arc::clone(&app);
    if shared::webhooks::is_delivery(&job.post_id) {
        return deliver_webhook(app, job).await;
    }
    let span = tracing::info_span!("publish_post", post.id = %job.post_id, job.v = job.v);
    let attempt = tokio::spawn(async move { shared::publish::run(&app, &job.post_id).await }.instrument(span));
    attempt.await??;
    Ok(())
}

/// A webhook delivery travels as a publish job whose id is the delivery's (`msg_...`): one queue,
/// one cap, one consumer, and a previous release that finds no such post drops the job (the
/// dispatcher pushes it again later). Detached for the same reason as an attempt.
async fn deliver_webhook(app: Arc<App>, job: PublishPost) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("deliver_webhook", delivery.id = %job.post_id);
    let attempt = tokio::spawn(async move { shared::webhooks::deliver(&app, &job.post_id).await }.instrument(span));
    attempt.await??;
    Ok(())
}
