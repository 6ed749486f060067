//! Storage: one repository layer over SQLite (the single-machine default, a file in the data dir) and
//! PostgreSQL (cluster mode), through `sqlx`'s `Any` driver so both run the same queries and the same
//! tests. Queries use `$N` placeholders, which both backends accept. Each backend has its own migration
//! folder (`migrations/sqlite`, `migrations/postgres`) so their SQL can differ where it must.

pub mod accounts;
pub mod audit;
pub mod conferences;
pub mod invites;
pub mod meetings;
pub mod principals;
pub mod reports;
pub mod sessions;
pub mod settings;
pub mod users;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

/// Which engine a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

/// An open, migrated database.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Open (creating a SQLite file if needed) and bring the schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        let pool = AnyPoolOptions::new()
            // SQLite serialises writers anyway; one connection avoids "database is locked".
            .max_connections(if backend == Backend::Sqlite { 1 } else { 8 })
            .connect(url)
            .await?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        Ok(Self { pool, backend })
    }

    /// The URL of a SQLite database file in `dir` (created on open).
    pub fn sqlite_url(dir: &std::path::Path) -> String {
        format!("sqlite://{}?mode=rwc", dir.join("convene.db").display())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
