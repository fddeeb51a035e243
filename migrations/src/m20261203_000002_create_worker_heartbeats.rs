//! Worker heartbeats (issue 10): one row per running worker process, refreshed every few seconds,
//! so the api's `/readyz` and the metrics can say how many workers are alive without asking the
//! queue (the embedded default has no Redis). Expand only: the previous release ignores the table.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WorkerHeartbeats {
    Table,
    Id,
    Host,
    StartedAt,
    SeenAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let table = Table::create()
            .table(WorkerHeartbeats::Table)
            .if_not_exists()
            .col(ColumnDef::new(WorkerHeartbeats::Id).string().not_null().primary_key())
            .col(ColumnDef::new(WorkerHeartbeats::Host).string().not_null())
            .col(ColumnDef::new(WorkerHeartbeats::StartedAt).timestamp_with_time_zone().not_null())
            .col(ColumnDef::new(WorkerHeartbeats::SeenAt).timestamp_with_time_zone().not_null())
            .to_owned();
        manager.create_table(table).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(WorkerHeartbeats::Table).to_owned()).await
    }
}
