//! `DELETE /v2/images/{id}` and `DELETE /v2/stores/{store}/{id}` where a store's data may be
//! in use outside glint (RBD: clones of an image's snapshot that Nova or Cinder made).
//! Glance answers such a delete 409 and keeps the image whole; so does glint: the control
//! plane is asked which locations the delete would remove (`AuthorizeDelete`, checked with
//! the same rules as the delete itself), each is asked of its store ([`Store::in_use`]), and
//! the request is refused with Glance's message if one is in use. Otherwise it is forwarded
//! unchanged, and so is every request the control plane refused (unknown image, policy,
//! protected), which then gets the control plane's own answer. A clone made between the
//! check and the delete job makes that job fail, logged, and retry.
//!
//! [`Store::in_use`]: crate::store::Store::in_use

use super::proxy;
use super::respond::{Refusal, credentials, refuse};
use super::tls::ClientStream;
use super::worker::Worker;
use crate::http::{Conn, Framing, RequestHead};
use crate::metrics::Route;
use shared::channel::{Request, Response};
use shared::image::ImageId;
use shared::request_id::RequestId;

/// Glance's answer to a delete of data in use (glance_store's `InUseByStore`).
fn in_use_message(id: &ImageId) -> String {
    format!(
        "Image {id} could not be deleted because it is in use: The image cannot be deleted \
         because it is in use through the backend store outside of Glance."
    )
}

/// Checks the delete, then answers 409 or forwards it.
pub(super) async fn handle(
    conn: &mut Conn<ClientStream>,
    head: &RequestHead,
    image: &str,
    store: Option<&str>,
    rid: &RequestId,
    w: &Worker,
) -> bool {
    if let Ok(id) = image.parse::<ImageId>()
        && in_use(head, id, store, rid, w).await
    {
        let keep = head.keep_alive && head.framing == Framing::Empty;
        let refusal = Refusal::new(409, in_use_message(&id), keep);
        return refuse(conn, Route::Forward, refusal, rid, w).await;
    }
    proxy::handle(conn, head, rid, w).await
}

/// Whether a location the delete would remove is in use. Anything unknown (the control
/// plane refused or is away, a store cannot say) counts as not in use: the forwarded
/// request and the delete job deal with it.
async fn in_use(
    head: &RequestHead,
    id: ImageId,
    store: Option<&str>,
    rid: &str,
    w: &Worker,
) -> bool {
    let ask = Request::AuthorizeDelete {
        request_id: rid,
        image_id: id,
        credentials: credentials(head),
        store,
    };
    let Ok(chan) = w.link.exchange(&ask).await else {
        return false;
    };
    let locations: Vec<(String, String)> = match chan.response() {
        Ok(Response::DeleteGranted { locations }) => shared::location::entries(locations)
            .map(|(s, u)| (s.to_owned(), u.to_owned()))
            .collect(),
        Ok(_) => Vec::new(),
        Err(_) => return false,
    };
    w.link.give_back(chan);
    for (store, url) in locations {
        let Ok(s) = w.stores.resolve(&store, &url).await else {
            continue;
        };
        match s.in_use(&url).await {
            Ok(true) => {
                tracing::info!(image_id = %id, store, "delete refused: the data is in use (clones exist)");
                return true;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(image_id = %id, store, error = %e, "cannot tell whether the data is in use")
            }
        }
    }
    false
}
