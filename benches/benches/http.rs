//! The data plane's request-head parser on the heads clients really send, against httparse
//! alone (the baseline: tokenizing only, no framing rules). `glint_parse_request_into` is what
//! a connection does (one head reused for every request: no allocation once warm);
//! `glint_parse_request` builds a fresh head each time.
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dataplane::http::{RequestHead, parse_request, parse_request_into};

const NOVA_GET: &[u8] = b"GET /v2/images/0b3a8c7e-1234-4321-abcd-0123456789ab/file HTTP/1.1\r\n\
Host: glance.example.org:9292\r\nUser-Agent: nova-compute keystoneauth1/5.18.1 python-requests/2.32.3 CPython/3.11.7\r\n\
Accept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\n\
X-Auth-Token: gAAAAABnXYZabcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n\
X-Service-Token: gAAAAABnXYZabcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789\r\n\
x-openstack-request-id: req-5b1c8e3e-7f9a-4c59-9a55-2f0c1d2e3f40\r\n\r\n";

const SDK_PUT: &[u8] = b"PUT /v2/images/0b3a8c7e-1234-4321-abcd-0123456789ab/file HTTP/1.1\r\n\
Host: 127.0.0.1:9292\r\nUser-Agent: openstacksdk/4.22.0 keystoneauth1/5.18.1 python-requests/2.32.3 CPython/3.11.7\r\n\
Accept-Encoding: gzip, deflate\r\nAccept: \r\nConnection: keep-alive\r\nContent-Type: application/octet-stream\r\n\
X-OpenStack-Image-Size: 67108864\r\nContent-Length: 67108864\r\nX-Auth-Token: notused\r\n\r\n";

fn parsing(c: &mut Criterion) {
    let mut g = c.benchmark_group("request_head");
    for (name, head) in [("nova_get", NOVA_GET), ("sdk_put", SDK_PUT)] {
        g.throughput(Throughput::Bytes(head.len() as u64));
        g.bench_function(format!("glint_parse_request/{name}"), |b| {
            b.iter(|| {
                parse_request(std::hint::black_box(head), 100)
                    .unwrap()
                    .unwrap()
            })
        });
        let mut reused = RequestHead::default();
        g.bench_function(format!("glint_parse_request_into/{name}"), |b| {
            b.iter(|| {
                parse_request_into(std::hint::black_box(head), 100, &mut reused)
                    .unwrap()
                    .unwrap()
            })
        });
        g.bench_function(format!("httparse_only/{name}"), |b| {
            b.iter(|| {
                let mut headers = [httparse::EMPTY_HEADER; 100];
                let mut req = httparse::Request::new(&mut headers);
                req.parse(std::hint::black_box(head)).unwrap().unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, parsing);
criterion_main!(benches);
