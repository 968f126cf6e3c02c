//! `glint manage`: the operator commands `glance-manage` offers, against the database of a
//! configuration (the same `--config`, `--data-dir` and `--database-url` as `glint serve`).
//!
//! - `db sync`: applies the pending migrations (the service does it at start too).
//! - `db version`: the schema version (the newest migration applied) and any pending.
//! - `db purge --age-in-days N --max-rows M`: removes what images deleted more than N days
//!   ago leave in the database ([`crate::db::purge`]); image rows stay, so no id is ever
//!   taken twice.
//!
//! Each returns the text to print; a failure is an [`Error`] (exit status 1).

use crate::db::{self, Db};
use shared::config::Config;

/// A `glint manage` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `db sync`.
    DbSync,
    /// `db version`.
    DbVersion,
    /// `db purge`.
    DbPurge {
        /// Rows of images deleted more than this many days ago go.
        age_in_days: u32,
        /// At most this many rows per table (`None`: all).
        max_rows: Option<u64>,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed.
    #[error("{0}")]
    Db(#[from] db::Error),
    /// The command's arguments or input were refused.
    #[error("{0}")]
    Invalid(String),
    /// The async runtime could not start.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Runs `command` against the database of `config`; returns what to print.
pub fn run(config: &Config, command: Command) -> Result<String, Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if config.database.url.is_none() {
        // the embedded default: SQLite in the data directory, made on first use as by serve
        std::fs::create_dir_all(&config.data_dir)?;
    }
    rt.block_on(async {
        let db = Db::connect(&config.database_url(), 2).await?;
        let out = execute(&db, command).await;
        db.close().await;
        out
    })
}

async fn execute(db: &Db, command: Command) -> Result<String, Error> {
    match command {
        Command::DbSync => {
            let applied = db.migrate().await?;
            Ok(format!(
                "{applied} migrations applied; {}\n",
                version_line(db).await?
            ))
        }
        Command::DbVersion => Ok(format!("{}\n", version_line(db).await?)),
        Command::DbPurge {
            age_in_days,
            max_rows,
        } => {
            if version_line(db).await?.contains("pending") {
                return Err(Error::Invalid(
                    "the database schema is not current: run `glint manage db sync` first".into(),
                ));
            }
            let before = chrono::Utc::now() - chrono::Duration::days(i64::from(age_in_days));
            let p = db::purge::purge(db, before, max_rows).await?;
            Ok(format!(
                "purged rows of images deleted before {}: image_properties {}, image_tags {}, \
                 image_members {}, image_locations {}\n",
                before.format("%Y-%m-%dT%H:%M:%SZ"),
                p.properties,
                p.tags,
                p.members,
                p.locations
            ))
        }
    }
}

/// `<version> (<description>)`, and how many migrations are pending, if any.
async fn version_line(db: &Db) -> Result<String, Error> {
    let all = db.migrations().await?;
    let current = all.iter().rev().find(|m| m.applied);
    let pending = all.iter().filter(|m| !m.applied).count();
    let mut line = match current {
        Some(m) => format!("database schema version {} ({})", m.version, m.description),
        None => "database schema: empty (no migration applied)".to_owned(),
    };
    if pending > 0 {
        line.push_str(&format!(
            "; {pending} migrations pending (run `glint manage db sync`)"
        ));
    }
    Ok(line)
}
