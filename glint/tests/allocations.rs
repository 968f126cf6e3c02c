//! The download path's steady state: how many heap allocations one image download costs on a
//! data-plane worker thread, counted by a global allocator.
//!
//! A real control plane (in-process, its own threads, SQLite, the real channel and API
//! sockets) and a data-plane worker (on a thread of its own, with the runtime setup, worker
//! state and `serve_connection` the binary uses) serve one image; reqwest downloads it a
//! thousand times on a keep-alive connection. Only allocations made on the worker thread are
//! counted.
//!
//! glint's own code allocates nothing per download once warm (request heads parsed in place,
//! the channel exchange borrowed, heads built in pooled buffers, the file opened relative to
//! the store's directory). What remains is compio's: every io_uring operation (receive the
//! request, write and read the channel, write the head) gets a small heap record in its
//! driver. The bound below is those operations, not a budget for our code.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if COUNTED.try_with(|c| c.get()).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed on to the system allocator unchanged; counting touches only a
// const-initialised thread-local and an atomic, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[path = "support/inproc.rs"]
mod inproc;

use inproc::{Options, Stack};

/// What compio allocates for one kept-alive download of an image that fits the socket
/// buffer: a record for each of its four io_uring operations (receive the request, write the
/// channel request, read its answer, write the head; the body goes by sendfile, a plain
/// system call), and one block of timer bookkeeping for each of the two timeouts armed around
/// the client's read and write (measured). Our own code adds nothing, so one allocation more
/// per download fails this test.
const COMPIO_RECORDS_PER_DOWNLOAD: f64 = 6.5;

#[test]
fn a_download_allocates_only_compio_operation_records() {
    let stack = Stack::start(
        |_| {},
        Options {
            on_worker_thread: Some(|| COUNTED.with(|c| c.set(true))),
            ..Options::default()
        },
    );
    let addr = stack.addr;

    let base = format!("http://{addr}");
    let client = reqwest::blocking::Client::new();
    let created: serde_json::Value = client
        .post(format!("{base}/v2/images"))
        .json(&serde_json::json!({"name": "a", "disk_format": "raw", "container_format": "bare"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 253) as u8).collect();
    let put = client
        .put(format!("{base}/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .body(data.clone())
        .send()
        .unwrap();
    assert_eq!(put.status(), 204);

    let url = format!("{base}/v2/images/{id}/file");
    let download = || {
        let r = client.get(&url).send().unwrap();
        assert_eq!(r.status(), 200);
        let body = r.bytes().unwrap();
        assert_eq!(body.len(), data.len());
    };
    for _ in 0..200 {
        download();
    }
    let n = 1000;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..n {
        download();
    }
    let per_download = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / n as f64;
    println!("allocations per download on the worker thread: {per_download:.2}");
    assert!(
        per_download <= COMPIO_RECORDS_PER_DOWNLOAD,
        "{per_download:.2} allocations per download (compio's operation records allow {COMPIO_RECORDS_PER_DOWNLOAD})"
    );
}
