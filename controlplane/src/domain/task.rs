//! Glance's tasks: the record of an asynchronous operation (an interoperable import is a task
//! of type `api_image_import`), its status machine (`pending → processing → success |
//! failure`) and its two JSON views (`GET /v2/tasks/{id}` and the list's stubs; the image's
//! task list has Glance's database shape).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use shared::image::ImageId;

/// The type of an interoperable import's task.
pub const API_IMAGE_IMPORT: &str = "api_image_import";

/// A task's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// Created, not started.
    Pending,
    /// Running.
    Processing,
    /// Done.
    Success,
    /// Given up (`message` says why).
    Failure,
}

impl TaskStatus {
    /// Every status, in Glance's order.
    pub const ALL: [TaskStatus; 4] = [
        TaskStatus::Pending,
        TaskStatus::Processing,
        TaskStatus::Success,
        TaskStatus::Failure,
    ];

    /// Glance's name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Processing => "processing",
            TaskStatus::Success => "success",
            TaskStatus::Failure => "failure",
        }
    }

    /// Whether the task has ended.
    pub fn is_final(self) -> bool {
        matches!(self, TaskStatus::Success | TaskStatus::Failure)
    }
}

impl std::str::FromStr for TaskStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        TaskStatus::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or(())
    }
}

/// How long a finished task stays visible: `[task] task_time_to_live` hours.
pub fn ttl(hours: u64) -> chrono::Duration {
    // capped where chrono's durations end (~292 million years)
    chrono::Duration::hours(
        i64::try_from(hours)
            .unwrap_or(i64::MAX)
            .min(i64::MAX / 3_600_000),
    )
}

/// One task.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Its id (a UUID).
    pub id: String,
    /// `api_image_import` (or a legacy type).
    pub kind: String,
    /// Where it is.
    pub status: TaskStatus,
    /// The project that asked.
    pub owner: Option<String>,
    /// The image it works on.
    pub image_id: Option<ImageId>,
    /// The request that made it.
    pub request_id: Option<String>,
    /// The user that asked.
    pub user_id: Option<String>,
    /// What was asked (a JSON object).
    pub input: Value,
    /// What came of it (a JSON object, on success).
    pub result: Option<Value>,
    /// Progress or the reason of a failure.
    pub message: String,
    /// When it may be purged (set when it ends).
    pub expires_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Glance's time format in task views (`timeutils.isotime`: seconds, `Z`).
fn isotime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Python's `datetime.isoformat()` of a naive UTC time, as Glance's JSON serializer writes
/// the image task list's timestamps.
fn isoformat(t: DateTime<Utc>) -> String {
    if t.timestamp_subsec_micros() == 0 {
        t.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
    }
}

impl Task {
    /// `/v2/tasks/{id}`.
    pub fn self_link(&self) -> String {
        format!("/v2/tasks/{}", self.id)
    }

    /// `GET /v2/tasks/{id}` (and the answer to `POST /v2/tasks`).
    pub fn view(&self) -> Value {
        let mut m = self.stub_fields();
        m.insert("input".into(), self.input.clone());
        m.insert("message".into(), json!(self.message));
        m.insert("result".into(), self.result.clone().unwrap_or(Value::Null));
        if let Some(id) = &self.image_id {
            m.insert("image_id".into(), json!(id.to_string()));
        }
        if let Some(r) = &self.request_id {
            m.insert("request_id".into(), json!(r));
        }
        if let Some(u) = &self.user_id {
            m.insert("user_id".into(), json!(u));
        }
        Value::Object(m)
    }

    /// One entry of `GET /v2/tasks` (no input, result or message).
    pub fn stub(&self) -> Value {
        Value::Object(self.stub_fields())
    }

    fn stub_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("type".into(), json!(self.kind));
        m.insert("status".into(), json!(self.status.as_str()));
        // the task schema's owner is a string: a task of no project (an unauthenticated
        // admin's) leaves it out rather than break clients that validate
        if let Some(o) = &self.owner {
            m.insert("owner".into(), json!(o));
        }
        m.insert("created_at".into(), json!(isotime(self.created_at)));
        m.insert("updated_at".into(), json!(isotime(self.updated_at)));
        if let Some(e) = self.expires_at {
            m.insert("expires_at".into(), json!(isotime(e)));
        }
        m.insert("self".into(), json!(self.self_link()));
        m.insert("schema".into(), json!("/v2/schemas/task"));
        m
    }

    /// An entry of `GET /v2/images/{id}/tasks`: Glance returns its database rows there.
    pub fn image_view(&self) -> Value {
        json!({
            "id": self.id,
            "type": self.kind,
            "status": self.status.as_str(),
            "owner": self.owner,
            "expires_at": self.expires_at.map(isoformat),
            "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at),
            "deleted_at": null,
            "deleted": false,
            "image_id": self.image_id.map(|i| i.to_string()),
            "request_id": self.request_id,
            "user_id": self.user_id,
            "input": self.input,
            "result": self.result,
            "message": self.message,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A task of `owner` on `image`, in `status`, created and last updated at `at`.
    pub(crate) fn task_at(
        owner: &str,
        image: Option<ImageId>,
        status: TaskStatus,
        at: DateTime<Utc>,
    ) -> Task {
        Task {
            id: uuid::Uuid::new_v4().to_string(),
            kind: API_IMAGE_IMPORT.into(),
            status,
            owner: Some(owner.into()),
            image_id: image,
            request_id: Some("req-1".into()),
            user_id: None,
            input: json!({"image_id": image.map(|i| i.to_string())}),
            result: None,
            message: String::new(),
            expires_at: None,
            created_at: at,
            updated_at: at,
        }
    }

    fn sample() -> Task {
        let t = chrono::DateTime::parse_from_rfc3339("2026-12-02T10:00:00.250Z")
            .unwrap()
            .with_timezone(&Utc);
        Task {
            result: Some(json!({"image_id": "x"})),
            message: "Copied 1 MiB".into(),
            expires_at: Some(t),
            ..task_at(
                "p1",
                Some("0b3a8c7e-1234-4321-abcd-0123456789ab".parse().unwrap()),
                TaskStatus::Success,
                t,
            )
        }
    }

    #[test]
    fn views_have_glances_fields() {
        let t = sample();
        let v = t.view();
        assert_eq!(v["created_at"], "2026-12-02T10:00:00Z");
        assert_eq!(v["self"], format!("/v2/tasks/{}", t.id));
        assert_eq!(v["schema"], "/v2/schemas/task");
        assert_eq!(v["message"], "Copied 1 MiB");
        assert!(v.get("user_id").is_none());
        let s = t.stub();
        assert!(s.get("input").is_none() && s.get("message").is_none());
        let i = t.image_view();
        assert_eq!(i["created_at"], "2026-12-02T10:00:00.250000");
        assert_eq!(i["deleted"], false);
        assert_eq!(i["user_id"], Value::Null);
    }

    #[test]
    fn statuses_parse_back() {
        for s in TaskStatus::ALL {
            assert_eq!(s.as_str().parse::<TaskStatus>(), Ok(s));
        }
        assert!("done".parse::<TaskStatus>().is_err());
        assert!(TaskStatus::Failure.is_final() && !TaskStatus::Processing.is_final());
    }
}
