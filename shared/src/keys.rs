//! Key rotation: re-encrypts every stored secret (platform tokens, webhook signing secrets, PKCE
//! verifiers of pending authorizations) with the first key of `SOCIAL_TOKEN_ENCRYPTION_KEY`
//! (`api rotate-keys`).
//!
//! Rows are handled in batches in primary-key order, each secret column re-encrypted only when
//! the first key did not make it, and each row written with one conditional `UPDATE` that
//! requires the ciphertexts it read: a token refreshed meanwhile (already under the first key) is
//! never overwritten with an older value. Every row is rewritten atomically, so the command can be
//! killed at any point and run again: finished rows are skipped, nothing is half-written.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr};

use crate::{
    App, Error,
    db::entities::{connection, oauth_state, webhook_endpoint},
};

/// What a rotation did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Rows examined.
    pub rows: u64,
    /// Secrets re-encrypted.
    pub reencrypted: u64,
    /// Secrets no configured key could decrypt (left unchanged).
    pub undecryptable: u64,
    /// Rows that changed while being rotated (already current; skipped).
    pub raced: u64,
}

/// Re-encrypts one optional ciphertext; counts what it did.
fn rotate_one(app: &App, value: &Option<String>, report: &mut Rotation) -> Option<Option<String>> {
    let ciphertext = value.as_deref()?;
    match app.cipher.reencrypt(ciphertext) {
        Ok(Some(fresh)) => {
            report.reencrypted += 1;
            Some(Some(fresh))
        }
        Ok(None) => None,
        Err(_) => {
            report.undecryptable += 1;
            None
        }
    }
}

/// Rotates every stored secret to the first key, `batch` rows at a time.
pub async fn rotate(app: &App, batch: u64) -> Result<Rotation, Error> {
    let mut report = Rotation::default();
    let mut after: i64 = i64::MIN;
    loop {
        let rows = connection::Entity::find()
            .filter(connection::Column::Id.gt(after))
            .order_by_asc(connection::Column::Id)
            .limit(batch)
            .all(&app.db)
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for row in rows {
            report.rows += 1;
            let access = rotate_one(app, &Some(row.access_token.clone()), &mut report);
            let refresh = rotate_one(app, &row.refresh_token, &mut report);
            let page = rotate_one(app, &row.page_access_token, &mut report);
            if access.is_none() && refresh.is_none() && page.is_none() {
                continue;
            }
            let mut update = connection::Entity::update_many()
                .filter(connection::Column::Id.eq(row.id))
                .filter(connection::Column::AccessToken.eq(row.access_token.clone()));
            // The row must still hold what was read, NULLs included.
            update = match &row.refresh_token {
                Some(v) => update.filter(connection::Column::RefreshToken.eq(v.clone())),
                None => update.filter(connection::Column::RefreshToken.is_null()),
            };
            update = match &row.page_access_token {
                Some(v) => update.filter(connection::Column::PageAccessToken.eq(v.clone())),
                None => update.filter(connection::Column::PageAccessToken.is_null()),
            };
            if let Some(Some(v)) = access {
                update = update.col_expr(connection::Column::AccessToken, Expr::value(v));
            }
            if let Some(v) = refresh {
                update = update.col_expr(connection::Column::RefreshToken, Expr::value(v));
            }
            if let Some(v) = page {
                update = update.col_expr(connection::Column::PageAccessToken, Expr::value(v));
            }
            if update.exec(&app.db).await?.rows_affected == 0 {
                report.raced += 1;
            }
        }
    }
    // Webhook signing secrets, and the one a secret rotation keeps signing with for a while.
    let mut after = String::new();
    loop {
        let rows = webhook_endpoint::Entity::find()
            .filter(webhook_endpoint::Column::Id.gt(after.clone()))
            .order_by_asc(webhook_endpoint::Column::Id)
            .limit(batch)
            .all(&app.db)
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.id.clone();
        for row in rows {
            report.rows += 1;
            let secret = rotate_one(app, &Some(row.secret.clone()), &mut report);
            let previous = rotate_one(app, &row.previous_secret, &mut report);
            if secret.is_none() && previous.is_none() {
                continue;
            }
            let mut update = webhook_endpoint::Entity::update_many()
                .filter(webhook_endpoint::Column::Id.eq(row.id.clone()))
                .filter(webhook_endpoint::Column::Secret.eq(row.secret.clone()));
            update = match &row.previous_secret {
                Some(v) => update.filter(webhook_endpoint::Column::PreviousSecret.eq(v.clone())),
                None => update.filter(webhook_endpoint::Column::PreviousSecret.is_null()),
            };
            if let Some(Some(v)) = secret {
                update = update.col_expr(webhook_endpoint::Column::Secret, Expr::value(v));
            }
            if let Some(v) = previous {
                update = update.col_expr(webhook_endpoint::Column::PreviousSecret, Expr::value(v));
            }
            if update.exec(&app.db).await?.rows_affected == 0 {
                report.raced += 1;
            }
        }
    }
    // Pending authorizations hold an encrypted PKCE verifier.
    let states =
        oauth_state::Entity::find().filter(oauth_state::Column::PkceVerifier.is_not_null()).all(&app.db).await?;
    for state in states {
        report.rows += 1;
        if let Some(Some(fresh)) = rotate_one(app, &state.pkce_verifier, &mut report) {
            oauth_state::Entity::update_many()
                .filter(oauth_state::Column::StateHash.eq(state.state_hash.clone()))
                .filter(oauth_state::Column::PkceVerifier.eq(state.pkce_verifier.clone()))
                .col_expr(oauth_state::Column::PkceVerifier, Expr::value(fresh))
                .exec(&app.db)
                .await?;
        }
    }
    Ok(report)
}
