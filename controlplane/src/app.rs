//! [`App`]: everything a request handler or the channel server needs, shared by both, and
//! the one step both take before acting on an image: find it as the caller sees it and
//! authorize a rule on it ([`App::find_authorized`]).
//!
//! Nothing here knows HTTP or the API's JSON: the API router keeps its own state on top
//! (`api::view::ApiState`, with the rendered-view cache).

use crate::db::{self, Db};
use crate::domain::Image;
use crate::metrics::Metrics;
use crate::policy::{Context, Denied, Enforcer, Rule, Target};
use shared::config::{Config, StoreSet};
use shared::image::ImageId;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// The shared state of the control plane; cheap to clone.
#[derive(Debug, Clone)]
pub struct App(Arc<AppInner>);

/// The parts of [`App`].
#[derive(Debug)]
pub struct AppInner {
    /// The effective configuration.
    pub config: Config,
    /// The metadata database.
    pub db: Db,
    /// The policy enforcer.
    pub policy: Enforcer,
    /// Metrics recorder.
    pub metrics: Metrics,
    /// The configured stores (`enabled_backends`, or the one legacy `file` store).
    pub stores: StoreSet,
    /// Who is calling: noauth headers or Keystone tokens (`[auth] mode`).
    pub auth: crate::auth::Authenticator,
    /// The `glance-download` imports running on this node (their tokens, in memory only).
    pub glance_downloads: crate::glance_download::Downloads,
    /// Striped per-image write locks: API writes to one image queue here instead of
    /// retrying optimistic updates against each other. (Correctness does not depend on them:
    /// every write is still version- or status-guarded in the database.)
    write_locks: Vec<tokio::sync::Mutex<()>>,
}

/// Number of write-lock stripes.
const WRITE_LOCK_STRIPES: usize = 64;

impl App {
    /// Bundles the parts, with Glance's default policy.
    pub fn new(config: Config, db: Db, metrics: Metrics) -> App {
        App::with_policy(config, db, metrics, Enforcer::default())
    }

    /// Bundles the parts with a loaded policy.
    pub fn with_policy(config: Config, db: Db, metrics: Metrics, policy: Enforcer) -> App {
        let stores = config.stores();
        let write_locks = (0..WRITE_LOCK_STRIPES)
            .map(|_| tokio::sync::Mutex::new(()))
            .collect();
        let auth = crate::auth::Authenticator::new(&config);
        App(Arc::new(AppInner {
            auth,
            glance_downloads: Default::default(),
            config,
            db,
            policy,
            metrics,
            stores,
            write_locks,
        }))
    }

    /// Serialises API writes to one image (a striped lock; unrelated images may share one).
    pub async fn lock_image(&self, id: ImageId) -> tokio::sync::MutexGuard<'_, ()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut h);
        self.write_locks[(h.finish() as usize) % self.write_locks.len()]
            .lock()
            .await
    }
}

/// Why [`App::find_authorized`] found no image to act on.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No such image, or not one the caller may see (404, never 403).
    #[error("no image {0} visible to the caller")]
    NotFound(ImageId),
    /// The caller sees the image but the rule refuses (403).
    #[error("{}", shared::error::not_allowed(.0.name()))]
    Forbidden(Rule),
    /// The database failed (500).
    #[error(transparent)]
    Db(#[from] db::Error),
}

impl App {
    /// The image `id` as `ctx` sees it ([`App::find_visible`]), if `rule` allows `ctx` to act
    /// on it ([`Enforcer::authorize`]). The API handlers and the channel server both start
    /// here, so the same image gets the same answer on the data and the metadata routes.
    pub async fn find_authorized(
        &self,
        ctx: &Context,
        id: ImageId,
        rule: Rule,
    ) -> Result<Arc<Image>, Refusal> {
        let image = self
            .find_visible(ctx, id)
            .await?
            .ok_or(Refusal::NotFound(id))?;
        match self.policy.authorize(ctx, rule, &Target::of(&image)) {
            Ok(()) => Ok(image),
            Err(Denied::NotFound) => Err(Refusal::NotFound(id)),
            Err(Denied::Forbidden(rule)) => Err(Refusal::Forbidden(rule)),
        }
    }

    /// The image `id` if it exists (not deleted or pending delete) and `ctx` may see it:
    /// Glance's `is_image_visible` (owner, public/community, any member of a shared image,
    /// admin, ownerless) and then the `get_image` rule. Used by the API and the channel alike.
    pub async fn find_visible(
        &self,
        ctx: &Context,
        id: ImageId,
    ) -> Result<Option<Arc<Image>>, db::Error> {
        self.find_seen(ctx, id, false).await
    }

    /// Like [`App::find_visible`] but deleted images count too: a list `marker` stays valid
    /// after its image is deleted (the row is kept), so pagination survives deletes.
    pub async fn find_marker(
        &self,
        ctx: &Context,
        id: ImageId,
    ) -> Result<Option<Arc<Image>>, db::Error> {
        self.find_seen(ctx, id, true).await
    }

    async fn find_seen(
        &self,
        ctx: &Context,
        id: ImageId,
        include_deleted: bool,
    ) -> Result<Option<Arc<Image>>, db::Error> {
        let Some(image) = db::images::get(&self.db, id)
            .await?
            .filter(|i| include_deleted || !i.is_deleted())
        else {
            return Ok(None);
        };
        let membership = match (&ctx.project_id, image.visibility) {
            (Some(p), shared::image::Visibility::Shared)
                if !ctx.is_admin && !ctx.owns(image.owner.as_deref()) =>
            {
                db::members::get(&self.db, id, p).await?.map(|m| m.status)
            }
            _ => None,
        };
        if !crate::policy::is_visible(ctx, &image, membership) {
            return Ok(None);
        }
        let target = Target::of(&image);
        if !self.policy.check(ctx, Rule::GetImage, &target) {
            return Ok(None);
        }
        Ok(Some(image))
    }
}

impl Deref for App {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}
