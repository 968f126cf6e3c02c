//! Upload hashing: the pipelined hasher uploads use (md5 and sha512 on two threads), the
//! inline one-thread hasher, and the naive baseline (two separate passes: md5, then sha512).
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dataplane::hash::MultiHasher;
use shared::image::HashAlgo;

fn hashing(c: &mut Criterion) {
    let data: Vec<u8> = (0..8 << 20)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut g = c.benchmark_group("upload_hash_md5_sha512");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    for buf in [64 << 10, 1 << 20] {
        g.bench_with_input(BenchmarkId::new("multihasher", buf), &buf, |b, &buf| {
            b.iter(|| {
                let mut h = MultiHasher::new(HashAlgo::Sha512);
                data.chunks(buf).for_each(|c| h.update(c));
                h.finish()
            })
        });
    }
    g.bench_function("pipelined_two_threads/1048576", |b| {
        use dataplane::hash::pipeline::{BufferPool, PipelinedHasher};
        let rt = compio::runtime::Runtime::new().unwrap();
        let pool = BufferPool::new(1 << 20, 8);
        b.iter(|| {
            rt.block_on(async {
                let mut p = PipelinedHasher::start(HashAlgo::Sha512, pool.clone(), 4);
                for piece in data.chunks(1 << 20) {
                    let mut buf = p.buffer().await;
                    buf.push_slice(piece);
                    drop(p.submit(buf, false));
                }
                p.finish().await.unwrap()
            })
        })
    });
    g.bench_function("naive_two_passes", |b| {
        use md5::Digest;
        b.iter(|| {
            let a = md5::Md5::digest(&data);
            let s = sha2::Sha512::digest(&data);
            (a, s)
        })
    });
    g.finish();
}

criterion_group!(benches, hashing);
criterion_main!(benches);
