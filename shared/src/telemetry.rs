//! Tracing setup, called once per process from `main`.

use tracing_subscriber::EnvFilter;

/// Installs a `fmt` subscriber writing to stderr. `filter` (from config) wins over `RUST_LOG`;
/// the default is `info`. `component` names the process in every line (`controlplane`, …).
pub fn init(component: &'static str, filter: Option<&str>) {
    let filter = filter
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true)
        .try_init();
    tracing::debug!(component, "telemetry initialised");
}

/// Installs a panic hook that logs the panic and aborts the process: a worker that died
/// half-way must not keep serving in an unknown state. The supervisor restarts the plane.
pub fn abort_on_panic(component: &'static str) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(component, %info, "panic; aborting");
        default(info);
        std::process::abort();
    }));
}
