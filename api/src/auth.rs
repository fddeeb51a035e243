//! The bearer-token security scheme: HS256 JWTs signed with `AUTH_JWT_SECRET`; the `sub` claim
//! is the user every query is scoped to.

use std::sync::Arc;

use poem::{Request, http::StatusCode};
use poem_openapi::{SecurityScheme, auth::Bearer};
use shared::App;

/// The authenticated user.
#[derive(Debug, Clone)]
pub struct User {
    /// The `sub` claim.
    pub id: String,
}

/// `Authorization: Bearer <JWT>` (HS256, `sub` = user id, `exp` required).
#[derive(Debug, SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check")]
pub struct BearerAuth(pub User);

async fn check(req: &Request, bearer: Bearer) -> poem::Result<User> {
    // The rate limiter verified this request's token already.
    if let Some(user) = req.extensions().get::<User>() {
        return Ok(user.clone());
    }
    let app = req.data::<Arc<App>>().ok_or_else(|| poem::Error::from_status(StatusCode::INTERNAL_SERVER_ERROR))?;
    match app.jwt.verify(&bearer.token) {
        Ok(id) => Ok(User { id }),
        Err(error) => {
            tracing::info!(reason = %error, "bearer token refused");
            Err(poem::Error::from_status(StatusCode::UNAUTHORIZED))
        }
    }
}
