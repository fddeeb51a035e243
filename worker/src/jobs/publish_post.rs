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
pub async fn handle(job: PublishPost, app: Data<Arc<App>>) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("publish_post", post.id = %job.post_id, job.v = job.v);
    shared::publish::run(&app, &job.post_id).instrument(span).await?;
    Ok(())
}
