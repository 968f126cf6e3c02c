//! `glint manage`: the operator commands `glance-manage` offers, against the database of a
//! configuration (the same `--config`, `--data-dir` and `--database-url` as `glint serve`).
//!
//! - `db sync`: applies the pending migrations (the service does it at start too).
//! - `db version`: the schema version (the newest migration applied) and any pending.
//! - `db purge --age-in-days N --max-rows M`: removes what images deleted more than N days
//!   ago leave in the database ([`crate::db::purge`]); image rows stay, so no id is ever
//!   taken twice.
//! - `metadefs load --path DIR [--merge] [--prefer-new] [--overwrite]`: Glance's metadata
//!   definition files (the `etc/glance/metadefs/*.json` of a Glance installation) into the
//!   catalog. Every file is read and checked before anything is written, then everything is
//!   written in one transaction ([`crate::db::metadefs::load`]): a bad file is named with its
//!   reason and the database is left as it was.
//! - `metadefs unload`: empties the catalog (the standard resource types stay).
//! - `metadefs export --path DIR`: one file per namespace, in the format `load` reads.
//!
//! Each returns the text to print; a failure is an [`Error`] (exit status 1).

use crate::db::{self, Db};
use crate::domain::metadef::NewNamespace;
use shared::config::Config;
use std::path::{Path, PathBuf};

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
    /// `metadefs load`.
    MetadefsLoad {
        /// A directory of `*.json` files, or one file.
        path: PathBuf,
        /// How existing namespaces are treated.
        options: db::metadefs::LoadOptions,
    },
    /// `metadefs unload`.
    MetadefsUnload,
    /// `metadefs export`.
    MetadefsExport {
        /// The directory to write to (made if missing).
        path: PathBuf,
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
        Command::MetadefsLoad { path, options } => {
            require_current(db).await?;
            let files = read_definitions(&path)?;
            let namespaces: Vec<NewNamespace> = files.into_iter().map(|(_, n)| n).collect();
            let r = db::metadefs::load(db, &namespaces, options, chrono::Utc::now()).await?;
            Ok(format!(
                "{} namespaces read: {} created, {} merged, {} skipped (already there; \
                 --merge adds to them); {} rows written\n",
                namespaces.len(),
                r.created.len(),
                r.merged.len(),
                r.skipped.len(),
                r.rows
            ))
        }
        Command::MetadefsUnload => {
            require_current(db).await?;
            let u = db::metadefs::unload(db).await?;
            Ok(format!(
                "{} namespaces removed with their content, {} resource types\n",
                u.namespaces, u.resource_types
            ))
        }
        Command::MetadefsExport { path } => {
            require_current(db).await?;
            let n = export(db, &path).await?;
            Ok(format!("{n} namespaces written to {}\n", path.display()))
        }
        Command::DbPurge {
            age_in_days,
            max_rows,
        } => {
            require_current(db).await?;
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

/// Refuses to work on a schema with pending migrations.
async fn require_current(db: &Db) -> Result<(), Error> {
    if db.migrations().await?.iter().any(|m| !m.applied) {
        return Err(Error::Invalid(
            "the database schema is not current: run `glint manage db sync` first".into(),
        ));
    }
    Ok(())
}

/// Reads and checks every definition file at `path` (a directory's `*.json`, in name order,
/// or one file): each must be JSON that `POST /v2/metadefs/namespaces` would accept, and no
/// two may define one namespace. The first bad one is the error, named.
pub fn read_definitions(path: &Path) -> Result<Vec<(PathBuf, NewNamespace)>, Error> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_path_buf()]
    };
    if files.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no *.json definition files",
            path.display()
        )));
    }
    let mut out: Vec<(PathBuf, NewNamespace)> = Vec::with_capacity(files.len());
    for file in files {
        let bad = |why: String| Error::Invalid(format!("{}: {why}", file.display()));
        let text = std::fs::read_to_string(&file).map_err(|e| bad(e.to_string()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let new = crate::domain::metadef::parse_new_namespace(&value)
            .map_err(|e| bad(format!("refused: {e}")))?;
        if let Some((other, _)) = out
            .iter()
            .find(|(_, n)| n.fields.namespace == new.fields.namespace)
        {
            return Err(bad(format!(
                "namespace {} is defined in {} too",
                new.fields.namespace,
                other.display()
            )));
        }
        out.push((file, new));
    }
    Ok(out)
}

/// Writes every namespace to `<dir>/<namespace>.json` (characters other than letters,
/// digits, `.`, `-` and `_` become `_`, `::` becomes `-`); returns how many.
async fn export(db: &Db, dir: &Path) -> Result<usize, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Invalid(format!("{}: {e}", dir.display())))?;
    let mut written = 0;
    let mut marker: Option<crate::domain::metadef::Namespace> = None;
    loop {
        let page = db::metadefs::list_namespaces(
            db,
            &db::metadefs::NamespaceQuery {
                admin: true,
                project: None,
                visibility: None,
                resource_types: None,
                sort_key: db::metadefs::NamespaceSort::Namespace,
                sort_dir: db::SortDir::Asc,
                limit: 500,
                marker: marker.as_ref(),
            },
        )
        .await?;
        let Some(last) = page.last().cloned() else {
            return Ok(written);
        };
        for ns in &page {
            let detail = db::metadefs::namespace_detail(db, ns).await?;
            let doc = db::metadefs::to_file(&detail);
            let name: String = ns
                .namespace
                .replace("::", "-")
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let file = dir.join(format!("{name}.json"));
            let text = serde_json::to_string_pretty(&doc).expect("JSON") + "\n";
            std::fs::write(&file, text)
                .map_err(|e| Error::Invalid(format!("{}: {e}", file.display())))?;
            written += 1;
        }
        marker = Some(last);
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
