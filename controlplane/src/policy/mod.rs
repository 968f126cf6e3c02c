//! Who may do what to which image: the request [`Context`] and the [`Enforcer`].
//!
//! Rule names are Glance's (`glance/policies/image.py`) so operators recognise them:
//! `get_image`, `get_images`, `add_image`, `modify_image`, `delete_image`, `upload_image`,
//! `download_image`, `publicize_image`, `communitize_image`.
//!
//! Handlers call the enforcer explicitly, before `domain` and `db` (STYLE §7). An image the
//! caller cannot see is reported as *not found*, never *forbidden*
//! ([`Enforcer::authorize`] does that translation, like Glance's `ImageAPIPolicy._enforce`).
//!
//! ```
//! use controlplane::policy::{Context, Enforcer, Rule, Target};
//! use shared::channel::Credentials;
//! use shared::image::Visibility;
//!
//! let ctx = Context::from_credentials(&Credentials {
//!     project_id: Some("p1".into()),
//!     roles: Some("member".into()),
//!     ..Default::default()
//! });
//! let target = Target { owner: Some("p1"), visibility: Visibility::Private };
//! assert!(Enforcer::default().check(&ctx, Rule::ModifyImage, &target));
//! assert!(!Enforcer::default().check(&ctx, Rule::PublicizeImage, &target));
//! ```

mod context;
mod enforcer;

pub use context::Context;
pub use enforcer::{Denied, Enforcer, Rule, Target};
