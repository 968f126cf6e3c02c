//! `loadtest`: drives a **real** running glint from outside.
//!
//! Today it holds the test harness ([`harness`]): it starts the real `glint serve` binary on
//! port 0 in a temp directory, waits for readiness by polling (never by sleeping), and keeps
//! the logs when a test fails. The end-to-end tests in `glint/tests/` and the client
//! compatibility scripts in `loadtest/compat/` run against it. The Nova-fleet load generator
//! comes here too.

pub mod harness;
