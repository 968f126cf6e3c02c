//! Every upload records the xxh3-64 of each block of its data with the image (what the block
//! cache's fills verify): through the real `glint serve`, into the filesystem store, the
//! hashes in the database equal those of the bytes sent, cut at `image_cache_block_size`.

use loadtest::harness::{Glint, binary, random_bytes};

#[path = "support/workload.rs"]
mod workload;

#[test]
fn an_upload_records_the_hash_of_each_block() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("glint.toml");
    std::fs::write(&config, "[image_cache]\nimage_cache_block_size = 65536\n").unwrap();
    let g = Glint::start(
        &binary(env!("CARGO_BIN_EXE_glint")),
        &["--config", config.to_str().unwrap()],
    )
    .unwrap();
    let data = random_bytes((1 << 20) + 100);
    let id = workload::create(&g, "blocks");
    assert_eq!(workload::put(&g, &id, data.clone()).0, 204);

    let want: String = data
        .chunks(65536)
        .map(|b| format!("{:016x}", xxhash_rust::xxh3::xxh3_64(b)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let url = format!(
        "sqlite://{}?mode=ro",
        g.dir().join("data/glint.db").display()
    );
    let (block_size, hashes): (i64, String) = rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query_as("SELECT block_size, hashes FROM image_blocks WHERE image_id = ?")
            .bind(&id)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    });
    assert_eq!(block_size, 65536);
    assert_eq!(hashes.len(), 17 * 16, "16 whole blocks and a short one");
    assert_eq!(hashes, want);
}
