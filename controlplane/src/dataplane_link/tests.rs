//! Channel tests over a real Unix socket, speaking real frames.

use super::serve;
use crate::db;
use crate::domain::{Location, LocationStatus};
use crate::test_util::TestApp;
use serde_json::json;
use shared::channel::frame::{self, Frame};
use shared::channel::{Credentials, Request, Response, version};
use shared::error::{Action, ErrorCode, Reason};
use shared::image::{HashAlgo, ImageId, ImageStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

struct Channel {
    t: TestApp,
    path: std::path::PathBuf,
    _stop: watch::Sender<bool>,
}

async fn start() -> Channel {
    start_with(|_| {}).await
}

async fn start_with(tweak: impl FnOnce(&mut shared::config::Config)) -> Channel {
    let t = TestApp::with_config(tweak).await;
    let path = t.dir.path().join("channel.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(serve(t.app.clone(), listener, stopped));
    Channel {
        t,
        path,
        _stop: stop,
    }
}

struct Peer {
    stream: UnixStream,
    buf: Vec<u8>,
    corr: u32,
}

impl Peer {
    async fn connect(ch: &Channel) -> Peer {
        Peer {
            stream: UnixStream::connect(&ch.path).await.unwrap(),
            buf: Vec::new(),
            corr: 0,
        }
    }

    /// Connects and completes the handshake.
    async fn ready(ch: &Channel) -> Peer {
        let mut p = Peer::connect(ch).await;
        let r = p
            .call(Request::Hello {
                min_version: version::MIN_VERSION,
                max_version: version::MAX_VERSION,
                pid: 1,
            })
            .await;
        assert_eq!(
            r,
            Some(Response::HelloAck {
                version: version::MAX_VERSION
            })
        );
        p
    }

    /// Sends one request; returns the response, or `None` if the server closed.
    async fn call(&mut self, req: Request) -> Option<Response> {
        self.corr += 1;
        let mut out = Vec::new();
        frame::encode(self.corr, &req, &mut out).unwrap();
        self.stream.write_all(&out).await.ok()?;
        loop {
            if let Some((Frame { corr, body }, used)) =
                frame::decode::<Response>(&self.buf).unwrap()
            {
                self.buf.drain(..used);
                assert_eq!(corr, self.corr, "correlation id echoed");
                return Some(body);
            }
            let n = self.stream.read_buf(&mut self.buf).await.ok()?;
            if n == 0 {
                return None;
            }
        }
    }
}

fn owner_creds() -> Credentials {
    Credentials {
        project_id: Some("p1".into()),
        roles: Some("member".into()),
        ..Default::default()
    }
}

fn upload(id: ImageId, creds: Credentials, size: Option<u64>) -> Request {
    Request::AuthorizeUpload {
        request_id: "req-t".into(),
        image_id: id,
        credentials: creds,
        declared_size: size,
        store: None,
        stage: false,
    }
}

fn upload_to(id: ImageId, store: &str) -> Request {
    Request::AuthorizeUpload {
        request_id: "req-t".into(),
        image_id: id,
        credentials: owner_creds(),
        declared_size: None,
        store: Some(store.into()),
        stage: false,
    }
}

fn complete(id: ImageId) -> Request {
    Request::UploadComplete {
        request_id: "req-t".into(),
        image_id: id,
        size: 4,
        checksum: "8d777f385d3dfec8815d20f7496026dc".into(),
        os_hash_algo: HashAlgo::Sha512,
        os_hash_value: "ab".repeat(64),
        location: format!("file:///data/{id}"),
        store: "file".into(),
        virtual_size: None,
        block_size: 2,
        block_hashes: "0123456789abcdef0000000000000001".into(),
    }
}

fn complete_in(id: ImageId, store: &str, location: &str) -> Request {
    Request::UploadComplete {
        request_id: "req-t".into(),
        image_id: id,
        size: 4,
        checksum: "8d777f385d3dfec8815d20f7496026dc".into(),
        os_hash_algo: HashAlgo::Sha512,
        os_hash_value: "ab".repeat(64),
        location: location.into(),
        store: store.into(),
        virtual_size: None,
        block_size: 4,
        block_hashes: String::new(),
    }
}

fn download(id: ImageId, creds: Credentials) -> Request {
    Request::AuthorizeDownload {
        request_id: "req-t".into(),
        image_id: id,
        credentials: creds,
    }
}

/// Creates a queued image owned by `p1`, with formats unless `formats` is false.
async fn image(ch: &Channel, formats: bool) -> ImageId {
    let mut body = json!({"owner": "p1"});
    if formats {
        body["disk_format"] = json!("raw");
        body["container_format"] = json!("bare");
    }
    let new =
        crate::domain::create::parse(body.as_object().unwrap(), &ch.t.app.config.image).unwrap();
    let img = new.into_image(Some("p1".into()), chrono::Utc::now());
    db::images::insert(&ch.t.app.db, &img).await.unwrap();
    img.id
}

async fn status(ch: &Channel, id: ImageId) -> ImageStatus {
    db::images::status(&ch.t.app.db, id).await.unwrap().unwrap()
}

/// Polls (bounded) until the image reaches `want`; the server reacts to a closed connection
/// asynchronously.
async fn wait_status(ch: &Channel, id: ImageId, want: ImageStatus) {
    for _ in 0..500 {
        if status(ch, id).await == want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("image {id} never became {want}");
}

#[tokio::test]
async fn handshake_good_and_bad() {
    let ch = start().await;
    let _ok = Peer::ready(&ch).await;

    let mut bad = Peer::connect(&ch).await;
    let r = bad
        .call(Request::Hello {
            min_version: version::MAX_VERSION + 1,
            max_version: version::MAX_VERSION + 5,
            pid: 2,
        })
        .await;
    assert_eq!(r, Some(Response::Denied(Reason::Protocol)));
    assert_eq!(
        bad.call(download(ImageId::new_random(), Credentials::default()))
            .await,
        None,
        "closed after refusal"
    );

    let mut rude = Peer::connect(&ch).await;
    let r = rude
        .call(download(ImageId::new_random(), Credentials::default()))
        .await;
    assert_eq!(r, Some(Response::Denied(Reason::Protocol)));
    assert_eq!(
        rude.call(download(ImageId::new_random(), Credentials::default()))
            .await,
        None
    );
}

#[tokio::test]
async fn upload_grant_and_commit() {
    let ch = start().await;
    let id = image(&ch, true).await;
    let mut p = Peer::ready(&ch).await;

    assert_eq!(
        p.call(download(id, owner_creds())).await,
        Some(Response::DownloadGranted {
            locations: String::new(),
            size: 0,
            checksum: None,
            os_hash_value: None
        })
    );

    let r = p.call(upload(id, owner_creds(), Some(4))).await;
    assert_eq!(
        r,
        Some(Response::UploadGranted {
            hash_algo: HashAlgo::Sha512,
            max_size_bytes: ch.t.app.config.image.image_size_cap_bytes,
            store: "file".into(),
            inspect_as: Some("raw".into()),
        })
    );
    assert_eq!(status(&ch, id).await, ImageStatus::Saving);
    assert_eq!(p.call(complete(id)).await, Some(Response::UploadCommitted));
    // the block hashes came with the commit
    assert_eq!(
        p.call(Request::BlockHashes { image_id: id }).await,
        Some(Response::BlockHashes {
            block_size: 2,
            hashes: "0123456789abcdef0000000000000001".into(),
            checksum: None,
            os_hash_algo: None,
            os_hash_value: None,
        })
    );

    let img = db::images::get(&ch.t.app.db, id).await.unwrap().unwrap();
    assert_eq!(img.status, ImageStatus::Active);
    assert_eq!(img.size, Some(4));
    assert_eq!(
        img.checksum.as_deref(),
        Some("8d777f385d3dfec8815d20f7496026dc")
    );
    assert_eq!(img.os_hash_algo.as_deref(), Some("sha512"));
    assert_eq!(
        img.locations,
        [Location {
            url: format!("file:///data/{id}"),
            store: "file".into(),
            status: LocationStatus::Active,
            position: 0,
        }]
    );

    let r = p.call(download(id, owner_creds())).await;
    assert_eq!(
        r,
        Some(Response::DownloadGranted {
            locations: format!("file file:///data/{id}"),
            size: 4,
            checksum: Some("8d777f385d3dfec8815d20f7496026dc".into()),
            os_hash_value: Some("ab".repeat(64))
        })
    );
    // the lease is gone: a second complete is out of order, and a new upload is a transition
    // active → saving
    assert_eq!(
        p.call(complete(id)).await,
        Some(Response::Denied(Reason::Protocol))
    );
    assert_eq!(
        p.call(upload(id, owner_creds(), None)).await,
        Some(Response::Denied(Reason::Transition {
            from: ImageStatus::Active,
            to: ImageStatus::Saving
        }))
    );
    let text = ch.t.app.metrics.render();
    assert!(
        text.contains(r#"glint_channel_requests_total{kind="authorize_upload",result="ok"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"glint_db_image_transitions_total{from="saving",to="active"} 1"#),
        "{text}"
    );
    // refusals are labelled by their reason's code
    for line in [
        r#"glint_channel_requests_total{kind="authorize_upload",result="conflict"} 1"#,
        r#"glint_channel_requests_total{kind="upload_complete",result="bad_request"} 1"#,
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
}

#[tokio::test]
async fn upload_refusals() {
    let ch = start_with(|c| c.image.image_size_cap_bytes = 100).await;
    let mut p = Peer::ready(&ch).await;
    let id = image(&ch, true).await;
    let no_formats = image(&ch, false).await;
    let other = Credentials {
        project_id: Some("p2".into()),
        roles: Some("member".into()),
        ..Default::default()
    };
    let reader = Credentials {
        project_id: Some("p1".into()),
        roles: Some("reader".into()),
        ..Default::default()
    };

    assert_eq!(
        p.call(upload(ImageId::new_random(), owner_creds(), None))
            .await,
        Some(Response::Denied(Reason::NoSuchImage))
    );
    assert_eq!(
        p.call(upload(id, other.clone(), None)).await,
        Some(Response::Denied(Reason::NoSuchImage))
    );
    assert_eq!(
        p.call(upload(id, reader.clone(), None)).await,
        Some(Response::Denied(Reason::NotAllowed(Action::UploadImage)))
    );
    assert_eq!(
        p.call(upload(no_formats, owner_creds(), None)).await,
        Some(Response::Denied(Reason::FormatsMissing {
            disk_format: true,
            container_format: true
        }))
    );
    assert_eq!(
        p.call(upload(id, owner_creds(), Some(101))).await,
        Some(Response::Denied(Reason::TooLarge))
    );
    assert_eq!(
        p.call(download(id, other)).await,
        Some(Response::Denied(Reason::NoSuchImage))
    );
    // readers may see but not download
    let public = image(&ch, true).await;
    let mut img = (*db::images::get(&ch.t.app.db, public)
        .await
        .unwrap()
        .unwrap())
    .clone();
    img.visibility = shared::image::Visibility::Public;
    assert!(db::images::update(&ch.t.app.db, &img).await.unwrap());
    assert_eq!(
        p.call(download(public, reader)).await,
        Some(Response::Denied(Reason::NotAllowed(Action::DownloadImage)))
    );
    assert_eq!(status(&ch, id).await, ImageStatus::Queued);
    assert!(matches!(
        p.call(upload(id, owner_creds(), Some(100))).await,
        Some(Response::UploadGranted { .. })
    ));
}

#[tokio::test]
async fn abort_returns_to_queued() {
    let ch = start().await;
    let id = image(&ch, true).await;
    let mut p = Peer::ready(&ch).await;
    assert!(matches!(
        p.call(upload(id, owner_creds(), None)).await,
        Some(Response::UploadGranted { .. })
    ));
    let r = p
        .call(Request::UploadAborted {
            request_id: "req-t".into(),
            image_id: id,
            code: ErrorCode::BadRequest,
        })
        .await;
    assert_eq!(r, Some(Response::Ack));
    let img = db::images::get(&ch.t.app.db, id).await.unwrap().unwrap();
    assert_eq!(
        (img.status, img.size, img.checksum.clone()),
        (ImageStatus::Queued, None, None)
    );
    // the lease is gone: completing it is out of order
    assert_eq!(
        p.call(complete(id)).await,
        Some(Response::Denied(Reason::Protocol))
    );
    // and the image can be uploaded again
    assert!(matches!(
        p.call(upload(id, owner_creds(), None)).await,
        Some(Response::UploadGranted { .. })
    ));
}

#[tokio::test]
async fn dropped_connection_reverts_its_leases() {
    let ch = start().await;
    let id = image(&ch, true).await;
    let mut p = Peer::ready(&ch).await;
    assert!(matches!(
        p.call(upload(id, owner_creds(), None)).await,
        Some(Response::UploadGranted { .. })
    ));
    assert_eq!(status(&ch, id).await, ImageStatus::Saving);
    drop(p);
    wait_status(&ch, id, ImageStatus::Queued).await;
    let mut text = String::new();
    for _ in 0..100 {
        text = ch.t.app.metrics.render();
        if text.contains("glint_channel_leases_reverted_total 1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        text.contains("glint_channel_leases_reverted_total 1"),
        "{text}"
    );
}

#[tokio::test]
async fn second_upload_conflicts() {
    let ch = start().await;
    let id = image(&ch, true).await;
    let mut a = Peer::ready(&ch).await;
    let mut b = Peer::ready(&ch).await;
    let (ra, rb) = tokio::join!(
        a.call(upload(id, owner_creds(), None)),
        b.call(upload(id, owner_creds(), None))
    );
    let granted = [&ra, &rb]
        .iter()
        .filter(|r| matches!(r, Some(Response::UploadGranted { .. })))
        .count();
    let conflicts = [&ra, &rb]
        .iter()
        .filter(|r| {
            **r == &Some(Response::Denied(Reason::Transition {
                from: ImageStatus::Saving,
                to: ImageStatus::Saving,
            }))
        })
        .count();
    assert_eq!((granted, conflicts), (1, 1), "{ra:?} {rb:?}");
    // only the lease holder may complete
    let (holder, other) = if matches!(ra, Some(Response::UploadGranted { .. })) {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert_eq!(
        other.call(complete(id)).await,
        Some(Response::Denied(Reason::Protocol))
    );
    assert_eq!(
        holder.call(complete(id)).await,
        Some(Response::UploadCommitted)
    );
}

#[tokio::test]
async fn complete_after_delete_is_gone() {
    let ch = start().await;
    let id = image(&ch, true).await;
    let mut p = Peer::ready(&ch).await;
    assert!(matches!(
        p.call(upload(id, owner_creds(), None)).await,
        Some(Response::UploadGranted { .. })
    ));

    let router = crate::api::router(ch.t.app.clone());
    let req = axum::http::Request::delete(format!("/v2/images/{id}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let res = tower::ServiceExt::oneshot(router, req).await.unwrap();
    assert_eq!(res.status(), axum::http::StatusCode::NO_CONTENT);

    assert_eq!(
        p.call(complete(id)).await,
        Some(Response::Denied(Reason::DeletedDuringUpload))
    );
    assert_eq!(status(&ch, id).await, ImageStatus::Deleted);
    assert_eq!(
        p.call(download(id, owner_creds())).await,
        Some(Response::Denied(Reason::NoSuchImage))
    );
    // the lease was dropped: closing the connection changes nothing
    drop(p);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(status(&ch, id).await, ImageStatus::Deleted);
}

#[tokio::test]
async fn deactivated_download_is_admin_only() {
    let ch = start().await;
    let id = image(&ch, true).await;
    let mut p = Peer::ready(&ch).await;
    assert!(matches!(
        p.call(upload(id, owner_creds(), None)).await,
        Some(Response::UploadGranted { .. })
    ));
    assert_eq!(p.call(complete(id)).await, Some(Response::UploadCommitted));
    let mut img = (*db::images::get(&ch.t.app.db, id).await.unwrap().unwrap()).clone();
    img.status = ImageStatus::Deactivated;
    assert!(db::images::update(&ch.t.app.db, &img).await.unwrap());
    assert_eq!(
        p.call(download(id, owner_creds())).await,
        Some(Response::Denied(Reason::Deactivated))
    );
    assert!(matches!(
        p.call(download(id, Credentials::default())).await,
        Some(Response::DownloadGranted {
            ref locations,
            size: 4,
            ..
        }) if !locations.is_empty()
    ));
}

#[tokio::test]
async fn an_undecodable_frame_is_a_protocol_refusal() {
    let ch = start().await;
    let mut p = Peer::ready(&ch).await;
    // a well-framed payload that is no Request (`len` counts the correlation id too)
    let body = [0xffu8; 3];
    let mut out = Vec::new();
    out.extend_from_slice(&(4 + body.len() as u32).to_be_bytes());
    out.extend_from_slice(&77u32.to_be_bytes());
    out.extend_from_slice(&body);
    p.stream.write_all(&out).await.unwrap();
    let got = loop {
        if let Some((Frame { corr, body }, used)) = frame::decode::<Response>(&p.buf).unwrap() {
            p.buf.drain(..used);
            break (corr, body);
        }
        assert!(p.stream.read_buf(&mut p.buf).await.unwrap() > 0, "closed");
    };
    assert_eq!(got, (77, Response::Denied(Reason::Protocol)));
    // the connection goes on
    assert!(matches!(
        p.call(download(ImageId::new_random(), owner_creds())).await,
        Some(Response::Denied(Reason::NoSuchImage))
    ));
}

#[tokio::test]
async fn data_over_the_cap_is_too_large_and_back_to_queued() {
    let ch = start_with(|c| c.image.image_size_cap_bytes = 3).await;
    let id = image(&ch, true).await;
    let mut p = Peer::ready(&ch).await;
    assert!(matches!(
        p.call(upload(id, owner_creds(), None)).await,
        Some(Response::UploadGranted { .. })
    ));
    // complete() reports 4 bytes
    assert_eq!(
        p.call(complete(id)).await,
        Some(Response::Denied(Reason::TooLarge))
    );
    assert_eq!(status(&ch, id).await, ImageStatus::Queued);
}

#[tokio::test]
async fn keystone_refusals() {
    let ch = start_with(crate::test_util::unreachable_keystone).await;
    let id = image(&ch, true).await;
    let mut p = Peer::ready(&ch).await;
    // identity headers alone are no token
    assert_eq!(
        p.call(download(id, owner_creds())).await,
        Some(Response::Denied(Reason::Unauthenticated))
    );
    let token = Credentials {
        auth_token: Some("t0ken".into()),
        ..Default::default()
    };
    assert_eq!(
        p.call(upload(id, token, None)).await,
        Some(Response::Denied(Reason::IdentityUnavailable))
    );
}

#[tokio::test]
async fn a_database_failure_is_internal() {
    let ch = start().await;
    let mut p = Peer::ready(&ch).await;
    ch.t.app.db.close().await;
    // anonymous noauth callers are admins: nothing but the database can refuse (an id that
    // is not in the image cache, so the database is asked)
    assert_eq!(
        p.call(download(ImageId::new_random(), Credentials::default()))
            .await,
        Some(Response::Denied(Reason::Internal))
    );
    let text = ch.t.app.metrics.render();
    assert!(
        text.contains(
            r#"glint_channel_requests_total{kind="authorize_download",result="internal"} 1"#
        ),
        "{text}"
    );
}

/// Three stores: `slow` (the default), `fast` (weight 10) and the read-only `web`.
fn multistore(c: &mut shared::config::Config) {
    let dir = c.data_dir.clone();
    let text = format!(
        r#"
enabled_backends = "slow:file, fast:file, web:http"
[glance_store]
default_backend = "slow"
[backends.slow]
filesystem_store_datadir = "{}/slow"
[backends.fast]
filesystem_store_datadir = "{}/fast"
weight = 10
"#,
        dir.display(),
        dir.display()
    );
    let parsed = shared::config::Config::from_toml(&text).unwrap();
    c.enabled_backends = parsed.enabled_backends;
    c.glance_store = parsed.glance_store;
    c.backends = parsed.backends;
}

#[tokio::test]
async fn uploads_go_to_the_store_asked_or_the_default() {
    let ch = start_with(multistore).await;
    let mut p = Peer::ready(&ch).await;
    let id = image(&ch, true).await;

    // the store is resolved before the image, as Glance does
    assert_eq!(
        p.call(upload_to(ImageId::new_random(), "nope")).await,
        Some(Response::Denied(Reason::UnknownStore))
    );
    assert_eq!(
        p.call(upload_to(id, "nope")).await,
        Some(Response::Denied(Reason::UnknownStore))
    );
    assert_eq!(
        p.call(upload_to(id, "web")).await,
        Some(Response::Denied(Reason::ReadOnlyStore))
    );
    assert_eq!(status(&ch, id).await, ImageStatus::Queued);

    // no header: the default store
    assert!(matches!(
        p.call(upload(id, owner_creds(), None)).await,
        Some(Response::UploadGranted { ref store, .. }) if store == "slow"
    ));
    // completing into another store than the one granted is a protocol error
    assert_eq!(
        p.call(complete_in(id, "fast", "file:///fast/x")).await,
        Some(Response::Denied(Reason::Protocol))
    );
    assert_eq!(status(&ch, id).await, ImageStatus::Queued);

    // a URL with credentials is never stored
    assert!(matches!(
        p.call(upload_to(id, "fast")).await,
        Some(Response::UploadGranted { ref store, .. }) if store == "fast"
    ));
    assert_eq!(
        p.call(complete_in(id, "fast", "s3://key:secret@host/b/k"))
            .await,
        Some(Response::Denied(Reason::Protocol))
    );
    assert_eq!(status(&ch, id).await, ImageStatus::Queued);
    let img = db::images::get(&ch.t.app.db, id).await.unwrap().unwrap();
    assert!(img.locations.is_empty());
    // block hashes that do not fit the size are never stored either
    assert!(matches!(
        p.call(upload_to(id, "fast")).await,
        Some(Response::UploadGranted { .. })
    ));
    let mut bad = complete_in(id, "fast", "file:///fast/x");
    if let Request::UploadComplete { block_hashes, .. } = &mut bad {
        *block_hashes = "0123456789abcdef".repeat(3); // 3 blocks of 4 for 4 bytes
    }
    assert_eq!(p.call(bad).await, Some(Response::Denied(Reason::Protocol)));
    assert_eq!(status(&ch, id).await, ImageStatus::Queued);

    assert!(matches!(
        p.call(upload_to(id, "slow")).await,
        Some(Response::UploadGranted { .. })
    ));
    assert_eq!(
        p.call(complete_in(id, "slow", "file:///slow/x")).await,
        Some(Response::UploadCommitted)
    );
    let img = db::images::get(&ch.t.app.db, id).await.unwrap().unwrap();
    assert_eq!(
        img.locations,
        [Location {
            url: "file:///slow/x".into(),
            store: "slow".into(),
            status: LocationStatus::Active,
            position: 0,
        }]
    );
    // a second copy in the heavier store comes first in a download grant
    assert!(
        db::images::add_location(
            &ch.t.app.db,
            id,
            "fast",
            "file:///fast/x",
            chrono::Utc::now()
        )
        .await
        .unwrap()
    );
    assert_eq!(
        p.call(download(id, owner_creds())).await,
        Some(Response::DownloadGranted {
            locations: "fast file:///fast/x\nslow file:///slow/x".into(),
            size: 4,
            checksum: Some("8d777f385d3dfec8815d20f7496026dc".into()),
            os_hash_value: Some("ab".repeat(64))
        })
    );
}

#[tokio::test]
async fn without_multistore_the_store_header_is_ignored() {
    let ch = start().await;
    let mut p = Peer::ready(&ch).await;
    let id = image(&ch, true).await;
    assert!(matches!(
        p.call(upload_to(id, "nope")).await,
        Some(Response::UploadGranted { ref store, .. }) if store == "file"
    ));
    assert_eq!(p.call(complete(id)).await, Some(Response::UploadCommitted));
}

#[tokio::test]
async fn jobs_are_claimed_failed_and_done_over_the_channel() {
    let ch = start().await;
    let mut p = Peer::ready(&ch).await;
    let id = image(&ch, true).await;
    assert!(matches!(
        p.call(upload(id, owner_creds(), None)).await,
        Some(Response::UploadGranted { .. })
    ));
    assert_eq!(p.call(complete(id)).await, Some(Response::UploadCommitted));
    assert_eq!(
        p.call(Request::ClaimJobs {
            max: 8,
            lease_seconds: 60
        })
        .await,
        Some(Response::Jobs(vec![]))
    );

    let router = crate::api::router(ch.t.app.clone());
    let req = axum::http::Request::delete(format!("/v2/images/{id}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let res = tower::ServiceExt::oneshot(router, req).await.unwrap();
    assert_eq!(res.status(), axum::http::StatusCode::NO_CONTENT);

    let claim = Request::ClaimJobs {
        max: 8,
        lease_seconds: 60,
    };
    let Some(Response::Jobs(jobs)) = p.call(claim.clone()).await else {
        panic!("no jobs answer");
    };
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].attempt, 0);
    assert_eq!(
        jobs[0].work,
        shared::channel::Work::DeleteData {
            image_id: id,
            store: "file".into(),
            url: format!("file:///data/{id}"),
        }
    );
    let job = jobs[0].id;
    // leased: not handed out again
    assert_eq!(p.call(claim.clone()).await, Some(Response::Jobs(vec![])));
    assert_eq!(
        p.call(Request::JobFailed {
            id: job,
            error: "store unreachable".into()
        })
        .await,
        Some(Response::Ack)
    );
    // backing off
    assert_eq!(p.call(claim.clone()).await, Some(Response::Jobs(vec![])));
    let row = &db::jobs::all(&ch.t.app.db).await.unwrap()[0];
    assert_eq!(row.last_error.as_deref(), Some("store unreachable"));
    assert!(row.not_before > chrono::Utc::now() + chrono::Duration::seconds(3));
    // done (even while pending: the data plane may finish a job it held), twice
    for _ in 0..2 {
        assert_eq!(
            p.call(Request::JobDone { id: job }).await,
            Some(Response::Ack)
        );
    }
    assert!(db::jobs::all(&ch.t.app.db).await.unwrap().is_empty());
    let img = db::images::get(&ch.t.app.db, id).await.unwrap().unwrap();
    assert_eq!(img.locations[0].status, LocationStatus::Deleted);
    let text = ch.t.app.metrics.render();
    for line in [
        r#"glint_db_jobs_done_total{kind="delete_data"} 1"#,
        r#"glint_db_jobs_failed_total{kind="delete_data"} 1"#,
        r#"glint_channel_requests_total{kind="claim_jobs",result="ok"} 4"#,
        r#"glint_channel_requests_total{kind="job_done",result="ok"} 2"#,
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
}

fn leftover(id: ImageId, upload: Option<&str>) -> Request {
    Request::UploadLeftover {
        request_id: "req-t".into(),
        image_id: id,
        url: format!("file:///data/{id}"),
        upload: upload.map(str::to_owned),
    }
}

/// The jobs of `id`: (state, payload).
async fn jobs_of(ch: &Channel, id: ImageId) -> Vec<(String, Option<String>)> {
    db::jobs::all(&ch.t.app.db)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.image_id == id.to_string())
        .map(|j| (j.state, j.payload))
        .collect()
}

#[tokio::test]
async fn upload_leftovers_are_held_by_the_lease() {
    let ch = start().await;
    let mut p = Peer::ready(&ch).await;

    // without a lease on this connection: refused, nothing recorded
    let id = image(&ch, true).await;
    assert_eq!(
        p.call(leftover(id, None)).await,
        Some(Response::Denied(Reason::Protocol))
    );
    assert!(jobs_of(&ch, id).await.is_empty());

    // recorded held; the commit drops them
    assert!(matches!(
        p.call(upload(id, owner_creds(), None)).await,
        Some(Response::UploadGranted { .. })
    ));
    assert_eq!(p.call(leftover(id, None)).await, Some(Response::Ack));
    assert_eq!(
        p.call(leftover(id, Some("up-1"))).await,
        Some(Response::Ack)
    );
    assert_eq!(
        jobs_of(&ch, id).await,
        vec![("held".into(), None), ("held".into(), Some("up-1".into()))]
    );
    assert_eq!(p.call(complete(id)).await, Some(Response::UploadCommitted));
    assert!(jobs_of(&ch, id).await.is_empty());

    // an aborted upload's leftovers are due at once
    let id = image(&ch, true).await;
    assert!(matches!(
        p.call(upload(id, owner_creds(), None)).await,
        Some(Response::UploadGranted { .. })
    ));
    assert_eq!(
        p.call(leftover(id, Some("up-2"))).await,
        Some(Response::Ack)
    );
    let abort = Request::UploadAborted {
        request_id: "req-t".into(),
        image_id: id,
        code: ErrorCode::ServiceUnavailable,
    };
    assert_eq!(p.call(abort).await, Some(Response::Ack));
    assert_eq!(
        jobs_of(&ch, id).await,
        vec![("pending".into(), Some("up-2".into()))]
    );

    // a refused commit's too (the image was deleted meanwhile)
    let id = image(&ch, true).await;
    assert!(matches!(
        p.call(upload(id, owner_creds(), None)).await,
        Some(Response::UploadGranted { .. })
    ));
    assert_eq!(p.call(leftover(id, None)).await, Some(Response::Ack));
    let router = crate::api::router(ch.t.app.clone());
    let req = axum::http::Request::delete(format!("/v2/images/{id}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let res = tower::ServiceExt::oneshot(router, req).await.unwrap();
    assert_eq!(res.status(), axum::http::StatusCode::NO_CONTENT);
    assert_eq!(
        p.call(complete(id)).await,
        Some(Response::Denied(Reason::DeletedDuringUpload))
    );
    assert_eq!(jobs_of(&ch, id).await, vec![("pending".into(), None)]);

    // and those of a connection that closes mid-upload, after its image is back to queued
    let id = image(&ch, true).await;
    assert!(matches!(
        p.call(upload(id, owner_creds(), None)).await,
        Some(Response::UploadGranted { .. })
    ));
    assert_eq!(p.call(leftover(id, None)).await, Some(Response::Ack));
    drop(p);
    wait_status(&ch, id, ImageStatus::Queued).await;
    let mut jobs = Vec::new();
    for _ in 0..100 {
        jobs = jobs_of(&ch, id).await;
        if jobs.iter().all(|(state, _)| state == "pending") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(jobs, vec![("pending".into(), None)]);
    // claimed as soon as it is due: the image is queued, no location has the URL
    let claimed = db::jobs::claim(&ch.t.app.db, "", 10, 60, chrono::Utc::now())
        .await
        .unwrap();
    assert!(
        claimed.iter().any(|j| matches!(&j.work,
            shared::channel::Work::AbortUpload { image_id, upload: None, .. } if *image_id == id)),
        "{claimed:?}"
    );
}

/// `POST /v2/images/{id}/import` through the router (noauth: no identity headers, an admin).
async fn ask_import(ch: &Channel, id: ImageId, body: serde_json::Value, headers: &[(&str, &str)]) {
    let router = crate::api::router(ch.t.app.clone());
    let mut req = axum::http::Request::post(format!("/v2/images/{id}/import"))
        .header("Content-Type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(axum::body::Body::from(body.to_string())).unwrap();
    let res = tower::ServiceExt::oneshot(router, req).await.unwrap();
    assert_eq!(res.status(), axum::http::StatusCode::ACCEPTED);
}

/// The one import job handed out now.
async fn import_job(p: &mut Peer) -> (u64, shared::channel::Work) {
    let claim = Request::ClaimJobs {
        max: 8,
        lease_seconds: 60,
    };
    let Some(Response::Jobs(mut jobs)) = p.call(claim).await else {
        panic!("no jobs answer");
    };
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = jobs.remove(0);
    (job.id, job.work)
}

#[tokio::test]
async fn glance_download_hands_out_the_token_takes_the_metadata_and_undoes_it() {
    let ch = start_with(|c| c.enabled_import_methods.push("glance-download".into())).await;
    let app = &ch.t.app;
    let mut p = Peer::ready(&ch).await;
    let remote = "2d1f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b";
    let method = |region: &str| {
        json!({"method": {"name": "glance-download", "glance_region": region,
            "glance_image_id": remote}})
    };
    // without Keystone, the catalog comes as keystonemiddleware passes it
    let catalog = json!([{"type": "image", "endpoints": [
        {"region": "R2", "publicURL": "http://r2.example:9292/"}]}])
    .to_string();
    let headers = [
        ("X-Auth-Token", "tok-1"),
        ("X-Service-Catalog", catalog.as_str()),
    ];

    let id = image(&ch, true).await;
    ask_import(&ch, id, method("r2"), &headers).await;
    let (job, work) = import_job(&mut p).await;
    let shared::channel::Work::Import {
        task_id,
        method: m,
        uri,
        auth_token,
        refused,
        stores,
        ..
    } = work
    else {
        panic!("not an import: {work:?}");
    };
    assert_eq!(m, "glance-download");
    assert_eq!(
        uri.as_deref(),
        Some(format!("http://r2.example:9292/v2/images/{remote}").as_str())
    );
    assert_eq!(auth_token.as_deref(), Some("tok-1"));
    assert_eq!(refused, None);
    assert_eq!(stores, "file");
    let task = db::tasks::get(&app.db, &task_id).await.unwrap().unwrap();
    assert_eq!(
        task.input["import_req"]["method"]["glance_service_interface"],
        "public"
    );
    assert!(!task.input.to_string().contains("tok-1"));

    // the remote image: its formats and chosen properties taken
    let metadata = |image: serde_json::Value| Request::ImportMetadata {
        task_id: task_id.clone(),
        image_id: id,
        image: image.to_string(),
    };
    let queued = json!({"status": "queued", "size": null});
    assert_eq!(
        p.call(metadata(queued)).await,
        Some(Response::ImportRefused(
            "Source image status should be active instead of queued".into()
        ))
    );
    let active = json!({"status": "active", "size": 4096, "disk_format": "qcow2",
        "container_format": "bare", "hw_machine_type": "q35", "name": "not copied"});
    assert_eq!(
        p.call(metadata(active)).await,
        Some(Response::ImportSource {
            size: 4096,
            disk_format: "qcow2".into()
        })
    );
    let img = db::images::get(&app.db, id).await.unwrap().unwrap();
    assert_eq!(img.disk_format.as_deref(), Some("qcow2"));
    assert_eq!(img.properties["hw_machine_type"], "q35");
    assert_eq!(img.status, ImageStatus::Importing);

    // it fails: the image as it was, queued; the token forgotten
    let finished = Request::ImportFinished {
        job,
        task_id: task_id.clone(),
        image_id: id,
        error: Some("the data was short".into()),
        failed_stores: String::new(),
    };
    assert_eq!(p.call(finished).await, Some(Response::Ack));
    let img = db::images::get(&app.db, id).await.unwrap().unwrap();
    assert_eq!(img.status, ImageStatus::Queued);
    assert_eq!(img.disk_format.as_deref(), Some("raw"));
    assert!(!img.properties.contains_key("hw_machine_type"), "{img:?}");
    assert!(!img.properties.contains_key("os_glance_import_task"));
    let task = db::tasks::get(&app.db, &task_id).await.unwrap().unwrap();
    assert_eq!(task.message, "the data was short");
    assert_eq!(
        app.glance_downloads.source(&task_id),
        Err(crate::glance_download::GONE.to_owned())
    );

    // no endpoint for the region: the job carries the refusal
    ask_import(&ch, id, method("R9"), &headers).await;
    let (_, work) = import_job(&mut p).await;
    let shared::channel::Work::Import {
        refused,
        auth_token,
        ..
    } = work
    else {
        panic!("not an import");
    };
    assert_eq!(
        refused.as_deref(),
        Some("public glance endpoint not found for region R9")
    );
    assert_eq!(auth_token, None);

    // the token lost (a restart): refused too, never run without it
    let id = image(&ch, true).await;
    ask_import(&ch, id, method("R2"), &headers).await;
    let task = &db::tasks::of_image(&app.db, id, chrono::Utc::now())
        .await
        .unwrap()[0];
    app.glance_downloads.remove(&task.id);
    let (_, work) = import_job(&mut p).await;
    let shared::channel::Work::Import { refused, .. } = work else {
        panic!("not an import");
    };
    assert_eq!(refused.as_deref(), Some(crate::glance_download::GONE));
}

fn delete(id: ImageId, creds: Credentials, store: Option<&str>) -> Request {
    Request::AuthorizeDelete {
        request_id: "req-t".into(),
        image_id: id,
        credentials: creds,
        store: store.map(str::to_owned),
    }
}

#[tokio::test]
async fn a_delete_is_asked_with_the_delete_rules_and_names_its_locations() {
    let ch = start().await;
    let id = image(&ch, true).await;
    let mut p = Peer::ready(&ch).await;
    assert!(matches!(
        p.call(upload(id, owner_creds(), None)).await,
        Some(Response::UploadGranted { .. })
    ));
    assert_eq!(p.call(complete(id)).await, Some(Response::UploadCommitted));
    let Some(Response::DeleteGranted { locations }) = p.call(delete(id, owner_creds(), None)).await
    else {
        panic!("delete not granted");
    };
    let listed: Vec<(&str, &str)> = shared::location::entries(&locations).collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, "file");
    // from one store, the image's only location: left to the control plane's own 403
    assert_eq!(
        p.call(delete(id, owner_creds(), Some("file"))).await,
        Some(Response::Denied(Reason::NotAllowed(Action::DeleteImage)))
    );
    // someone else's image is not found; a protected one is refused (its delete then gets
    // the control plane's own 403)
    let stranger = Credentials {
        project_id: Some("p2".into()),
        roles: Some("member".into()),
        ..Default::default()
    };
    assert_eq!(
        p.call(delete(id, stranger, None)).await,
        Some(Response::Denied(Reason::NoSuchImage))
    );
    let mut img = (*db::images::get(&ch.t.app.db, id).await.unwrap().unwrap()).clone();
    img.protected = true;
    assert!(db::images::update(&ch.t.app.db, &img).await.unwrap());
    assert_eq!(
        p.call(delete(id, owner_creds(), None)).await,
        Some(Response::Denied(Reason::NotAllowed(Action::DeleteImage)))
    );
}
