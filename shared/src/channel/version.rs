//! Protocol versions and the handshake rule.

/// The oldest channel protocol version this build speaks. Version 2 sent a refusal's
/// [`Reason`](crate::error::Reason) instead of a bare code; version 3 names stores, lists a
/// download's locations and carries the data plane's jobs; version 4 records what an upload
/// may leave behind (`UploadLeftover`, `Work::AbortUpload`); version 5 has the content
/// inspected (`UploadGranted::inspect_as`, `UploadComplete::virtual_size`); version 6 records
/// block hashes (`UploadComplete::block_hashes`, `BlockHashes`); version 7 sends a download's
/// secure hash (`DownloadGranted::os_hash_value`, its `ETag`); version 8 queues prefetches
/// as jobs (`Work::Prefetch`, `CacheGranted::queued`, `CacheAction::Clear`'s targets); version 9
/// stages and imports (`AuthorizeUpload::stage`, `ImportBegin`, `ImportProgress`,
/// `ImportFinished`, `Work::Import`); version 10 runs `glance-download` (`ImportMetadata`,
/// `ImportSource`, `ImportRefused`, `Work::Import::auth_token` and `refused`); version 11
/// asks before a delete (`AuthorizeDelete`, `DeleteGranted`) and checks added locations
/// (`Work::LocationImport`, `LocationChecked`). Both
/// planes always come from one build, so older versions are not spoken any more.
pub const MIN_VERSION: u16 = 11;
/// The newest channel protocol version this build speaks.
pub const MAX_VERSION: u16 = 11;

/// Picks the highest version both sides speak, if any.
pub fn negotiate(peer_min: u16, peer_max: u16) -> Option<u16> {
    let hi = peer_max.min(MAX_VERSION);
    let lo = peer_min.max(MIN_VERSION);
    (lo <= hi).then_some(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(11, 11), Some(11));
        assert_eq!(negotiate(10, 10), None);
        assert_eq!(negotiate(9, 9), None);
        assert_eq!(negotiate(8, 8), None);
        assert_eq!(negotiate(7, 7), None);
        assert_eq!(negotiate(6, 6), None);
        assert_eq!(negotiate(5, 5), None);
        assert_eq!(negotiate(4, 4), None);
        assert_eq!(negotiate(3, 3), None);
        assert_eq!(negotiate(2, 2), None);
        assert_eq!(negotiate(1, 1), None);
        assert_eq!(negotiate(1, 11), Some(MAX_VERSION));
        assert_eq!(negotiate(MAX_VERSION + 1, MAX_VERSION + 3), None);
        assert_eq!(negotiate(0, 0), None);
    }
}
