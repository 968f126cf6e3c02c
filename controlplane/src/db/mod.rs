//! The metadata database: a sqlx SQLite pool, migrations, and the image queries.
//!
//! - [`Db`] opens the pool (WAL, foreign keys, busy timeout) and applies the migrations in
//!   `controlplane/migrations/`.
//! - [`images`] holds every query on images, their properties and tags. Writes are either
//!   optimistic (`UPDATE … WHERE version = ?`, see [`images::update`]) or conditional on the
//!   current status (`UPDATE … WHERE status = 'queued'`), so concurrent writers never lose
//!   each other's changes.
//! - [`ImageRow`] is the row shape; it converts to [`crate::domain::Image`] at this edge.

pub mod images;
mod list;
mod row;

pub use list::{
    CmpOp, Column, Filter, ListQuery, Scope, SortDir, SortKey, SqlValue, VisibilityFilter,
};
pub use row::ImageRow;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::time::Duration;

/// A database failure. None of these is the client's fault unless `api` maps it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image with this id exists (or existed: deleted rows are kept).
    #[error("an image with this id already exists")]
    Duplicate,
    /// The driver failed.
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value cannot be understood.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A value does not fit the column.
    #[error("value out of range for column {0}")]
    OutOfRange(&'static str),
}

/// The connection pool.
#[derive(Debug, Clone)]
pub struct Db {
    pool: SqlitePool,
}

impl Db {
    /// Opens (creating if missing) the SQLite database at `url` with WAL and foreign keys.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, Error> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(options)
            .await?;
        Ok(Db { pool })
    }

    /// Applies pending migrations; returns how many were applied now.
    pub async fn migrate(&self) -> Result<usize, Error> {
        let migrator = sqlx::migrate!("./migrations");
        let before = self.applied_migrations().await.unwrap_or(0);
        migrator.run(&self.pool).await?;
        let after = self.applied_migrations().await?;
        Ok(after.saturating_sub(before))
    }

    async fn applied_migrations(&self) -> Result<usize, Error> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(n as usize)
    }

    /// `SELECT 1`: does the database answer?
    pub async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// The database URL with any password replaced by `***`, for logs.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            redact_url("sqlite:///x/glint.db?mode=rwc"),
            "sqlite:///x/glint.db?mode=rwc"
        );
    }

    #[tokio::test]
    async fn migrates_once_and_pings() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let db = Db::connect(&url, 2).await.unwrap();
        assert_eq!(db.migrate().await.unwrap(), 1);
        assert_eq!(db.migrate().await.unwrap(), 0);
        db.ping().await.unwrap();
    }
}
