//! Per-platform publishing options of a post (DESIGN §10, §13): an Instagram story instead of a
//! feed post, the TikTok privacy level and interaction settings. Expand only: the previous release
//! ignores the column.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ScheduledPosts {
    Table,
    PublishOptions,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let column = ColumnDef::new(ScheduledPosts::PublishOptions).json().null().to_owned();
        manager.alter_table(Table::alter().table(ScheduledPosts::Table).add_column(column).to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let table = Table::alter().table(ScheduledPosts::Table).drop_column(ScheduledPosts::PublishOptions).to_owned();
        manager.alter_table(table).await
    }
}
