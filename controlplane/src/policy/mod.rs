//! Who may do what to which image: the request [`Context`], the [`Enforcer`] with its table of
//! Glance's rules ([`Rule`]), and the oslo.policy rule *language* the rules are written in
//! ([`language`]: parser and evaluator of check strings).
//!
//! Rule names and default check strings are Glance's (`glance/policies/{base,image}.py`), so
//! operators' policy files keep working: `get_image`, `get_images`, `add_image`,
//! `modify_image`, `delete_image`, `upload_image`, `download_image`, `publicize_image`,
//! `communitize_image`, `deactivate`, `reactivate`, `add_member`, `delete_member`,
//! `get_member`, `get_members`, `modify_member`, `get_image_location`, `set_image_location`,
//! `delete_image_location`, `stores_info_detail`, plus `context_is_admin`, `default` and `service_api`. An operator
//! policy file (`[controlplane] policy_file`, env `GLINT_POLICY_FILE`) overrides any of them.
//!
//! Which images a project can *see* at all is Glance's `is_image_visible` ([`is_visible`]),
//! applied before any rule; policy cannot widen it.
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
pub mod language;

pub use context::{Context, role_list};
pub use enforcer::{Denied, Enforcer, Rule, Target, is_visible};
