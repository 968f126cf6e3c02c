//! The admin listener (TCP): `/healthz`, `/readyz` and `/metrics`.
//!
//! - `/healthz`: 200 as long as the process serves requests.
//! - `/readyz`: 200 when the database answers `SELECT 1`, else 503.
//! - `/metrics`: Prometheus text exposition of [`crate::metrics::Metrics`] (the image cache's
//!   counts, the jobs enqueued and the number of open jobs are copied in at each scrape),
//!   followed by the data
//!   plane's counters read from its shared-memory file (`run/dataplane.metrics`, layout in
//!   `shared::metrics::shm`) and summed over its workers, and the supervisor's restart counts
//!   (`run/supervisor.prom`, `shared::metrics::supervisor`), and the `process_*` metrics of
//!   the three processes ([`crate::process_metrics`]).

use crate::app::App;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// The admin router.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(app)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(app): State<App>) -> impl IntoResponse {
    match app.db.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n"),
        Err(e) => {
            tracing::warn!(error = %e, "database not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
        }
    }
}

async fn metrics(State(app): State<App>) -> impl IntoResponse {
    let cache = app.db.cache();
    app.metrics.image_cache(cache.stats(), cache.len());
    let open = match crate::db::jobs::open_count(&app.db).await {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::debug!(error = %e, "cannot count open jobs");
            None
        }
    };
    app.metrics.jobs(app.db.jobs_enqueued(), open);
    let pool = app.db.pool();
    let idle = pool.num_idle();
    app.metrics
        .db_pool(idle, (pool.size() as usize).saturating_sub(idle));
    let mut text = app.metrics.render();
    app.db
        .pool_stats()
        .render(&mut text, pool.options().get_max_connections());
    let path = app.config.run_dir().join(shared::metrics::shm::FILE_NAME);
    if let Ok(bytes) = tokio::fs::read(&path).await
        && let Some(totals) = shared::metrics::shm::parse(&bytes)
    {
        shared::metrics::shm::render(&totals, &mut text);
    }
    // the supervisor's restart counts (absent when the control plane runs on its own)
    let path = app
        .config
        .run_dir()
        .join(shared::metrics::supervisor::FILE_NAME);
    if let Ok(published) = tokio::fs::read_to_string(&path).await {
        text.push_str(&published);
    }
    let run_dir = app.config.run_dir();
    let text = tokio::task::spawn_blocking(move || {
        crate::process_metrics::render(&run_dir, &mut text);
        text
    })
    .await
    .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(router: &Router, path: &str) -> (StatusCode, String) {
        let res = router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn health_ready_metrics() {
        let t = test_util::TestApp::new().await;
        let r = router(t.app.clone());
        assert_eq!(get(&r, "/healthz").await.0, StatusCode::OK);
        assert_eq!(get(&r, "/readyz").await.0, StatusCode::OK);
        t.app.metrics.channel_request("hello", "ok");
        let (status, text) = get(&r, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("glint_channel_requests_total"), "{text}");
        assert!(text.contains("glint_db_jobs_open 0"), "{text}");
        assert!(
            text.contains(r#"glint_db_jobs_enqueued_total{kind="delete_data"} 0"#),
            "{text}"
        );
        t.app.db.close().await;
        assert_eq!(get(&r, "/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
    }
}
