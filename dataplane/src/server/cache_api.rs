//! Glance's cache API (`/v2/cache…`, with `image_cache_dir` set), served by the data plane,
//! which holds the cache: each request is authorized over the channel (`AuthorizeCache`: the
//! caller, the image, the action's Glance rule `cache_list`, `cache_image`, `cache_delete`,
//! `cache_clean`, `cache_prune`, `list_cached_nodes`), then done on this node's cache, as
//! Glance's cache is per API node:
//!
//! - `GET /v2/cache`: `{"cached_images": [{image_id, hits, last_accessed, last_modified,
//!   size}], "queued_images": [ids]}` (200);
//! - `PUT /v2/cache/{id}`: queues an active image for prefetch (202): the control plane
//!   records a `prefetch` job for this node (so a queued prefetch survives a restart of either
//!   plane), which this data plane's job runner claims and runs ([`cached::prefetch`]: every
//!   block the cache lacks, through the same single-flight fills as downloads);
//! - `DELETE /v2/cache/{id}`: drops it from the cache and the queue, stopping its prefetch
//!   (204);
//! - `DELETE /v2/cache`: the cache, the queue or both (`x-image-cache-clear-target`: `cache`,
//!   `queue`, empty) (204; 400 for another target);
//! - `POST /v2/cache/clean`: removes what interrupted writes left longer than
//!   `image_cache_stall_time` ago (200);
//! - `POST /v2/cache/prune`: evicts down to `image_cache_max_size`
//!   (`{"total_files_pruned", "total_bytes_pruned"}`, 200; the budget is held at admission, so
//!   normally nothing);
//! - `GET /v2/cache/nodes/{id}`: the `worker_self_reference_url` of every node whose cache
//!   holds the image, from the shared database (200). Each data plane reports what its cache
//!   holds ([`report`]).
//!
//! A method a path does not take is 405 with `Allow`.

use super::respond::{Refusal, answered, credentials, refuse};
use super::tls::ClientStream;
use super::worker::Worker;
use crate::cache::Cache;
use crate::http::{Conn, Framing, RequestHead, response_head};
use crate::metrics::Route;
use serde_json::json;
use shared::channel::{CacheAction, Request, Response};
use shared::image::ImageId;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Serves one cache API request (`route` as classified); whether the connection may be reused.
pub(super) async fn handle(
    conn: &mut Conn<ClientStream>,
    head: &RequestHead,
    route: Result<(CacheAction, Option<&str>), &'static str>,
    rid: &str,
    w: &Rc<Worker>,
) -> bool {
    let keep = head.keep_alive && head.framing == Framing::Empty;
    let Some(cache) = w.cache.clone() else {
        let refusal = Refusal::new(404, "Caching via API is not supported at this site.", keep);
        return refuse(conn, Route::Forward, refusal, rid, w).await;
    };
    let (action, id) = match route {
        Ok(r) => r,
        Err(allow) => {
            let refusal = Refusal::new(405, "The method is not allowed for this resource.", keep)
                .with_header("Allow", allow.to_owned());
            return refuse(conn, Route::Forward, refusal, rid, w).await;
        }
    };
    let image = match id.map(str::parse::<ImageId>) {
        Some(Ok(image)) => Some(image),
        Some(Err(_)) => {
            let id = id.unwrap_or_default();
            let refusal = Refusal::new(404, format!("Image {id} not found."), keep);
            return refuse(conn, Route::Forward, refusal, rid, w).await;
        }
        None => None,
    };
    // `DELETE /v2/cache` clears what `x-image-cache-clear-target` names; another target is
    // refused after the policy check (clearing nothing), as Glance does
    let (action, bad_target) = match action {
        CacheAction::Clear { .. } => match clear_target(head) {
            Some((cache, queue)) => (CacheAction::Clear { cache, queue }, false),
            None => (
                CacheAction::Clear {
                    cache: false,
                    queue: false,
                },
                true,
            ),
        },
        other => (other, false),
    };
    match authorize(head, action, image, rid, keep, w).await {
        Ok(_) if bad_target => {
            let refusal = Refusal::new(
                400,
                "If provided 'x-image-cache-clear-target' must be 'cache', 'queue' or empty string.",
                keep,
            );
            refuse(conn, Route::Forward, refusal, rid, w).await
        }
        Ok(granted) => {
            let answer = act(keep, action, image, granted, &cache);
            match answer {
                Ok((status, body)) => respond(conn, status, body, rid, keep, w).await,
                Err(refusal) => refuse(conn, Route::Forward, refusal, rid, w).await,
            }
        }
        Err(refusal) => refuse(conn, Route::Forward, refusal, rid, w).await,
    }
}

/// What `x-image-cache-clear-target` asks to clear: (the cache, the queue); `None` for a
/// target that is none of Glance's.
fn clear_target(head: &RequestHead) -> Option<(bool, bool)> {
    let target = head
        .header("x-image-cache-clear-target")
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match target.as_str() {
        "" | "both" => Some((true, true)),
        "cache" => Some((true, false)),
        "queue" => Some((false, true)),
        _ => None,
    }
}

/// What the control plane granted: for `Nodes` the nodes caching the image, for `List` the
/// images queued for prefetch here.
struct Granted {
    nodes: Vec<String>,
    queued: Vec<String>,
}

async fn authorize(
    head: &RequestHead,
    action: CacheAction,
    image: Option<ImageId>,
    rid: &str,
    keep: bool,
    w: &Worker,
) -> Result<Granted, Refusal> {
    let ask = Request::AuthorizeCache {
        request_id: rid,
        action,
        image_id: image,
        credentials: credentials(head),
    };
    let chan = w
        .link
        .exchange(&ask)
        .await
        .map_err(|e| Refusal::unavailable("AuthorizeCache", &e, keep))?;
    let granted = match chan.response() {
        Ok(Response::CacheGranted { nodes, queued, .. }) => {
            let lines = |s: &str| -> Vec<String> {
                s.lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect()
            };
            Granted {
                nodes: lines(nodes),
                queued: lines(queued),
            }
        }
        Ok(Response::Denied(reason)) => {
            w.link.give_back(chan);
            let about: &dyn std::fmt::Display = match &image {
                Some(i) => i,
                None => &"",
            };
            return Err(Refusal::denied(reason, about, keep));
        }
        other => {
            let other = other.map(crate::control_link::owned);
            return Err(Refusal::from_channel("AuthorizeCache", other, keep));
        }
    };
    w.link.give_back(chan);
    Ok(granted)
}

/// Does `action` on this node's cache: the status and JSON body to answer (`None`: no body).
/// The prefetch queue itself was changed by the control plane when it granted the request.
fn act(
    keep: bool,
    action: CacheAction,
    image: Option<ImageId>,
    granted: Granted,
    cache: &Arc<Cache>,
) -> Result<(u16, Option<serde_json::Value>), Refusal> {
    Ok(match (action, image) {
        (CacheAction::List, _) => {
            let cached: Vec<serde_json::Value> = cache
                .blocks
                .images()
                .into_iter()
                .map(|c| {
                    json!({
                        "image_id": c.image.to_string(),
                        "hits": c.hits,
                        "last_accessed": c.last_accessed,
                        "last_modified": c.last_modified,
                        "size": c.bytes,
                    })
                })
                .collect();
            (
                200,
                Some(json!({"cached_images": cached, "queued_images": granted.queued})),
            )
        }
        (CacheAction::Queue, Some(_)) => {
            // the job runner claims the new job now rather than at its next poll
            cache.nudge();
            (202, None)
        }
        (CacheAction::Delete, Some(image)) => {
            cache.dequeue(image);
            cache.forget(image);
            (204, None)
        }
        (CacheAction::Clear { cache: all, queue }, _) => {
            if queue {
                cache.clear_queue();
            }
            if all {
                cache.clear();
            }
            (204, None)
        }
        (CacheAction::Clean, _) => {
            let removed = cache.blocks.clean(cache.settings.stall);
            tracing::info!(removed, "cache cleaned");
            (200, None)
        }
        (CacheAction::Prune, _) => {
            let (files, bytes) = cache.blocks.prune();
            cache.publish();
            (
                200,
                Some(json!({"total_files_pruned": files, "total_bytes_pruned": bytes})),
            )
        }
        (CacheAction::Nodes, Some(_)) => (200, Some(json!(granted.nodes))),
        _ => return Err(Refusal::new(400, "Malformed cache request.", keep)),
    })
}

async fn respond(
    conn: &mut Conn<ClientStream>,
    status: u16,
    body: Option<serde_json::Value>,
    rid: &str,
    keep: bool,
    w: &Worker,
) -> bool {
    answered(conn, w, Route::Forward, status);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut fields = vec![("x-openstack-request-id", rid)];
    if !body.is_empty() {
        fields.push(("Content-Type", "application/json"));
    }
    let length = (status != 204).then_some(body.len() as u64);
    let mut out = response_head(status, crate::http::reason(status), &fields, length, keep);
    out.extend_from_slice(body.as_bytes());
    let (res, _) = conn.write_all(out, w.settings.idle_timeout).await;
    res.is_ok() && keep
}

/// Reports what the cache holds to the control plane (for `GET /v2/cache/nodes/{id}`), every
/// second for the images whose held bytes changed. Runs on one worker.
pub(super) async fn report(w: Rc<Worker>) {
    let Some(cache) = w.cache.clone() else {
        return;
    };
    loop {
        for (image_id, bytes) in cache.blocks.take_changes() {
            let msg = Request::<&str>::CacheReport { image_id, bytes };
            match w.link.exchange(&msg).await {
                Ok(chan) => w.link.give_back(chan),
                Err(e) => {
                    tracing::warn!(%image_id, error = %e, "cannot report the cache's content")
                }
            }
        }
        compio::time::sleep(Duration::from_secs(1)).await;
    }
}
