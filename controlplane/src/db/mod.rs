//! The metadata database: SQLite, PostgreSQL or MySQL/MariaDB through sqlx's `Any` driver,
//! migrations per backend, and the queries.
//!
//! - The URL scheme picks the [`Backend`]: `sqlite:`, `postgres://`/`postgresql://`,
//!   `mysql://`/`mariadb://`. [`Db`] opens the pool (on SQLite: WAL, foreign keys, busy
//!   timeout) and applies the backend's migrations from `controlplane/migrations/<backend>/`
//!   (equivalent schemas: BIGINT microsecond timestamps, 0/1 booleans, byte-wise collation).
//! - Queries are written once, with `?` placeholders; [`Sql`] renumbers them to `$1…` on
//!   PostgreSQL and carries the bound values.
//! - [`images`] holds every query on images, their properties, tags and locations
//!   (`image_locations`); [`members`] the image members; [`jobs`] the data plane's work queue
//!   (a location enters `pending_delete` only together with its `delete_data` job, in one
//!   transaction). Writes are either optimistic (`UPDATE … WHERE version = ?`, see
//!   [`images::update`]) or a status move conditional on the current status
//!   (`… WHERE id = ? AND status = ?`, see [`images::apply_move`]; the domain decides the
//!   move), so concurrent writers never lose each other's changes — across processes too.
//! - [`metadefs`] holds the metadata definitions catalog (namespaces and their objects,
//!   properties, tags and resource type associations; one write function per operation).
//! - [`ImageRow`] is the row shape; it converts to [`crate::domain::Image`] at this edge.
//! - [`cache`] keeps images read recently, so hot reads skip the database (or most of it);
//!   every image write in [`images`] invalidates its entry.
//! - `scratch` creates and drops throw-away databases on a server; compiled only for tests
//!   (this crate's, or others' with the `test-util` feature).

pub mod cache;
pub mod cached;
pub mod images;
pub mod jobs;
mod list;
pub mod members;
pub mod metadefs;
pub mod purge;
mod row;
#[cfg(any(test, feature = "test-util"))]
pub mod scratch;
pub mod tasks;

pub use list::{
    CmpOp, Column, Filter, ListQuery, MemberStatusFilter, Scope, SortDir, SortKey, SqlValue,
    VisibilityFilter,
};
pub use row::ImageRow;

use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyPool, Executor, Row};
use std::time::Duration;

/// A database failure. None of these is the client's fault unless `api` maps it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A row with this key exists (for images: or existed; deleted rows are kept).
    #[error("a row with this key already exists")]
    Duplicate,
    /// The URL names no supported backend.
    #[error(
        "unsupported database URL {0:?}: use sqlite:, postgres://, postgresql://, mysql:// or mariadb://"
    )]
    UnsupportedUrl(String),
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
    /// An upload cannot commit: a delete of data at its location is queued or running
    /// ([`jobs::settle_commit`]).
    #[error("earlier data at this location is still being deleted")]
    CleanupPending,
}

/// One schema migration ([`Db::migrations`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Its version (the timestamp that orders them).
    pub version: i64,
    /// What it does (from its file name).
    pub description: String,
    /// Whether the database has it.
    pub applied: bool,
}

/// Which database server a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// SQLite (the default; a file in the data directory).
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
}

impl Backend {
    /// Every backend.
    pub const ALL: [Backend; 3] = [Backend::Sqlite, Backend::Postgres, Backend::Mysql];

    /// The backend a URL's scheme selects.
    pub fn from_url(url: &str) -> Option<Backend> {
        let scheme = url.split(':').next()?.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            "mysql" | "mariadb" => Some(Backend::Mysql),
            _ => None,
        }
    }

    /// A short name (`sqlite`, `postgres`, `mysql`).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Mysql => "mysql",
        }
    }
}

/// The URL sqlx understands (`mariadb://` becomes `mysql://`).
pub(crate) fn driver_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("mariadb") => {
            format!("mysql://{rest}")
        }
        _ => url.to_owned(),
    }
}

fn install_drivers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

/// The connection pool, the backend it talks to and the image cache.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    cache: std::sync::Arc<cache::ImageCache>,
    jobs_enqueued: std::sync::Arc<jobs::Enqueued>,
    pool_stats: std::sync::Arc<PoolStats>,
}

/// How the pool is doing, for `/metrics`: tasks waiting for a connection, and how long
/// taking one took (sqlx counts neither, so every query takes its connection through
/// [`Db::conn`] or [`Db::begin`]).
#[derive(Debug, Default)]
pub struct PoolStats {
    waiting: std::sync::atomic::AtomicI64,
    acquire: shared::metrics::LatencyHistogram,
}

impl PoolStats {
    /// Appends the waiters and most-connections (`max`) gauges and the acquire-time histogram.
    pub fn render(&self, out: &mut String, max: u32) {
        use shared::metrics as names;
        use std::fmt::Write;
        let waiting = self
            .waiting
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(0);
        let _ = writeln!(
            out,
            "# HELP {w} Tasks waiting for a database connection now.\n# TYPE {w} gauge\n{w} {waiting}",
            w = names::DB_POOL_WAITERS
        );
        let _ = writeln!(
            out,
            "# HELP {m} Most database connections the pool opens.\n# TYPE {m} gauge\n{m} {max}",
            m = names::DB_POOL_MAX_CONNECTIONS
        );
        self.acquire.render(
            out,
            names::DB_POOL_ACQUIRE_DURATION_SECONDS,
            "How long taking a database connection from the pool took.",
        );
    }
}

/// A waiter counted while it lives.
struct Waiting<'a>(&'a PoolStats, std::time::Instant);

impl<'a> Waiting<'a> {
    fn start(stats: &'a PoolStats) -> Self {
        stats
            .waiting
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Waiting(stats, std::time::Instant::now())
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0
            .waiting
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.0.acquire.record(self.1.elapsed());
    }
}

impl Db {
    /// Opens a pool on `url` with the default image cache (`auto`, 32 MiB). SQLite files are
    /// created if missing and use WAL and foreign keys; server databases must exist.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, Error> {
        let defaults = shared::config::Database::default();
        Db::connect_with(
            url,
            max_connections,
            defaults.image_cache,
            defaults.image_cache_bytes,
        )
        .await
    }

    /// Opens a pool on `url` with the given image cache mode and size.
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        cache_mode: shared::config::ImageCacheMode,
        cache_bytes: u64,
    ) -> Result<Db, Error> {
        let backend =
            Backend::from_url(url).ok_or_else(|| Error::UnsupportedUrl(url.to_owned()))?;
        install_drivers();
        let mut options = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30));
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                    )
                    .await?;
                    Ok(())
                })
            });
        }
        let mut url = driver_url(url);
        if backend == Backend::Sqlite && !url.contains("mode=") {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("mode=rwc");
        }
        let pool = options.connect(&url).await?;
        let coherence = cache::Coherence::resolve(cache_mode, backend);
        Ok(Db {
            pool,
            backend,
            cache: std::sync::Arc::new(cache::ImageCache::new(coherence, cache_bytes)),
            jobs_enqueued: Default::default(),
            pool_stats: Default::default(),
        })
    }

    /// The image cache.
    pub fn cache(&self) -> &cache::ImageCache {
        &self.cache
    }

    /// Jobs enqueued through this pool since start.
    pub fn jobs_enqueued(&self) -> &jobs::Enqueued {
        &self.jobs_enqueued
    }

    /// The backend of this pool.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn migrator(&self) -> sqlx::migrate::Migrator {
        match self.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
            Backend::Mysql => sqlx::migrate!("./migrations/mysql"),
        }
    }

    /// Applies the first `n` migrations only (to test a later one against older data).
    #[cfg(test)]
    pub(crate) async fn migrate_first(&self, n: usize) -> Result<(), Error> {
        let mut migrator = self.migrator();
        migrator.migrations = std::borrow::Cow::Owned(migrator.migrations[..n].to_vec());
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Applies pending migrations; returns how many were applied now.
    pub async fn migrate(&self) -> Result<usize, Error> {
        let migrator = self.migrator();
        let before = self.applied_migrations().await.unwrap_or(0);
        migrator.run(&self.pool).await?;
        let after = self.applied_migrations().await?;
        Ok(after.saturating_sub(before))
    }

    /// The schema's migrations, each with whether it is applied (oldest first); `glint manage
    /// db version` prints them. A database never migrated has none applied.
    pub async fn migrations(&self) -> Result<Vec<Migration>, Error> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await
                .unwrap_or_default();
        Ok(self
            .migrator()
            .iter()
            .map(|m| Migration {
                version: m.version,
                description: m.description.to_string(),
                applied: applied.contains(&m.version),
            })
            .collect())
    }

    async fn applied_migrations(&self) -> Result<usize, Error> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
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

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool's waiters and acquire times.
    pub fn pool_stats(&self) -> &PoolStats {
        &self.pool_stats
    }

    /// A connection of the pool, for one statement or a few (`&mut *db.conn().await?` as the
    /// executor); the wait is counted and timed.
    pub(crate) async fn conn(&self) -> Result<sqlx::pool::PoolConnection<Any>, Error> {
        let _waiting = Waiting::start(&self.pool_stats);
        Ok(self.pool.acquire().await?)
    }

    /// Starts a write transaction (on SQLite `BEGIN IMMEDIATE`: the write lock is taken up
    /// front, so two writers queue instead of failing on lock upgrade). The wait is counted
    /// and timed until the transaction began (on SQLite, waiting for the write lock too).
    pub(crate) async fn begin(&self) -> Result<sqlx::Transaction<'static, Any>, Error> {
        let _waiting = Waiting::start(&self.pool_stats);
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            _ => self.pool.begin().await?,
        })
    }

    /// A statement written with `?` placeholders, renumbered for this backend.
    pub(crate) fn sql(&self, text: &str) -> Sql {
        let mut sql = Sql::new(self.backend);
        sql.push(text);
        sql
    }
}

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    /// BIGINT (or NULL).
    Int(Option<i64>),
    /// Text (or NULL).
    Text(Option<String>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Arg {
        Arg::Int(v)
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Arg {
        Arg::Int(Some(i64::from(v)))
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(Some(v.to_owned()))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(Some(v))
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Arg {
        Arg::Text(Some(v.clone()))
    }
}
impl From<&Option<String>> for Arg {
    fn from(v: &Option<String>) -> Arg {
        Arg::Text(v.clone())
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Arg {
        Arg::Text(v)
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Arg {
        Arg::Text(v.map(str::to_owned))
    }
}

/// SQL text plus its bound values, with placeholders in the backend's syntax.
///
/// `push` appends text in which every `?` is a placeholder (renumbered `$n` on PostgreSQL);
/// `bind` appends one placeholder with its value; `arg` supplies the value of the next `?`
/// already pushed.
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    backend: Backend,
    text: String,
    placeholders: usize,
    args: Vec<Arg>,
}

impl Sql {
    pub(crate) fn new(backend: Backend) -> Sql {
        Sql {
            backend,
            text: String::new(),
            placeholders: 0,
            args: Vec::new(),
        }
    }

    fn placeholder(&mut self) {
        self.placeholders += 1;
        match self.backend {
            Backend::Postgres => {
                self.text.push('$');
                self.text.push_str(&self.placeholders.to_string());
            }
            Backend::Sqlite | Backend::Mysql => self.text.push('?'),
        }
    }

    /// Appends SQL; each `?` in it becomes a placeholder whose value is given with [`Sql::arg`].
    pub(crate) fn push(&mut self, text: &str) -> &mut Sql {
        let mut parts = text.split('?');
        if let Some(first) = parts.next() {
            self.text.push_str(first);
        }
        for part in parts {
            self.placeholder();
            self.text.push_str(part);
        }
        self
    }

    /// Appends a placeholder bound to `value`.
    pub(crate) fn bind(&mut self, value: impl Into<Arg>) -> &mut Sql {
        self.placeholder();
        self.args.push(value.into());
        self
    }

    /// Supplies the value of the next placeholder written by [`Sql::push`].
    pub(crate) fn arg(mut self, value: impl Into<Arg>) -> Sql {
        self.args.push(value.into());
        self
    }

    /// The bound values, in order.
    #[cfg(test)]
    pub(crate) fn args(&self) -> &[Arg] {
        &self.args
    }

    /// The SQL text as sent.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// The sqlx query with every value bound.
    pub(crate) fn query(&self) -> Query<'_, Any, AnyArguments<'_>> {
        debug_assert_eq!(
            self.placeholders,
            self.args.len(),
            "placeholders vs values in {}",
            self.text
        );
        let mut q = sqlx::query(&self.text);
        for a in &self.args {
            q = match a {
                Arg::Int(v) => q.bind(*v),
                Arg::Text(v) => q.bind(v.clone()),
            };
        }
        q
    }
}

/// Reads a text column (MySQL reports `TEXT` as a blob, so bytes are accepted too).
pub(crate) fn text(row: &AnyRow, col: &str) -> Result<Option<String>, Error> {
    match row.try_get::<Option<String>, _>(col) {
        Ok(v) => Ok(v),
        Err(_) => row
            .try_get::<Option<Vec<u8>>, _>(col)?
            .map(|b| String::from_utf8(b).map_err(|_| Error::Corrupt(format!("{col}: not UTF-8"))))
            .transpose(),
    }
}

/// Reads a non-null text column.
pub(crate) fn text_required(row: &AnyRow, col: &str) -> Result<String, Error> {
    text(row, col)?.ok_or_else(|| Error::Corrupt(format!("{col} is NULL")))
}

/// Reads an integer column.
pub(crate) fn int(row: &AnyRow, col: &str) -> Result<Option<i64>, Error> {
    Ok(row.try_get::<Option<i64>, _>(col)?)
}

/// Reads a non-null integer column.
pub(crate) fn int_required(row: &AnyRow, col: &str) -> Result<i64, Error> {
    int(row, col)?.ok_or_else(|| Error::Corrupt(format!("{col} is NULL")))
}

/// Whether an error is a unique-key violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
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
    use crate::db::scratch::ScratchDb;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            redact_url("sqlite:///x/glint.db?mode=rwc"),
            "sqlite:///x/glint.db?mode=rwc"
        );
    }

    #[test]
    fn backend_from_url() {
        for (url, want) in [
            ("sqlite:///x.db", Some(Backend::Sqlite)),
            ("sqlite::memory:", Some(Backend::Sqlite)),
            ("postgres://u@h/db", Some(Backend::Postgres)),
            ("postgresql://u@h/db", Some(Backend::Postgres)),
            ("mysql://root@h/db", Some(Backend::Mysql)),
            ("MariaDB://root@h/db", Some(Backend::Mysql)),
            ("oracle://x", None),
            ("", None),
        ] {
            assert_eq!(Backend::from_url(url), want, "{url}");
        }
        assert_eq!(driver_url("mariadb://r@h/d"), "mysql://r@h/d");
    }

    #[test]
    fn placeholders_per_backend() {
        let mut s = Sql::new(Backend::Postgres);
        s.push("a = ? AND b = ?").bind(1i64);
        let s = s.arg(2i64).arg(3i64);
        assert_eq!(s.text(), "a = $1 AND b = $2$3");
        let mut s = Sql::new(Backend::Mysql);
        s.push("a = ?").bind("x");
        assert_eq!(s.text(), "a = ??");
    }

    #[tokio::test]
    async fn migrates_once_and_pings_on_every_backend() {
        for backend in Backend::ALL {
            let scratch = ScratchDb::create(backend).await;
            let db = Db::connect(scratch.url(), 2).await.unwrap();
            assert_eq!(db.backend(), backend);
            assert_eq!(db.migrate().await.unwrap(), 9, "{backend:?}");
            assert_eq!(db.migrate().await.unwrap(), 0, "{backend:?}");
            db.ping().await.unwrap();
            db.close().await;
        }
    }

    #[tokio::test]
    async fn the_locations_migration_moves_every_location() {
        for backend in Backend::ALL {
            locations_migration(backend).await;
        }
    }

    /// Images written by the schema before `image_locations` keep their data: a live or
    /// pending_delete image's location becomes an active one in the `file` store, a deleted
    /// image's becomes history.
    async fn locations_migration(backend: Backend) {
        use crate::domain::LocationStatus;
        use shared::image::ImageId;
        let scratch = ScratchDb::create(backend).await;
        let db = Db::connect(scratch.url(), 2).await.unwrap();
        db.migrate_first(2).await.unwrap();
        let mut ids = Vec::new();
        for (status, location) in [
            ("active", Some("file:///d/a")),
            ("pending_delete", Some("file:///d/p")),
            ("deleted", Some("file:///d/x")),
            ("queued", None),
        ] {
            let id = ImageId::new_random();
            db.sql(
                "INSERT INTO images (id, status, visibility, location, created_at, updated_at, \
                 deleted_at) VALUES (?, ?, 'shared', ?, 1, 2, ?)",
            )
            .arg(id.to_string())
            .arg(status)
            .arg(location)
            .arg((status == "deleted").then_some(3i64))
            .query()
            .execute(db.pool())
            .await
            .unwrap();
            ids.push(id);
        }
        assert_eq!(db.migrate().await.unwrap(), 7, "{backend:?}");
        let want = [
            Some(LocationStatus::Active),
            Some(LocationStatus::Active),
            Some(LocationStatus::Deleted),
            None,
        ];
        for (id, want) in ids.iter().zip(want) {
            let img = images::get(&db, *id).await.unwrap().unwrap();
            assert_eq!(
                img.locations.first().map(|l| l.status),
                want,
                "{backend:?} {}",
                img.status
            );
            if let Some(l) = img.locations.first() {
                assert_eq!((l.store.as_str(), l.position), ("file", 0));
                assert!(l.url.starts_with("file:///d/"));
            }
        }
        let row = db
            .sql("SELECT deleted_at FROM image_locations WHERE image_id = ?")
            .arg(ids[2].to_string())
            .query()
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(int(&row, "deleted_at").unwrap(), Some(3));
        assert!(jobs::all(&db).await.unwrap().is_empty());
        db.close().await;
    }
}
