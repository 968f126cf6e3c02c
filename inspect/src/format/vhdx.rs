//! Hyper-V VHDX. The file identifier `vhdxfile` starts the stream; the virtual size sits three
//! hops further, each found only once the previous one is read, so a [`Probe`] follows them as
//! the stream goes by:
//!
//! 1. the region table at 192 KiB (signature `regi`, an entry count below 2048, 32-byte entries)
//!    names the offset of the metadata region (GUID `8B7CA206-…`);
//! 2. the metadata table there (signature `metadata`, a 16-bit entry count) names the offset,
//!    relative to the region, of the Virtual Disk Size item (GUID `2FA54224-…`);
//! 3. that item is a little-endian u64.
//!
//! Each copy is capped at 64 KiB, like oslo.utils. As in Glance, a table that does not parse
//! leaves the size unknown without refusing the image, while a stream that ends before a region
//! it named is truncated. So is one whose metadata region starts before the end of the region
//! table (the spec puts it at 1 MiB or later): a stream cannot go back for it, and whether
//! Glance can depends on its read size.

use super::{Finding, le_u16, le_u32, le_u64};
use crate::Format;
use crate::capture::Region;

const IDENT: &[u8] = b"vhdxfile";
/// Glance wants the first 32 bytes of the identifier before it counts the header as read.
const IDENT_LEN: usize = 32;
const REGION_TABLE: u64 = 192 * 1024;
/// How much of each table (and of the size item) is copied at most.
const TABLE_LEN: usize = 64 * 1024;
const REGION_SIGNATURE: u32 = u32::from_le_bytes(*b"regi");
const MAX_ENTRIES: usize = 2047;
/// `8B7CA206-4790-4B9A-B8FE-575F050F886E` as stored (first three fields little-endian).
const METADATA_REGION: [u8; 16] = [
    0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b, 0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e,
];
/// `2FA54224-CD1B-4876-B211-5DBED83BF4B8` as stored.
const VIRTUAL_DISK_SIZE: [u8; 16] = [
    0x24, 0x42, 0xa5, 0x2f, 0x1b, 0xcd, 0x76, 0x48, 0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8,
];

/// Follows a VHDX's tables through the stream.
#[derive(Debug, Default, Clone)]
pub(crate) struct Probe {
    /// Whether the start of the stream was looked at (needs 8 bytes).
    decided: bool,
    regions: Option<Region>,
    metadata: Option<Region>,
    size_item: Option<Region>,
    /// A table did not parse: stop following, the size stays unknown.
    broken: bool,
    /// The metadata region lies before the end of the region table that names it.
    behind: bool,
}

/// What a look at the metadata table found.
enum Lookup {
    /// More of the table is needed.
    Pending,
    /// The size item: offset from the region start, length.
    Found(u64, usize),
    /// The table does not parse or has no size item.
    Broken,
}

impl Probe {
    /// Feeds the chunk at stream offset `at`; `head` is the start of the stream as far as known.
    pub(crate) fn feed(&mut self, at: u64, chunk: &[u8], head: &[u8]) {
        if !self.decided {
            if head.len() < IDENT.len() {
                return;
            }
            self.decided = true;
            if head.starts_with(IDENT) {
                self.regions = Some(Region::new(REGION_TABLE, TABLE_LEN));
            }
        }
        let Some(regions) = &mut self.regions else {
            return;
        };
        regions.feed(at, chunk);
        if self.broken {
            return;
        }
        if self.metadata.is_none() && regions.is_full() {
            match metadata_offset(regions.bytes()) {
                Some(offset) if offset >= REGION_TABLE + TABLE_LEN as u64 => {
                    self.metadata = Some(Region::new(offset, TABLE_LEN));
                }
                Some(_) => {
                    // Named after it went by: whether the stream could still offer it would
                    // depend on the buffer sizes, so it never does.
                    self.behind = true;
                    self.broken = true;
                }
                None => self.broken = true,
            }
        }
        if let Some(metadata) = &mut self.metadata {
            metadata.feed(at, chunk);
            if self.size_item.is_none() {
                match size_item(metadata.bytes(), metadata.is_full()) {
                    Lookup::Pending => {}
                    Lookup::Found(offset, len) => {
                        match metadata.start().checked_add(offset) {
                            Some(start) => {
                                let mut item = Region::new(start, len);
                                // The item may lie inside the table already copied.
                                item.feed(metadata.start(), metadata.bytes());
                                self.size_item = Some(item);
                            }
                            None => self.broken = true,
                        }
                        metadata.close();
                    }
                    Lookup::Broken => {
                        self.broken = true;
                        metadata.close();
                    }
                }
            }
        }
        if let Some(item) = &mut self.size_item {
            item.feed(at, chunk);
        }
    }

    /// The VHDX finding once the stream of `size` bytes ended, if it is VHDX.
    pub(crate) fn finish(&self, head: &[u8]) -> Option<Finding> {
        if !head.starts_with(IDENT) {
            return None;
        }
        let truncated = |r: &Option<Region>| r.as_ref().is_some_and(|r| !r.is_full());
        if head.len() < IDENT_LEN
            || self.behind
            || self.regions.is_none()
            || truncated(&self.regions)
            || truncated(&self.metadata)
            || truncated(&self.size_item)
        {
            return Some(Finding::truncated(Format::Vhdx));
        }
        let virtual_size = self
            .size_item
            .as_ref()
            .filter(|item| item.bytes().len() == 8)
            .map(|item| le_u64(item.bytes(), 0));
        Some(Finding::new(Format::Vhdx, virtual_size, None))
    }

    /// Bytes of memory held.
    pub(crate) fn held(&self) -> usize {
        [&self.regions, &self.metadata, &self.size_item]
            .iter()
            .filter_map(|r| r.as_ref())
            .map(Region::held)
            .sum()
    }
}

/// The metadata region's offset from a full region table, if it parses and lists one.
fn metadata_offset(table: &[u8]) -> Option<u64> {
    let count = le_u32(table, 8) as usize;
    if le_u32(table, 0) != REGION_SIGNATURE || count > MAX_ENTRIES {
        return None;
    }
    (0..count)
        .map(|i| &table[16 + 32 * i..16 + 32 * (i + 1)])
        .find(|entry| entry[..16] == METADATA_REGION)
        .map(|entry| le_u64(entry, 16))
}

/// Looks for the Virtual Disk Size item in the metadata table copied so far.
fn size_item(table: &[u8], full: bool) -> Lookup {
    if table.len() < 32 {
        return if full {
            Lookup::Broken
        } else {
            Lookup::Pending
        };
    }
    if &table[..8] != b"metadata" {
        return Lookup::Broken;
    }
    let count = usize::from(le_u16(table, 10));
    let needed = 32 + 32 * count;
    if count > MAX_ENTRIES || needed > TABLE_LEN {
        return Lookup::Broken;
    }
    if table.len() < needed {
        return if full {
            Lookup::Broken
        } else {
            Lookup::Pending
        };
    }
    (0..count)
        .map(|i| &table[32 + 32 * i..32 + 32 * (i + 1)])
        .find(|entry| entry[..16] == VIRTUAL_DISK_SIZE)
        .map_or(Lookup::Broken, |entry| {
            let len = (le_u32(entry, 20) as usize).min(TABLE_LEN);
            Lookup::Found(u64::from(le_u32(entry, 16)), len)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal VHDX: identifier, region table, metadata table and size item at `meta`.
    fn image(meta: u64, item_offset: u32, size: u64) -> Vec<u8> {
        let meta_at = meta as usize;
        let mut b = vec![0; (meta_at + item_offset as usize + 4096).max(300 * 1024)];
        b[..8].copy_from_slice(IDENT);
        let rt = REGION_TABLE as usize;
        b[rt..rt + 4].copy_from_slice(b"regi");
        b[rt + 8..rt + 12].copy_from_slice(&2u32.to_le_bytes());
        // a first entry that is not the metadata region, then the metadata region
        b[rt + 16..rt + 32].copy_from_slice(&[0x66; 16]);
        b[rt + 48..rt + 64].copy_from_slice(&METADATA_REGION);
        b[rt + 64..rt + 72].copy_from_slice(&meta.to_le_bytes());
        b[meta_at..meta_at + 8].copy_from_slice(b"metadata");
        b[meta_at + 10..meta_at + 12].copy_from_slice(&2u16.to_le_bytes());
        b[meta_at + 64..meta_at + 80].copy_from_slice(&VIRTUAL_DISK_SIZE);
        b[meta_at + 80..meta_at + 84].copy_from_slice(&item_offset.to_le_bytes());
        b[meta_at + 84..meta_at + 88].copy_from_slice(&8u32.to_le_bytes());
        let item = meta_at + item_offset as usize;
        b[item..item + 8].copy_from_slice(&size.to_le_bytes());
        b
    }

    fn run(data: &[u8], step: usize) -> Option<Finding> {
        let mut p = Probe::default();
        let mut head = Vec::new();
        let mut at = 0u64;
        for c in data.chunks(step) {
            let room = 64usize.saturating_sub(head.len()).min(c.len());
            head.extend_from_slice(&c[..room]);
            p.feed(at, c, &head);
            at += c.len() as u64;
        }
        p.finish(&head)
    }

    #[test]
    fn follows_the_tables_whatever_the_chunking() {
        let data = image(1 << 20, 64 * 1024, 5 << 30);
        for step in [1, 4096, 1 << 20, data.len()] {
            assert_eq!(
                run(&data, step),
                Some(Finding::new(Format::Vhdx, Some(5 << 30), None)),
                "step {step}"
            );
        }
    }

    #[test]
    fn an_item_inside_the_copied_table_is_found() {
        let data = image(1 << 20, 4096, 77);
        assert_eq!(run(&data, data.len()).unwrap().virtual_size, Some(77));
    }

    #[test]
    fn truncation_and_broken_tables() {
        let data = image(1 << 20, 64 * 1024, 5 << 30);
        let cut = run(&data[..(1 << 20) + 100], 4096).unwrap();
        assert_eq!(cut, Finding::truncated(Format::Vhdx));
        assert_eq!(
            run(&data[..1000], 4096),
            Some(Finding::truncated(Format::Vhdx))
        );
        let mut bad = data.clone();
        bad[REGION_TABLE as usize] = b'x';
        assert_eq!(
            run(&bad, 4096),
            Some(Finding::new(Format::Vhdx, None, None))
        );
        // metadata before the end of the region table: truncated however the stream is split
        for meta in [64 * 1024, 200 * 1024] {
            let behind = image(meta, 64 * 1024, 1);
            for step in [4096, behind.len()] {
                let f = run(&behind, step);
                assert_eq!(f, Some(Finding::truncated(Format::Vhdx)), "{meta} {step}");
            }
        }
        assert_eq!(run(&[0; 300_000], 4096), None);
    }
}
