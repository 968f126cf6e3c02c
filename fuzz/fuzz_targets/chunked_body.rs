//! Any bytes as a chunked body, fed in pieces of every split: the decoder must never panic,
//! never emit more than it was given, and give the same answer however the input is split.
#![no_main]

use dataplane::http::ChunkedDecoder;
use libfuzzer_sys::fuzz_target;

fn decode(data: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), ()> {
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() && !d.is_done() {
        let end = (at + step).min(data.len());
        let n = d.decode(&data[at..end], &mut out, usize::MAX).map_err(|_| ())?;
        if n == 0 {
            break;
        }
        at += n;
    }
    Ok((out, at, d.is_done()))
}

fuzz_target!(|data: &[u8]| {
    let whole = decode(data, data.len().max(1));
    if let Ok((out, used, _)) = &whole {
        assert!(out.len() <= *used);
    }
    for step in [1, 3, 7] {
        let split = decode(data, step);
        match (&whole, &split) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "step {step}"),
            (Err(()), Err(())) => {}
            // an error in a later part may be unseen when an earlier split stops at the end
            _ => assert!(whole.as_ref().is_ok_and(|w| !w.2) || split.as_ref().is_ok_and(|s| !s.2)),
        }
    }
});
