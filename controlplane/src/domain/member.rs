//! Image members (sharing, GLANCE-API.md §1.6): a project an owner shared a `shared` image
//! with, and whether that project accepted it.
//!
//! 1. The owner adds a member (`pending`); only `shared` images take members (403 otherwise).
//! 2. The member (or an admin) sets `accepted`, `rejected` or back to `pending`; the owner
//!    cannot change a member's status (403).
//! 3. Accepted images appear in the member's default list; pending and rejected ones only
//!    with `member_status`. A member can show the image whatever its status.

use super::Error;
use chrono::{DateTime, Utc};
use shared::image::ImageId;
use std::fmt;
use std::str::FromStr;

/// Glance's `image_member_quota`: most members per image (413 above).
pub const MAX_MEMBERS: usize = 128;

/// A membership status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberStatus {
    /// Shared, not yet answered.
    Pending,
    /// The member accepted: the image is in its default list.
    Accepted,
    /// The member declined.
    Rejected,
}

impl MemberStatus {
    /// Glance's name.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Pending => "pending",
            MemberStatus::Accepted => "accepted",
            MemberStatus::Rejected => "rejected",
        }
    }
}

impl FromStr for MemberStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "pending" => Ok(MemberStatus::Pending),
            "accepted" => Ok(MemberStatus::Accepted),
            "rejected" => Ok(MemberStatus::Rejected),
            other => Err(Error::Invalid(format!(
                "Provided object does not match schema 'member': '{other}' is not one of ['pending', 'accepted', 'rejected']"
            ))),
        }
    }
}

impl fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The shared image.
    pub image_id: ImageId,
    /// The member project.
    pub member: String,
    /// Its answer.
    pub status: MemberStatus,
    /// When the owner added it.
    pub created_at: DateTime<Utc>,
    /// Last status change.
    pub updated_at: DateTime<Utc>,
}

/// Validates a member project id from a request body (non-empty string, ≤255 chars).
pub fn validate_member_id(value: &serde_json::Value) -> Result<String, Error> {
    match value.as_str() {
        Some(s) if !s.trim().is_empty() && s.chars().count() <= 255 => Ok(s.to_owned()),
        Some(_) | None => Err(Error::Invalid(
            "Member to be added not specified or invalid.".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_round_trip() {
        for s in [
            MemberStatus::Pending,
            MemberStatus::Accepted,
            MemberStatus::Rejected,
        ] {
            assert_eq!(s.as_str().parse::<MemberStatus>().unwrap(), s);
        }
        assert!("all".parse::<MemberStatus>().is_err());
        assert!("Accepted".parse::<MemberStatus>().is_err());
    }

    #[test]
    fn member_ids() {
        assert_eq!(validate_member_id(&json!("p2")).unwrap(), "p2");
        for bad in [
            json!(""),
            json!(" "),
            json!(5),
            json!(null),
            json!("x".repeat(256)),
        ] {
            assert!(validate_member_id(&bad).is_err(), "{bad}");
        }
    }
}
