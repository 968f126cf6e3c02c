//! What a `glance-download` import keeps in the control plane's memory, never in the
//! database: the caller's token (sent to the other region's Glance), the remote image's URL
//! (or why there is none) and, once the image has taken the remote metadata, how to undo that.
//!
//! The token is the caller's, as Glance uses it (`context.auth_token`): it is kept only while
//! the import runs, on the node that took the request (the job runs there) and is handed to
//! its data plane with the job. Glance keeps it the same way (in the task's process), so a
//! restart loses it here as there: the import then fails cleanly (the image back to
//! `queued`) and the caller imports again.

use crate::domain::import::RemoteRevert;
use std::collections::HashMap;
use std::sync::Mutex;

/// One import's state.
struct Pending {
    token: String,
    source: Result<String, String>,
    revert: Option<RemoteRevert>,
}

/// The `glance-download` imports running on this node, by task id.
#[derive(Default)]
pub struct Downloads(Mutex<HashMap<String, Pending>>);

impl std::fmt::Debug for Downloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the tokens
        f.debug_struct("Downloads")
            .field("running", &self.lock().len())
            .finish()
    }
}

/// Why a job finds no state: the process restarted since the import was asked for.
pub const GONE: &str = "The caller's credentials for this glance-download are gone (glint \
                        restarted since it was asked for); import the image again";

impl Downloads {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the import of task `task`: `source` is the remote image's URL, or why there is
    /// none (the task fails with it).
    pub fn insert(&self, task: &str, token: String, source: Result<String, String>) {
        let p = Pending {
            token,
            source,
            revert: None,
        };
        self.lock().insert(task.to_owned(), p);
    }

    /// The token and the remote image's URL of task `task`, or why the import cannot run.
    pub fn source(&self, task: &str) -> Result<(String, String), String> {
        match self.lock().get(task) {
            Some(p) => p.source.clone().map(|url| (p.token.clone(), url)),
            None => Err(GONE.to_owned()),
        }
    }

    /// Keeps how to undo the remote metadata (the first time only: a job run again takes it
    /// over an image that already has it).
    pub fn taken(&self, task: &str, revert: RemoteRevert) {
        if let Some(p) = self.lock().get_mut(task) {
            p.revert.get_or_insert(revert);
        }
    }

    /// How to undo the remote metadata task `task` took, if it took any.
    pub fn revert(&self, task: &str) -> Option<RemoteRevert> {
        self.lock().get(task).and_then(|p| p.revert.clone())
    }

    /// Forgets task `task` (its import ended).
    pub fn remove(&self, task: &str) {
        self.lock().remove(task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_until_removed_and_never_shown() {
        let d = Downloads::default();
        assert_eq!(d.source("t1"), Err(GONE.to_owned()));
        d.insert(
            "t1",
            "secret-token".into(),
            Ok("http://r2/v2/images/x".into()),
        );
        d.insert("t2", "other".into(), Err("no endpoint".into()));
        assert_eq!(
            d.source("t1"),
            Ok(("secret-token".into(), "http://r2/v2/images/x".into()))
        );
        assert_eq!(d.source("t2"), Err("no endpoint".into()));
        assert!(!format!("{d:?}").contains("secret"));
        assert_eq!(d.revert("t1"), None);
        d.remove("t1");
        assert_eq!(d.source("t1"), Err(GONE.to_owned()));
    }
}
