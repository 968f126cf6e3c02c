//! Upload hashing: the pipelined hasher uploads use (md5 and sha512 on two threads), the
//! inline one-thread hasher, and the naive baseline (two separate passes: md5, then sha512).
//!
//! `implementations`: every candidate implementation of the digests uploads compute, in 1 MiB
//! updates — OpenSSL (the `openssl` crate), aws-lc-rs, ring, RustCrypto — which is how
//! `dataplane::hash` picked OpenSSL's (`cargo bench -p benches --bench hash -- implementations`).
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
    // with the format inspector on the secure hash's thread, as an upload of a bare image runs
    for (name, inspect) in [
        ("pipelined_two_threads/1048576", false),
        ("pipelined_two_threads_inspected/1048576", true),
    ] {
        g.bench_function(name, |b| {
            use dataplane::hash::pipeline::{BufferPool, PipelinedHasher};
            let rt = compio::runtime::Runtime::new().unwrap();
            let pool = BufferPool::new(1 << 20, 8);
            b.iter(|| {
                rt.block_on(async {
                    let mut p =
                        PipelinedHasher::start(HashAlgo::Sha512, pool.clone(), 4, inspect, 8 << 20);
                    for piece in data.chunks(1 << 20) {
                        let mut buf = p.buffer().await;
                        buf.push_slice(piece);
                        drop(p.submit(buf, false));
                    }
                    p.finish().await.unwrap()
                })
            })
        });
    }
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

fn implementations(c: &mut Criterion) {
    use openssl::hash::{Hasher, MessageDigest};
    let data: Vec<u8> = (0..32 << 20)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut g = c.benchmark_group("implementations");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    let chunks = || data.chunks(1 << 20);
    let openssl = |md: MessageDigest| {
        move |b: &mut criterion::Bencher<'_>| {
            b.iter(|| {
                let mut h = Hasher::new(md).unwrap();
                chunks().for_each(|c| h.update(c).unwrap());
                h.finish().unwrap()
            })
        }
    };
    fn rustcrypto<D: sha2::Digest>(data: &[u8]) -> impl FnMut(&mut criterion::Bencher<'_>) + '_ {
        move |b| {
            b.iter(|| {
                let mut h = D::new();
                data.chunks(1 << 20).for_each(|c| h.update(c));
                h.finalize()
            })
        }
    }
    let ring = |a: &'static ring::digest::Algorithm| {
        move |b: &mut criterion::Bencher<'_>| {
            b.iter(|| {
                let mut h = ring::digest::Context::new(a);
                chunks().for_each(|c| h.update(c));
                h.finish()
            })
        }
    };
    let awslc = |a: &'static aws_lc_rs::digest::Algorithm| {
        move |b: &mut criterion::Bencher<'_>| {
            b.iter(|| {
                let mut h = aws_lc_rs::digest::Context::new(a);
                chunks().for_each(|c| h.update(c));
                h.finish()
            })
        }
    };
    g.bench_function("md5/openssl", openssl(MessageDigest::md5()));
    g.bench_function("md5/rustcrypto", rustcrypto::<md5::Md5>(&data));
    g.bench_function("sha256/openssl", openssl(MessageDigest::sha256()));
    g.bench_function("sha256/ring", ring(&ring::digest::SHA256));
    g.bench_function("sha256/aws-lc", awslc(&aws_lc_rs::digest::SHA256));
    g.bench_function("sha256/rustcrypto", rustcrypto::<sha2::Sha256>(&data));
    g.bench_function("sha512/openssl", openssl(MessageDigest::sha512()));
    g.bench_function("sha512/ring", ring(&ring::digest::SHA512));
    g.bench_function("sha512/aws-lc", awslc(&aws_lc_rs::digest::SHA512));
    g.bench_function("sha512/rustcrypto", rustcrypto::<sha2::Sha512>(&data));
    g.bench_function("sha3_256/openssl", openssl(MessageDigest::sha3_256()));
    g.bench_function("sha3_256/aws-lc", awslc(&aws_lc_rs::digest::SHA3_256));
    g.bench_function("sha3_256/rustcrypto", rustcrypto::<sha3::Sha3_256>(&data));
    let blake2b = MessageDigest::from_name("BLAKE2B512").expect("OpenSSL has BLAKE2b");
    g.bench_function("blake2b/openssl", openssl(blake2b));
    g.bench_function(
        "blake2b/rustcrypto",
        rustcrypto::<blake2::Blake2b512>(&data),
    );
    g.finish();
}

criterion_group!(benches, hashing, implementations);
criterion_main!(benches);
