//! Throw-away databases for tests: a fresh, uniquely named database on a real server
//! (or a SQLite file in a temp directory), dropped again when the [`ScratchDb`] is dropped.
//!
//! The servers come from `GLINT_TEST_POSTGRES_URL` (default
//! `postgres://root@127.0.0.1:5432/test`) and `GLINT_TEST_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306/test`): admin connections allowed to `CREATE DATABASE`.
//! An unreachable server is a test **failure** with a message naming the variable, never a skip.

use super::{Backend, driver_url, install_drivers};
use sqlx::{Connection, Executor};

/// Env var with the PostgreSQL admin URL.
pub const POSTGRES_ENV: &str = "GLINT_TEST_POSTGRES_URL";
/// Env var with the MySQL/MariaDB admin URL.
pub const MYSQL_ENV: &str = "GLINT_TEST_MYSQL_URL";
const POSTGRES_DEFAULT: &str = "postgres://root@127.0.0.1:5432/test";
const MYSQL_DEFAULT: &str = "mysql://root@127.0.0.1:3306/test";

/// A database that exists until this value is dropped.
#[derive(Debug)]
pub struct ScratchDb {
    backend: Backend,
    url: String,
    admin_url: Option<String>,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

/// The admin URL for a server backend (env var or default).
pub fn admin_url(backend: Backend) -> Option<String> {
    let (var, default) = match backend {
        Backend::Sqlite => return None,
        Backend::Postgres => (POSTGRES_ENV, POSTGRES_DEFAULT),
        Backend::Mysql => (MYSQL_ENV, MYSQL_DEFAULT),
    };
    Some(std::env::var(var).unwrap_or_else(|_| default.to_owned()))
}

/// `scheme://auth@host:port/<db>?query` with the database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}

async fn admin_execute(backend: Backend, admin: &str, statement: &str) -> Result<(), String> {
    install_drivers();
    let var = match backend {
        Backend::Postgres => POSTGRES_ENV,
        _ => MYSQL_ENV,
    };
    let mut conn = sqlx::AnyConnection::connect(&driver_url(admin))
        .await
        .map_err(|e| {
            format!(
                "cannot reach the {} test server at {admin} ({e}); start it or point {var} at one",
                backend.name()
            )
        })?;
    conn.execute(statement)
        .await
        .map_err(|e| format!("{statement}: {e}"))?;
    let _ = conn.close().await;
    Ok(())
}

impl ScratchDb {
    /// Creates a fresh database. Panics (failing the test) when the server is unreachable.
    pub async fn create(backend: Backend) -> ScratchDb {
        let name = format!(
            "glint_t_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        match admin_url(backend) {
            None => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
                ScratchDb {
                    backend,
                    url,
                    admin_url: None,
                    name,
                    _dir: Some(dir),
                }
            }
            Some(admin) => {
                if let Err(e) =
                    admin_execute(backend, &admin, &format!("CREATE DATABASE {name}")).await
                {
                    panic!("{e}");
                }
                ScratchDb {
                    backend,
                    url: with_database(&admin, &name),
                    admin_url: Some(admin),
                    name,
                    _dir: None,
                }
            }
        }
    }

    /// [`ScratchDb::create`] for callers without a tokio runtime.
    pub fn create_blocking(backend: Backend) -> ScratchDb {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(ScratchDb::create(backend))
    }

    /// The URL of the new database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let Some(admin) = self.admin_url.clone() else {
            return;
        };
        let backend = self.backend;
        let statement = match backend {
            Backend::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            _ => format!("DROP DATABASE IF EXISTS {}", self.name),
        };
        // A separate thread with its own runtime: Drop may run inside a tokio runtime.
        let done = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(admin_execute(backend, &admin, &statement)))
        })
        .join();
        if let Ok(Ok(Err(e))) = done {
            eprintln!("could not drop scratch database: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            with_database("postgres://root@127.0.0.1:5432/test", "x"),
            "postgres://root@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("mysql://root@h:3306/test?ssl-mode=disabled", "x"),
            "mysql://root@h:3306/x?ssl-mode=disabled"
        );
        assert_eq!(with_database("mysql://root@h", "x"), "mysql://root@h/x");
    }
}
