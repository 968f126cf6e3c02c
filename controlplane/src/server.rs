//! Start-up and shutdown: [`run`] and [`serve`].
//!
//! 1. Create the run directory (mode 0700: the API socket grants admin in noauth mode) and
//!    the store directory, and lock `run/controlplane.lock`: one control plane per data
//!    directory (its sockets, and the SQLite database whose image cache is exclusive).
//! 2. Open the database (create if missing, WAL, foreign keys) and apply migrations.
//! 3. Reset every `saving` image to `queued`: no upload survives a control-plane restart
//!    (the data plane aborts the upload whose channel broke); every held upload leftover
//!    becomes due for removal. With multi-store, locations of the legacy store `file` move
//!    to the filesystem store whose directory holds them.
//! 4. Remove stale socket files; bind the API socket, the channel socket and the admin TCP
//!    listener; write the admin address to `<run_dir>/admin.addr` (temp file + rename).
//! 5. Start the scrubber (delayed delete) and the metrics upkeep, and serve until SIGTERM/SIGINT (or the shutdown signal given to [`serve`]), shut the three
//!    servers down gracefully, remove the socket files.

use crate::app::App;
use crate::db::{self, Db};
use crate::metrics::Metrics;
use crate::{admin, api, dataplane_link};
use shared::config::Config;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

/// Why the control plane could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem or socket operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path or address.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The database could not be opened, migrated or reset.
    #[error(transparent)]
    Db(#[from] db::Error),
    /// The policy file could not be loaded (every problem listed).
    #[error("{}", .0.join("; "))]
    Policy(Vec<String>),
    /// A server task failed.
    #[error("server task failed: {0}")]
    Task(String),
    /// Another control plane holds this data directory.
    #[error(
        "another glint control plane is serving this data directory ({} is locked)",
        .0.display()
    )]
    Locked(PathBuf),
}

fn io_err(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { what, path, source }
}

/// Runs the control plane on its own 2-thread tokio runtime until SIGTERM or SIGINT.
pub fn run(config: Config) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("controlplane")
        .enable_all()
        .build()
        .map_err(io_err("building the runtime", ""))?;
    runtime.block_on(async move {
        let metrics = Metrics::new();
        if metrics.install_global().is_err() {
            tracing::warn!("a global metrics recorder is already installed; /metrics shows only control-plane metrics");
        }
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            let _ = stop.send(true);
        });
        serve(config, metrics, stopped).await
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down"),
    }
}

fn remove_stale(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::debug!(path = %path.display(), "removed stale socket");
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("removing stale socket", path)(e)),
    }
}

fn bind_unix(path: &Path) -> Result<UnixListener, Error> {
    remove_stale(path)?;
    UnixListener::bind(path).map_err(io_err("binding", path))
}

/// The address to advertise for the admin listener: connectable even when bound to 0.0.0.0.
fn advertised(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    }
}

fn write_atomically(path: &Path, contents: &str) -> Result<(), Error> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, contents).map_err(io_err("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err("renaming into place", path))
}

fn create_private_dir(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).map_err(io_err("creating directory", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .map_err(io_err("restricting", path))
}

/// Takes the data directory's lock: a second control plane on the same directory would
/// replace this one's sockets and write the database behind its image cache. The kernel drops
/// the lock when the process exits, however it exits.
fn lock_data_dir(run_dir: &Path) -> Result<std::fs::File, Error> {
    let path = run_dir.join("controlplane.lock");
    shared::lockfile::lock_exclusive(&path)
        .map_err(io_err("locking", &path))?
        .ok_or(Error::Locked(path))
}

/// Starts everything from `config` and serves until `shutdown` becomes true. The caller owns
/// the runtime and the metrics recorder (see [`run`]).
pub async fn serve(
    config: Config,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let run_dir = config.run_dir();
    create_private_dir(&run_dir)?;
    // Held until this function returns (the process exits on every path that ends it).
    let _lock = lock_data_dir(&run_dir)?;
    let store_dir = config.store_dir();
    std::fs::create_dir_all(&store_dir).map_err(io_err("creating directory", &store_dir))?;

    let policy = match &config.controlplane.policy_file {
        None => crate::policy::Enforcer::default(),
        Some(path) => {
            let enforcer = crate::policy::Enforcer::load(path).map_err(Error::Policy)?;
            tracing::info!(path = %path.display(), "policy file loaded");
            enforcer
        }
    };
    let url = config.database_url();
    let db = Db::connect_with(
        &url,
        config.database.max_connections,
        config.database.image_cache,
        config.database.image_cache_bytes,
    )
    .await?;
    let applied = db.migrate().await?;
    tracing::info!(
        url = %db::redact_url(&url),
        migrations_applied = applied,
        image_cache = db.cache().coherence().as_str(),
        "database ready"
    );
    let reset = db::images::reset_all_saving(&db, chrono::Utc::now()).await?;
    for (id, from) in &reset {
        metrics.transition(*from, shared::image::ImageStatus::Queued);
        tracing::warn!(image_id = %id, %from, to = "queued", "upload interrupted by restart; image back to queued");
    }
    let released = db::jobs::release_all_held(&db, chrono::Utc::now()).await?;
    if released > 0 {
        tracing::warn!(
            jobs = released,
            "leftovers of uploads interrupted by restart are due for removal"
        );
    }
    let stores = config.stores();
    if stores.multistore {
        let owner = |url: &str| {
            let loc = shared::location::FileLocation::parse(url).ok()?;
            stores.stores.iter().find_map(|s| match &s.kind {
                shared::config::StoreKind::File(f) if loc.is_in(&f.filesystem_store_datadir) => {
                    Some(s.id.clone())
                }
                _ => None,
            })
        };
        let adopted = db::images::adopt_legacy_locations(&db, owner, chrono::Utc::now()).await?;
        if adopted > 0 {
            tracing::info!(
                locations = adopted,
                "locations of the legacy store `file` now name the filesystem store holding them"
            );
        }
    }

    let api_path = config.api_socket();
    let channel_path = config.channel_socket();
    let api_listener = bind_unix(&api_path)?;
    let channel_listener = bind_unix(&channel_path)?;
    let admin_bind = format!("{}:{}", config.admin.host, config.admin.port);
    let admin_listener = TcpListener::bind(&admin_bind)
        .await
        .map_err(io_err("binding", &admin_bind))?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(io_err("reading address of", &admin_bind))?;
    let admin_file = run_dir.join("admin.addr");
    write_atomically(&admin_file, &advertised(admin_addr))?;
    tracing::info!(
        api = %api_path.display(),
        channel = %channel_path.display(),
        admin = %admin_addr,
        "control plane listening"
    );

    let app = App::with_policy(config, db.clone(), metrics, policy);
    let stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let api = tokio::spawn(
        axum::serve(api_listener, api::router(app.clone()))
            .with_graceful_shutdown(stop(shutdown.clone()))
            .into_future(),
    );
    let admin = tokio::spawn(
        axum::serve(admin_listener, admin::router(app.clone()))
            .with_graceful_shutdown(stop(shutdown.clone()))
            .into_future(),
    );
    let scrubber = tokio::spawn(crate::scrubber::run(app.clone(), shutdown.clone()));
    tokio::spawn(count_images(app.clone(), shutdown.clone()));
    // Histogram samples wait in the recorder until upkeep folds them into buckets.
    tokio::spawn(
        app.metrics
            .clone()
            .upkeep_every(std::time::Duration::from_secs(5), shutdown.clone()),
    );
    let channel = tokio::spawn(dataplane_link::serve(
        app.clone(),
        channel_listener,
        shutdown.clone(),
    ));

    let (api, admin, channel, scrubber) = tokio::join!(api, admin, channel, scrubber);
    if let Err(e) = scrubber {
        tracing::error!(error = %e, "scrubber task failed");
    }
    let mut failure = None;
    for (name, res) in [
        ("api", api.map(|r| r.map_err(|e| e.to_string()))),
        ("admin", admin.map(|r| r.map_err(|e| e.to_string()))),
    ] {
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = Some(Error::Task(format!("{name}: {e}"))),
            Err(e) => failure = Some(Error::Task(format!("{name}: {e}"))),
        }
    }
    if let Err(e) = channel {
        failure = Some(Error::Task(format!("channel: {e}")));
    }
    for path in [&api_path, &channel_path, &admin_file] {
        let _ = std::fs::remove_file(path);
    }
    db.close().await;
    tracing::info!("control plane stopped");
    failure.map_or(Ok(()), Err)
}

/// Publishes the images per status, the image data at rest per store (each a `GROUP BY`, so
/// that a scrape never scans a table) and the filesystem stores' capacity and free space every
/// [`IMAGE_COUNT_EVERY`], until `shutdown` turns true.
async fn count_images(app: App, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(IMAGE_COUNT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        match db::images::status_counts(&app.db).await {
            Ok(counts) => app.metrics.images(&counts),
            Err(e) => tracing::debug!(error = %e, "cannot count images by status"),
        }
        let stores = &app.stores;
        match db::images::bytes_by_store(&app.db).await {
            Ok(bytes) => app
                .metrics
                .store_bytes(stores.stores.iter().map(|s| s.id.as_str()), &bytes),
            Err(e) => tracing::debug!(error = %e, "cannot sum image data per store"),
        }
        for s in &stores.stores {
            if let shared::config::StoreKind::File(f) = &s.kind
                && let Ok(v) = rustix::fs::statvfs(&f.filesystem_store_datadir)
            {
                app.metrics.store_space(
                    &s.id,
                    v.f_blocks.saturating_mul(v.f_frsize),
                    v.f_bavail.saturating_mul(v.f_frsize),
                );
            }
        }
    }
}

/// How often the images per status are counted.
const IMAGE_COUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::config_in;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn http_get(
        stream: &mut (impl AsyncReadExt + AsyncWriteExt + Unpin),
        path: &str,
    ) -> String {
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: glint.test:9292\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn starts_serves_and_stops_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let run_dir = config.run_dir();
        std::fs::create_dir_all(&run_dir).unwrap();
        std::fs::write(config.api_socket(), b"stale").unwrap();
        let (stop, stopped) = watch::channel(false);
        let server = tokio::spawn(serve(config.clone(), Metrics::new(), stopped));

        let addr_file = run_dir.join("admin.addr");
        let mut addr = String::new();
        for _ in 0..500 {
            if let Ok(a) = std::fs::read_to_string(&addr_file) {
                addr = a;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(addr.starts_with("127.0.0.1:"), "{addr:?}");

        let mut admin = tokio::net::TcpStream::connect(&addr).await.unwrap();
        assert!(
            http_get(&mut admin, "/readyz")
                .await
                .starts_with("HTTP/1.1 200")
        );

        let mut api = tokio::net::UnixStream::connect(config.api_socket())
            .await
            .unwrap();
        let res = http_get(&mut api, "/versions").await;
        assert!(res.starts_with("HTTP/1.1 200"), "{res}");
        assert!(res.contains("http://glint.test:9292/v2/"));
        assert!(
            res.to_ascii_lowercase()
                .contains("x-openstack-request-id: req-")
        );

        // a second control plane on the same data directory is refused, not started
        let (_stop2, stopped2) = watch::channel(false);
        let second = serve(config.clone(), Metrics::new(), stopped2).await;
        assert!(matches!(second, Err(Error::Locked(_))), "{second:?}");
        assert!(
            config.api_socket().exists(),
            "the refused one touched the sockets"
        );

        stop.send(true).unwrap();
        server.await.unwrap().unwrap();
        assert!(!config.api_socket().exists());
        assert!(!config.channel_socket().exists());
        assert!(!addr_file.exists());
    }
}
