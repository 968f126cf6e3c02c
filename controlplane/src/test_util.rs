//! Test fixtures: a [`TestApp`] with its own temporary data directory and migrated SQLite
//! database, and configurations tests share ([`config_in`], [`unreachable_keystone`]).
//! Compiled only for tests: this crate's, and others' with the `test-util` feature.

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

/// Switches `config` to keystone mode against a Keystone that never answers (nothing listens
/// on `127.0.0.1:1`), with a complete service user and
/// `www_authenticate_uri = "https://ks.example/v3"`: a request without a token is refused
/// (401), one with a token finds Keystone unavailable (503).
pub fn unreachable_keystone(config: &mut Config) {
    config.auth.mode = shared::config::AuthMode::Keystone;
    let k = &mut config.keystone_authtoken;
    k.auth_url = Some("http://127.0.0.1:1/v3".into());
    k.www_authenticate_uri = Some("https://ks.example/v3".into());
    k.username = Some("glance".into());
    k.password = Some("pw".into());
    k.project_name = Some("service".into());
    k.http_connect_timeout = 1;
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
