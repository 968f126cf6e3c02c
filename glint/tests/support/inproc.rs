//! A control plane and one data-plane worker in the test process: the control plane on tokio
//! threads of its own (SQLite, the real channel and API sockets in a temp directory), the
//! worker on a thread of its own with the runtime setup, worker state and `serve_connection`
//! the binary uses, on a loopback port. For tests below end-to-end (no supervisor, no
//! processes), where a test needs to reach into the worker thread.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A control plane and a data-plane worker on one data directory.
pub(crate) struct Stack {
    /// The worker's address.
    pub(crate) addr: SocketAddr,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

/// How to start a [`Stack`].
#[derive(Default)]
pub(crate) struct Options {
    /// The channel socket the data plane is given instead of the control plane's (a path
    /// nothing listens on: a control plane that is down).
    pub(crate) channel: Option<PathBuf>,
    /// Runs first on the worker thread (e.g. to mark it for counting).
    pub(crate) on_worker_thread: Option<fn()>,
}

impl Stack {
    /// Starts both, with the defaults changed by `tune`.
    pub(crate) fn start(tune: impl FnOnce(&mut shared::config::Config), options: Options) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let mut config = shared::config::Config {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        config.admin.port = 0;
        tune(&mut config);

        let (stop, stopped) = tokio::sync::watch::channel(false);
        let cp_config = config.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(controlplane::serve(
                cp_config,
                controlplane::metrics::Metrics::new(),
                stopped,
            ))
            .unwrap();
        });
        let admin_file = config.run_dir().join("admin.addr");
        for _ in 0..1000 {
            if admin_file.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(admin_file.exists(), "control plane did not start");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let channel = options.channel.unwrap_or_else(|| config.channel_socket());
        let first = options.on_worker_thread;
        std::thread::spawn(move || {
            if let Some(f) = first {
                f();
            }
            let (rt, _) = dataplane::worker_runtime().unwrap();
            rt.block_on(async move {
                use dataplane::server::{self, worker};
                let stores = dataplane::store::Prepared::for_config(&config)
                    .unwrap()
                    .open()
                    .await;
                let w = std::rc::Rc::new(worker::Worker::new(
                    worker::Settings::from_config(&config),
                    stores,
                    channel,
                    config.api_socket(),
                    dataplane::metrics::Metrics::detached(),
                    None,
                    None,
                ));
                let listener = compio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    compio::runtime::spawn(server::serve_connection(stream, w.clone())).detach();
                }
            });
        });
        Stack {
            addr,
            _dir: dir,
            _stop: stop,
        }
    }
}
