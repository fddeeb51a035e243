//! Webhooks (issue 11, DESIGN §14): the endpoints users register, the outbox of events written in
//! the same transaction as the change each reports, and one delivery per event and endpoint with
//! its attempts. Expand only: the previous release ignores these tables.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WebhookEndpoints {
    Table,
    Id,
    UserId,
    Url,
    Events,
    Secret,
    PreviousSecret,
    PreviousSecretUntil,
    DisabledAt,
    DisabledReason,
    FailingSince,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookEvents {
    Table,
    Id,
    UserId,
    EventType,
    Payload,
    CreatedAt,
    FannedOutAt,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    EndpointId,
    EventId,
    UserId,
    Status,
    Attempts,
    DueAt,
    DispatchedAt,
    LastStatusCode,
    LastError,
    LastLatencyMs,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookAttempts {
    Table,
    Id,
    DeliveryId,
    AttemptedAt,
    StatusCode,
    LatencyMs,
    Error,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let endpoints = Table::create()
            .table(WebhookEndpoints::Table)
            .if_not_exists()
            .col(ColumnDef::new(WebhookEndpoints::Id).string().not_null().primary_key())
            .col(ColumnDef::new(WebhookEndpoints::UserId).string().not_null())
            .col(ColumnDef::new(WebhookEndpoints::Url).string().not_null())
            .col(ColumnDef::new(WebhookEndpoints::Events).json().not_null())
            .col(ColumnDef::new(WebhookEndpoints::Secret).text().not_null())
            .col(ColumnDef::new(WebhookEndpoints::PreviousSecret).text().null())
            .col(ColumnDef::new(WebhookEndpoints::PreviousSecretUntil).timestamp_with_time_zone().null())
            .col(ColumnDef::new(WebhookEndpoints::DisabledAt).timestamp_with_time_zone().null())
            .col(ColumnDef::new(WebhookEndpoints::DisabledReason).text().null())
            .col(ColumnDef::new(WebhookEndpoints::FailingSince).timestamp_with_time_zone().null())
            .col(ColumnDef::new(WebhookEndpoints::CreatedAt).timestamp_with_time_zone().not_null())
            .col(ColumnDef::new(WebhookEndpoints::UpdatedAt).timestamp_with_time_zone().not_null())
            .to_owned();
        manager.create_table(endpoints).await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_endpoints_user")
                    .table(WebhookEndpoints::Table)
                    .col(WebhookEndpoints::UserId)
                    .to_owned(),
            )
            .await?;

        let events = Table::create()
            .table(WebhookEvents::Table)
            .if_not_exists()
            .col(ColumnDef::new(WebhookEvents::Id).string().not_null().primary_key())
            .col(ColumnDef::new(WebhookEvents::UserId).string().not_null())
            .col(ColumnDef::new(WebhookEvents::EventType).string().not_null())
            .col(ColumnDef::new(WebhookEvents::Payload).json().not_null())
            .col(ColumnDef::new(WebhookEvents::CreatedAt).timestamp_with_time_zone().not_null())
            .col(ColumnDef::new(WebhookEvents::FannedOutAt).timestamp_with_time_zone().null())
            .to_owned();
        manager.create_table(events).await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_events_unfanned")
                    .table(WebhookEvents::Table)
                    .col(WebhookEvents::FannedOutAt)
                    .col(WebhookEvents::CreatedAt)
                    .to_owned(),
            )
            .await?;

        let deliveries = Table::create()
            .table(WebhookDeliveries::Table)
            .if_not_exists()
            .col(ColumnDef::new(WebhookDeliveries::Id).string().not_null().primary_key())
            .col(ColumnDef::new(WebhookDeliveries::EndpointId).string().not_null())
            .col(ColumnDef::new(WebhookDeliveries::EventId).string().not_null())
            .col(ColumnDef::new(WebhookDeliveries::UserId).string().not_null())
            .col(ColumnDef::new(WebhookDeliveries::Status).string().not_null())
            .col(ColumnDef::new(WebhookDeliveries::Attempts).integer().not_null().default(0))
            .col(ColumnDef::new(WebhookDeliveries::DueAt).timestamp_with_time_zone().null())
            .col(ColumnDef::new(WebhookDeliveries::DispatchedAt).timestamp_with_time_zone().null())
            .col(ColumnDef::new(WebhookDeliveries::LastStatusCode).integer().null())
            .col(ColumnDef::new(WebhookDeliveries::LastError).text().null())
            .col(ColumnDef::new(WebhookDeliveries::LastLatencyMs).big_integer().null())
            .col(ColumnDef::new(WebhookDeliveries::CreatedAt).timestamp_with_time_zone().not_null())
            .col(ColumnDef::new(WebhookDeliveries::UpdatedAt).timestamp_with_time_zone().not_null())
            .to_owned();
        manager.create_table(deliveries).await?;
        for (name, columns) in [
            ("idx_webhook_deliveries_due", vec![WebhookDeliveries::DueAt]),
            ("idx_webhook_deliveries_endpoint", vec![WebhookDeliveries::EndpointId, WebhookDeliveries::CreatedAt]),
        ] {
            let mut index = Index::create().name(name).table(WebhookDeliveries::Table).to_owned();
            for column in columns {
                index.col(column);
            }
            manager.create_index(index).await?;
        }

        let attempts = Table::create()
            .table(WebhookAttempts::Table)
            .if_not_exists()
            .col(ColumnDef::new(WebhookAttempts::Id).big_integer().not_null().primary_key().auto_increment())
            .col(ColumnDef::new(WebhookAttempts::DeliveryId).string().not_null())
            .col(ColumnDef::new(WebhookAttempts::AttemptedAt).timestamp_with_time_zone().not_null())
            .col(ColumnDef::new(WebhookAttempts::StatusCode).integer().null())
            .col(ColumnDef::new(WebhookAttempts::LatencyMs).big_integer().not_null())
            .col(ColumnDef::new(WebhookAttempts::Error).text().null())
            .to_owned();
        manager.create_table(attempts).await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_attempts_delivery")
                    .table(WebhookAttempts::Table)
                    .col(WebhookAttempts::DeliveryId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(WebhookAttempts::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(WebhookDeliveries::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(WebhookEvents::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(WebhookEndpoints::Table).to_owned()).await
    }
}
