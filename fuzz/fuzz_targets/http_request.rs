//! Any bytes as a request head: the parser must never panic, and a parsed head must be
//! internally consistent (framing agrees with the headers, the head fits the input).
#![no_main]

use dataplane::http::{Framing, parse_request, request_framing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((head, used))) = parse_request(data, 100) {
        assert!(used <= data.len());
        assert!(head.target().starts_with('/'));
        let framing = request_framing(head.headers()).expect("parsed heads have valid framing");
        assert_eq!(framing, head.framing);
        if framing == Framing::Chunked {
            assert!(head.header("content-length").is_none(), "CL and TE together");
        }
    }
});
