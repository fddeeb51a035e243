//! Dispatch and claims (DESIGN §11–§12): every post row says when it next needs a worker
//! (`due_at`), when a job was last pushed for it (`dispatched_at`), which attempt holds it
//! (`claim_token`, `claimed_at`) and the saved step of a multi-step publish (`publish_phase`,
//! `publish_state`). Expand only: the previous release ignores the new columns.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ScheduledPosts {
    Table,
    DueAt,
    DispatchedAt,
    ClaimToken,
    ClaimedAt,
    PublishPhase,
    PublishState,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use ScheduledPosts as P;
        // SQLite takes one column per ALTER TABLE.
        for column in [
            ColumnDef::new(P::DueAt).timestamp_with_time_zone().null().to_owned(),
            ColumnDef::new(P::DispatchedAt).timestamp_with_time_zone().null().to_owned(),
            ColumnDef::new(P::ClaimToken).string().null().to_owned(),
            ColumnDef::new(P::ClaimedAt).timestamp_with_time_zone().null().to_owned(),
            ColumnDef::new(P::PublishPhase).string().null().to_owned(),
            ColumnDef::new(P::PublishState).json().null().to_owned(),
        ] {
            manager.alter_table(Table::alter().table(P::Table).add_column(column).to_owned()).await?;
        }
        // Rows written by the previous release: waiting posts become due at their time; a post
        // left `publishing` is looked at once (its claim is as old as its last update), as one
        // that may have been sent, since that release did not say.
        let db = manager.get_connection();
        db.execute_unprepared(
            "UPDATE scheduled_posts SET due_at = CASE \
               WHEN status = 'pending' THEN scheduled_time \
               WHEN status = 'retrying' THEN COALESCE(next_attempt_at, scheduled_time) \
               WHEN status = 'publishing' THEN updated_at END, \
             claimed_at = CASE WHEN status = 'publishing' THEN updated_at END, \
             publish_phase = CASE WHEN status = 'publishing' THEN 'sending' END",
        )
        .await?;
        // The dispatcher's scan: only rows that still need a worker are in the index. The same
        // statement works on PostgreSQL and SQLite (sea-query has no partial-index builder).
        db.execute_unprepared("CREATE INDEX ix_posts_due ON scheduled_posts (due_at) WHERE due_at IS NOT NULL").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use ScheduledPosts as P;
        manager.drop_index(Index::drop().name("ix_posts_due").table(P::Table).to_owned()).await?;
        for column in [P::PublishState, P::PublishPhase, P::ClaimedAt, P::ClaimToken, P::DispatchedAt, P::DueAt] {
            manager.alter_table(Table::alter().table(P::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
