//! Herald's database schema as an ordered list of sea-orm migrations.
//!
//! Every migration runs on PostgreSQL (production) and SQLite (the embedded default). A migration
//! is never edited once it has landed; schema changes are new files that expand first and contract
//! in a later release, so each one works with the code of the release before it. This crate does
//! not import `shared`: entities describe the schema as the code sees it today, migrations as it
//! was at each step.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_tables;
mod m20261202_000001_add_dispatch_columns;
mod m20261203_000001_add_publish_options;
mod m20261203_000002_create_worker_heartbeats;
mod m20261203_000003_create_webhooks;

/// The migrator used by `api migrate`, the embedded default and the test harness.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_tables::Migration),
            Box::new(m20261202_000001_add_dispatch_columns::Migration),
            Box::new(m20261203_000001_add_publish_options::Migration),
            Box::new(m20261203_000002_create_worker_heartbeats::Migration),
            Box::new(m20261203_000003_create_webhooks::Migration),
        ]
    }
}
