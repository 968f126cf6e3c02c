//! Thread-per-core bootstrap: opens the stores, starts one worker thread per core, each with
//! its own io_uring runtime ([`worker_runtime`]) accepting on the listener the supervisor
//! bound, and waits for a signal (SIGTERM/SIGINT stop, SIGHUP reloads the TLS certificate).

use super::tls::Tls;
use super::worker::{Settings, Worker};
use crate::Error;
use crate::{metrics, store};
use shared::config::Config;
use std::rc::Rc;

/// Runs the data plane on `listener` until the process is signalled (SIGTERM/SIGINT).
pub fn run(config: Config, listener: std::net::TcpListener) -> Result<(), Error> {
    crate::io::return_large_blocks();
    let stores = store::Prepared::for_config(&config)?;
    let swept = stores.sweep_temp();
    if swept > 0 {
        tracing::warn!(
            files = swept,
            "removed temp files of uploads interrupted by a previous crash"
        );
    }
    let workers = match config.dataplane.workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    };
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let tls = Tls::load(&config.tls)?;
    let mut settings = Settings::from_config(&config);
    settings.max_connections_per_worker = config.dataplane.max_connections.div_ceil(workers);
    let metrics = match metrics::Metrics::create(&config.run_dir(), workers, stores.ids()) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "cannot create the shared metrics file; data-plane metrics disabled");
            (0..workers).map(|_| metrics::Metrics::detached()).collect()
        }
    };
    let cache = match crate::cache::Settings::from_config(&config.image_cache) {
        Some(s) => {
            let dir = s.dir.clone();
            let cache = crate::cache::Cache::open(s, metrics[0]).map_err(|e| Error::Store {
                path: dir.clone(),
                source: e,
            })?;
            tracing::info!(dir = %dir.display(), held_bytes = cache.blocks.used(), max_bytes = cache.settings.max_bytes, "block cache open");
            Some(std::sync::Arc::new(cache))
        }
        None => None,
    };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), std::io::Error>>();
    let mut handles = Vec::with_capacity(workers);
    for (i, metrics) in metrics.into_iter().enumerate() {
        metrics.connection_limit(settings.max_connections_per_worker);
        let listener = listener.try_clone()?;
        let worker = WorkerInit {
            tls: tls.clone(),
            metrics,
            settings: settings.clone(),
            stores: stores.clone(),
            cache: cache.clone(),
            channel_socket: config.channel_socket(),
            api_socket: config.api_socket(),
        };
        let ready = ready_tx.clone();
        let h = std::thread::Builder::new()
            .name(format!("glint-dp-{i}"))
            .spawn(move || worker_main(i, listener, worker, ready))?;
        handles.push(h);
    }
    drop(ready_tx);
    for _ in 0..workers {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::Runtime(e)),
            Err(_) => {
                return Err(Error::Runtime(std::io::Error::other(
                    "worker exited during start",
                )));
            }
        }
    }
    tracing::info!(%addr, workers, stores = %stores.describe(), "data plane serving");

    // Wait for a shutdown signal on a small runtime of its own; SIGHUP reloads the TLS
    // certificate without touching open connections.
    let rt = compio::runtime::Runtime::new().map_err(Error::Runtime)?;
    rt.block_on(async {
        use rustix::process::Signal;
        loop {
            let term = compio::signal::unix::signal(Signal::TERM.as_raw());
            let int = compio::signal::unix::signal(Signal::INT.as_raw());
            let hup = compio::signal::unix::signal(Signal::HUP.as_raw());
            match first_of(term, int, hup).await {
                Which::Hup => match &tls {
                    Some(t) => match t.reload() {
                        Ok(()) => tracing::info!("TLS certificate reloaded"),
                        Err(e) => tracing::error!(error = %e, "TLS reload failed; keeping the previous certificate"),
                    },
                    None => tracing::info!("SIGHUP: nothing to reload (TLS is off)"),
                },
                Which::Stop => break,
            }
        }
    });
    // In-flight uploads die with the process: remove their temp files now; the control plane
    // puts their images back to queued when their channel connections close.
    let swept = stores.sweep_temp();
    tracing::info!(aborted_uploads = swept, "data plane stopping");
    Ok(())
}

enum Which {
    Stop,
    Hup,
}

async fn first_of(
    term: impl std::future::Future<Output = std::io::Result<()>>,
    int: impl std::future::Future<Output = std::io::Result<()>>,
    hup: impl std::future::Future<Output = std::io::Result<()>>,
) -> Which {
    let mut term = std::pin::pin!(term);
    let mut int = std::pin::pin!(int);
    let mut hup = std::pin::pin!(hup);
    std::future::poll_fn(|cx| {
        if term.as_mut().poll(cx).is_ready() || int.as_mut().poll(cx).is_ready() {
            std::task::Poll::Ready(Which::Stop)
        } else if hup.as_mut().poll(cx).is_ready() {
            std::task::Poll::Ready(Which::Hup)
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

struct WorkerInit {
    tls: Option<std::sync::Arc<Tls>>,
    metrics: metrics::Metrics,
    settings: Settings,
    stores: store::Prepared,
    cache: Option<std::sync::Arc<crate::cache::Cache>>,
    channel_socket: std::path::PathBuf,
    api_socket: std::path::PathBuf,
}

/// Wakeups from other threads a worker's runtime queues (compio's default is 64). A thread
/// waking a task on a worker whose queue is full spins until that worker drains it; a block
/// fill wakes every download waiting for it, hundreds in a cold pull, so the queue holds more
/// than a worker ever has tasks (each task is queued at most once).
const WAKEUP_QUEUE: usize = 1 << 16;

/// A worker's runtime: io_uring set up for one issuing thread with its completion work
/// deferred until the thread asks for completions (`SINGLE_ISSUER | DEFER_TASKRUN`, Linux
/// 6.1+; `COOP_TASKRUN` from 5.19). A worker thread owns its ring, so nothing else submits:
/// the kernel then runs socket completions when the worker waits instead of interrupting it
/// for each one. Measured on proxied metadata requests: 15 instead of 20 µs of data-plane CPU
/// each, about a fifth more requests per second. Older kernels refuse the flags; the plain
/// setup is used then. Returns whether the flags took.
pub fn worker_runtime() -> std::io::Result<(compio::runtime::Runtime, bool)> {
    let mut proactor = compio::driver::ProactorBuilder::new();
    proactor
        .single_issuer(true)
        .coop_taskrun(true)
        .taskrun_flag(true)
        .defer_taskrun(true);
    match compio::runtime::Runtime::builder()
        .with_proactor(proactor)
        .sync_queue_size(WAKEUP_QUEUE)
        .build()
    {
        Ok(rt) => Ok((rt, true)),
        Err(e) => {
            tracing::info!(error = %e, "io_uring refused SINGLE_ISSUER/DEFER_TASKRUN; plain setup");
            let rt = compio::runtime::Runtime::builder()
                .sync_queue_size(WAKEUP_QUEUE)
                .build()?;
            Ok((rt, false))
        }
    }
}

fn worker_main(
    index: usize,
    listener: std::net::TcpListener,
    init: WorkerInit,
    ready: std::sync::mpsc::Sender<Result<(), std::io::Error>>,
) {
    let (rt, deferred) = match worker_runtime() {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let driver = rt.driver_type();
    if !driver.is_iouring() {
        let _ = ready.send(Err(std::io::Error::other(format!(
            "runtime chose {driver:?}, not io_uring"
        ))));
        return;
    }
    tracing::info!(
        worker = index,
        driver = "io_uring",
        defer_taskrun = deferred,
        "data plane worker started"
    );
    rt.block_on(async move {
        let listener = match compio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        let stores = init.stores.open().await;
        let worker = Rc::new(Worker::new(
            init.settings,
            stores,
            init.channel_socket,
            init.api_socket,
            init.metrics,
            init.tls,
            init.cache,
        ));
        if index == 0 {
            // one job runner per data plane
            compio::runtime::spawn(crate::jobs::run(worker.clone())).detach();
            // and one reporter of what the block cache holds
            compio::runtime::spawn(super::cache_api::report(worker.clone())).detach();
            // and one auditor of the blocks it holds
            compio::runtime::spawn(super::audit::run(worker.clone())).detach();
        }
        loop {
            match listener.accept().await {
                Ok((stream, _peer)) => {
                    if worker.active.get() >= worker.settings.max_connections_per_worker {
                        worker.metrics.connection_rejected();
                        let refuse = super::refuse_connection(stream, worker.clone());
                        compio::runtime::spawn(refuse).detach();
                        continue;
                    }
                    compio::runtime::spawn(super::serve_connection(stream, worker.clone()))
                        .detach();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    compio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    });
}
