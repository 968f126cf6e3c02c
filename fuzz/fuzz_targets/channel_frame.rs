//! Any bytes from the channel socket: decoding never panics or over-reads, and whatever
//! decodes re-encodes to a frame that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::channel::frame::{decode, encode};
use shared::channel::{Request, Response};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((frame, used))) = decode::<Request>(data) {
        assert!(used <= data.len());
        let mut buf = Vec::new();
        encode(frame.corr, &frame.body, &mut buf).unwrap();
        let (again, _) = decode::<Request>(&buf).unwrap().unwrap();
        assert_eq!(again, frame);
    }
    if let Ok(Some((frame, _))) = decode::<Response>(data) {
        let mut buf = Vec::new();
        encode(frame.corr, &frame.body, &mut buf).unwrap();
        assert_eq!(decode::<Response>(&buf).unwrap().unwrap().0, frame);
    }
});
