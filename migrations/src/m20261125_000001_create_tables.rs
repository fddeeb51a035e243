//! The first schema: the three tables of the original design with the columns real use needs,
//! plus OAuth state and idempotency keys, and an index for every query the api and worker run.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SocialMediaConnections {
    Table,
    Id,
    UserId,
    Platform,
    PlatformUserId,
    PlatformUsername,
    AccessToken,
    RefreshToken,
    TokenExpiresAt,
    RefreshExpiresAt,
    Scopes,
    ConnectionStatus,
    LastError,
    PageId,
    PageName,
    PageAccessToken,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ScheduledPosts {
    Table,
    Id,
    GroupId,
    CampaignId,
    UserId,
    SocialConnectionId,
    Platform,
    PostContent,
    MediaUrls,
    Hashtags,
    ScheduledTime,
    Status,
    PlatformPostId,
    PostingError,
    ErrorKind,
    RetryCount,
    NextAttemptAt,
    PublishedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CampaignChatHistory {
    Table,
    Id,
    CampaignId,
    UserId,
    Role,
    Message,
    CreatedAt,
}

#[derive(DeriveIden)]
enum OauthStates {
    Table,
    StateHash,
    UserId,
    Platform,
    PkceVerifier,
    RedirectUri,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    UserId,
    Key,
    RequestHash,
    ResponseStatus,
    ResponseBody,
    CreatedAt,
}

fn timestamp(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).timestamp_with_time_zone().not_null().to_owned()
}

fn timestamp_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).timestamp_with_time_zone().null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use SocialMediaConnections as C;
        manager
            .create_table(
                Table::create()
                    .table(C::Table)
                    .col(ColumnDef::new(C::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(C::UserId).string().not_null())
                    .col(ColumnDef::new(C::Platform).string().not_null())
                    .col(ColumnDef::new(C::PlatformUserId).string().not_null())
                    .col(ColumnDef::new(C::PlatformUsername).string().null())
                    .col(ColumnDef::new(C::AccessToken).text().not_null())
                    .col(ColumnDef::new(C::RefreshToken).text().null())
                    .col(timestamp_null(C::TokenExpiresAt))
                    .col(timestamp_null(C::RefreshExpiresAt))
                    .col(ColumnDef::new(C::Scopes).json().not_null())
                    .col(ColumnDef::new(C::ConnectionStatus).string().not_null())
                    .col(ColumnDef::new(C::LastError).text().null())
                    .col(ColumnDef::new(C::PageId).string().null())
                    .col(ColumnDef::new(C::PageName).string().null())
                    .col(ColumnDef::new(C::PageAccessToken).text().null())
                    .col(timestamp(C::CreatedAt))
                    .col(timestamp(C::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_connections_user_platform")
                    .table(C::Table)
                    .col(C::UserId)
                    .col(C::Platform)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // The refresh sweep scans by status and expiry.
        manager
            .create_index(
                Index::create()
                    .name("ix_connections_status_expiry")
                    .table(C::Table)
                    .col(C::ConnectionStatus)
                    .col(C::TokenExpiresAt)
                    .to_owned(),
            )
            .await?;

        use ScheduledPosts as P;
        manager
            .create_table(
                Table::create()
                    .table(P::Table)
                    .col(ColumnDef::new(P::Id).string().not_null().primary_key())
                    .col(ColumnDef::new(P::GroupId).string().not_null())
                    .col(ColumnDef::new(P::CampaignId).string().not_null())
                    .col(ColumnDef::new(P::UserId).string().not_null())
                    .col(ColumnDef::new(P::SocialConnectionId).big_integer().null())
                    .col(ColumnDef::new(P::Platform).string().not_null())
                    .col(ColumnDef::new(P::PostContent).text().not_null())
                    .col(ColumnDef::new(P::MediaUrls).json().not_null())
                    .col(ColumnDef::new(P::Hashtags).json().not_null())
                    .col(timestamp(P::ScheduledTime))
                    .col(ColumnDef::new(P::Status).string().not_null())
                    .col(ColumnDef::new(P::PlatformPostId).string().null())
                    .col(ColumnDef::new(P::PostingError).text().null())
                    .col(ColumnDef::new(P::ErrorKind).string().null())
                    .col(ColumnDef::new(P::RetryCount).integer().not_null().default(0))
                    .col(timestamp_null(P::NextAttemptAt))
                    .col(timestamp_null(P::PublishedAt))
                    .col(timestamp(P::CreatedAt))
                    .col(timestamp(P::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_posts_connection")
                            .from(P::Table, P::SocialConnectionId)
                            .to(C::Table, C::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            ("ix_posts_user_campaign", vec![P::UserId, P::CampaignId, P::ScheduledTime]),
            ("ix_posts_status_time", vec![P::Status, P::ScheduledTime]),
            ("ix_posts_user_status", vec![P::UserId, P::Status]),
            ("ix_posts_connection_status", vec![P::SocialConnectionId, P::Status]),
            ("ix_posts_group", vec![P::GroupId]),
        ] {
            let mut index = Index::create().name(name).table(P::Table).to_owned();
            for col in cols {
                index.col(col);
            }
            manager.create_index(index).await?;
        }

        use CampaignChatHistory as H;
        manager
            .create_table(
                Table::create()
                    .table(H::Table)
                    .col(ColumnDef::new(H::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(H::CampaignId).string().not_null())
                    .col(ColumnDef::new(H::UserId).string().not_null())
                    .col(ColumnDef::new(H::Role).string().not_null())
                    .col(ColumnDef::new(H::Message).text().not_null())
                    .col(timestamp(H::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_chat_user_campaign")
                    .table(H::Table)
                    .col(H::UserId)
                    .col(H::CampaignId)
                    .col(H::CreatedAt)
                    .to_owned(),
            )
            .await?;

        use OauthStates as S;
        manager
            .create_table(
                Table::create()
                    .table(S::Table)
                    .col(ColumnDef::new(S::StateHash).string().not_null().primary_key())
                    .col(ColumnDef::new(S::UserId).string().not_null())
                    .col(ColumnDef::new(S::Platform).string().not_null())
                    .col(ColumnDef::new(S::PkceVerifier).text().null())
                    .col(ColumnDef::new(S::RedirectUri).text().not_null())
                    .col(timestamp(S::CreatedAt))
                    .col(timestamp(S::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(Index::create().name("ix_oauth_states_expires").table(S::Table).col(S::ExpiresAt).to_owned())
            .await?;

        use IdempotencyKeys as K;
        manager
            .create_table(
                Table::create()
                    .table(K::Table)
                    .col(ColumnDef::new(K::UserId).string().not_null())
                    .col(ColumnDef::new(K::Key).string().not_null())
                    .col(ColumnDef::new(K::RequestHash).string().not_null())
                    .col(ColumnDef::new(K::ResponseStatus).integer().not_null())
                    .col(ColumnDef::new(K::ResponseBody).text().not_null())
                    .col(timestamp(K::CreatedAt))
                    .primary_key(Index::create().col(K::UserId).col(K::Key))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(Index::create().name("ix_idempotency_created").table(K::Table).col(K::CreatedAt).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            IdempotencyKeys::Table.into_iden(),
            OauthStates::Table.into_iden(),
            CampaignChatHistory::Table.into_iden(),
            ScheduledPosts::Table.into_iden(),
            SocialMediaConnections::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
