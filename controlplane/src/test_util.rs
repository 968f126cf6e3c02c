//! Test fixtures: a [`TestApp`] with its own temporary data directory and migrated SQLite
//! database. Available to this crate's tests and, with the `test-util` feature, to others.

use crate::app::App;
use crate::db::Db;
use crate::metrics::Metrics;
use shared::config::Config;
use std::path::Path;

/// A configuration rooted in `dir`, with the admin port set to 0.
pub fn config_in(dir: &Path) -> Config {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    config.admin.port = 0;
    config
}

/// An [`App`] over a fresh database in a temporary directory (deleted on drop).
#[derive(Debug)]
pub struct TestApp {
    /// The temporary data directory.
    pub dir: tempfile::TempDir,
    /// The application state.
    pub app: App,
}

impl TestApp {
    /// A fresh app with the default configuration.
    pub async fn new() -> TestApp {
        Self::with_config(|_| {}).await
    }

    /// A fresh app after `tweak` adjusts the configuration.
    pub async fn with_config(tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = config_in(dir.path());
        tweak(&mut config);
        std::fs::create_dir_all(config.store_dir()).expect("store dir");
        let db = Db::connect(&config.database_url(), 4)
            .await
            .expect("open test database");
        db.migrate().await.expect("migrate test database");
        TestApp {
            dir,
            app: App::new(config, db, Metrics::new()),
        }
    }
}
