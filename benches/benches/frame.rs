//! Channel frame codec: encode + decode of the messages sent per transfer.
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shared::channel::frame::{decode, encode};
use shared::channel::{Credentials, Request};
use shared::image::ImageId;

fn frames(c: &mut Criterion) {
    let req = Request::AuthorizeDownload {
        request_id: "req-5b1c8e3e-7f9a-4c59-9a55-2f0c1d2e3f40".into(),
        image_id: ImageId::new_random(),
        credentials: Credentials {
            auth_token: Some("gAAAAAB".repeat(30)),
            ..Default::default()
        },
    };
    let mut buf = Vec::with_capacity(1024);
    encode(1, &req, &mut buf).unwrap();
    let mut g = c.benchmark_group("channel_frame");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_authorize_download", |b| {
        b.iter(|| {
            buf.clear();
            encode(1, &req, &mut buf).unwrap();
        })
    });
    g.bench_function("decode_authorize_download", |b| {
        b.iter(|| decode::<Request>(&buf).unwrap().unwrap())
    });
    g.finish();
}

criterion_group!(benches, frames);
criterion_main!(benches);
