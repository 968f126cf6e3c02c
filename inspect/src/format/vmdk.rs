//! VMware VMDK, the format with the most ways to point qemu at host files, so the one Glance
//! is strictest about. Two shapes are recognised, as in oslo.utils:
//!
//! - **Sparse extent** (magic `KDMV`): a 512-byte little-endian header giving the capacity in
//!   sectors (offset 12), the descriptor's sector and length (28, 36) and the grain directory
//!   offset (56). The header version must be 1–3 and the descriptor must start at sector 1 (qemu
//!   insists too); it is read up to 1 MiB − 1. A grain directory offset of all ones means the
//!   real header is a footer at the end of the stream (VMware's streamOptimized), which must then
//!   match the header and be framed by a footer marker and an end-of-stream marker.
//! - **Bare descriptor**: the stream starts with text (its first 512 bytes, and at least 64,
//!   printable ASCII or whitespace), which qemu also reads as a VMDK. The descriptor is the text up
//!   to the first NUL (1 MiB − 1 at most); it is VMDK if it has a `createType="…"`.
//!
//! The descriptor (case-folded, as qemu reads it) must then pass Glance's `descriptor` check:
//!
//! 1. `createType` is `monolithicSparse` or `streamOptimized` (single file, sparse header);
//! 2. each line is blank, a `#` comment, a `ddb…` entry, a `key=value` field (no space in the
//!    key) or an extent (`RW`, `RDONLY`, `NOACCESS` …); anything else is refused;
//! 3. no extent line contains `/` (a path: CVE-2022-47951);
//! 4. there is at least one extent.
//!
//! The virtual size is the sparse header's capacity. A bare descriptor has no data of its own:
//! Glance fails on it when computing its size; we refuse it outright (see the crate docs).

use super::{Finding, le_u32, le_u64};
use crate::capture::{Region, Tail};
use crate::refusal::quote;
use crate::{Format, Refusal};

const MAGIC: &[u8] = b"KDMV";
/// The part of the sparse header the checks read.
const SPARSE_HEADER_LEN: usize = 64;
const SECTOR: usize = 512;
/// The descriptor is read up to this size, as qemu does.
const DESCRIPTOR_MAX: usize = (1 << 20) - 1;
/// A grain directory offset meaning "see the footer".
const GD_AT_END: u64 = u64::MAX;
const MARKER_FOOTER: u32 = 3;
/// A `createType` this long or longer is treated as absent, as in Glance.
const SUBFORMAT_MAX: usize = 64;
const ALLOWED_SUBFORMATS: [&str; 2] = ["monolithicsparse", "streamoptimized"];
const EXTENT_ACCESS: [&str; 3] = ["rw", "rdonly", "noaccess"];

/// The fields of a sparse extent header the checks use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SparseHeader {
    version: u32,
    capacity_sectors: u64,
    descriptor_sector: u64,
    descriptor_sectors: u64,
    gd_offset: u64,
}

impl SparseHeader {
    /// Reads the header from the first [`SPARSE_HEADER_LEN`] bytes of `b`.
    fn parse(b: &[u8]) -> Self {
        Self {
            version: le_u32(b, 4),
            capacity_sectors: le_u64(b, 12),
            descriptor_sector: le_u64(b, 28),
            descriptor_sectors: le_u64(b, 36),
            gd_offset: le_u64(b, 56),
        }
    }

    fn usable(&self) -> Result<(), Refusal> {
        if !(1..=3).contains(&self.version) {
            return Err(Refusal::VmdkHeader {
                what: "its version is not 1, 2 or 3",
            });
        }
        if self.descriptor_sector != 1 {
            return Err(Refusal::VmdkHeader {
                what: "its descriptor does not start at sector 1",
            });
        }
        Ok(())
    }
}

/// Where the bare-descriptor candidate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextState {
    /// Every byte so far could belong to a descriptor.
    Open,
    /// The descriptor ended (NUL or size cap); later bytes do not matter.
    Ended,
    /// The stream is not a bare descriptor.
    Rejected,
}

/// Follows a VMDK's descriptor through the stream.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    /// Whether the sparse header was looked at (needs 64 bytes).
    decided: bool,
    /// The descriptor named by a usable sparse header.
    descriptor: Option<Region>,
    /// The stream's leading text, while it can still be a bare descriptor.
    text: Vec<u8>,
    text_state: TextState,
}

impl Default for Probe {
    fn default() -> Self {
        Self {
            decided: false,
            descriptor: None,
            text: Vec::new(),
            text_state: TextState::Open,
        }
    }
}

impl Probe {
    /// Feeds the chunk at stream offset `at`; `head` is the start of the stream as far as known.
    pub(crate) fn feed(&mut self, at: u64, chunk: &[u8], head: &[u8]) {
        if self.text_state == TextState::Open {
            self.feed_text(at, chunk);
        }
        if !self.decided && head.len() >= SPARSE_HEADER_LEN {
            self.decided = true;
            if head.starts_with(MAGIC) {
                let header = SparseHeader::parse(head);
                if header.usable().is_ok() {
                    let len = header.descriptor_sectors.saturating_mul(SECTOR as u64);
                    let len = len.min(DESCRIPTOR_MAX as u64) as usize;
                    self.descriptor = Some(Region::new(SECTOR as u64, len));
                }
            }
        }
        if let Some(descriptor) = &mut self.descriptor {
            descriptor.feed(at, chunk);
        }
    }

    fn feed_text(&mut self, at: u64, chunk: &[u8]) {
        if at != self.text.len() as u64 {
            self.reject_text();
            return;
        }
        for &b in chunk {
            let n = self.text.len();
            if b == 0 {
                // A NUL ends the descriptor, but inside the first sector it is not text.
                if n < SECTOR {
                    self.reject_text();
                } else {
                    self.text_state = TextState::Ended;
                }
                return;
            }
            if !b.is_ascii() || (n < SECTOR && !is_text(b)) {
                self.reject_text();
                return;
            }
            if n == DESCRIPTOR_MAX {
                self.text_state = TextState::Ended;
                return;
            }
            self.text.push(b);
        }
    }

    fn reject_text(&mut self) {
        self.text_state = TextState::Rejected;
        self.text = Vec::new();
    }

    /// The VMDK finding once the stream of `size` bytes ended, if it is VMDK.
    pub(crate) fn finish(&self, head: &[u8], size: u64, tail: &Tail) -> Option<Finding> {
        if head.starts_with(MAGIC) {
            return Some(self.finish_sparse(head, tail));
        }
        if self.text_state == TextState::Rejected || size < SPARSE_HEADER_LEN as u64 {
            return None;
        }
        let descriptor = Descriptor::parse(&self.text)?;
        descriptor.subformat.as_ref()?;
        let refusal = descriptor
            .check()
            .err()
            .unwrap_or(Refusal::VmdkBareDescriptor);
        Some(Finding::new(Format::Vmdk, None, Some(refusal)))
    }

    fn finish_sparse(&self, head: &[u8], tail: &Tail) -> Finding {
        if head.len() < SPARSE_HEADER_LEN {
            return Finding::truncated(Format::Vmdk);
        }
        let header = SparseHeader::parse(head);
        if let Err(refusal) = header.usable() {
            return Finding::new(Format::Vmdk, None, Some(refusal));
        }
        let Some(region) = self.descriptor.as_ref().filter(|d| d.is_full()) else {
            return Finding::truncated(Format::Vmdk);
        };
        let descriptor = Descriptor::parse(region.bytes());
        let allowed = descriptor.as_ref().is_some_and(Descriptor::allowed);
        let virtual_size = if allowed {
            header.capacity_sectors.checked_mul(SECTOR as u64)
        } else {
            None
        };
        let refusal = match descriptor {
            Some(d) => d.check().err(),
            None => Some(Refusal::VmdkNoDescriptor),
        };
        if refusal.is_some() || header.gd_offset != GD_AT_END {
            return Finding::new(Format::Vmdk, virtual_size, refusal);
        }
        match tail.last(3 * SECTOR) {
            None => Finding::truncated(Format::Vmdk),
            Some(footer) => {
                Finding::new(Format::Vmdk, virtual_size, check_footer(&header, &footer))
            }
        }
    }

    /// Bytes of memory held.
    pub(crate) fn held(&self) -> usize {
        self.text.capacity() + self.descriptor.as_ref().map_or(0, Region::held)
    }
}

/// Python's idea of a printable or whitespace ASCII character, which is what Glance asks of
/// the first bytes of a bare descriptor.
fn is_text(b: u8) -> bool {
    matches!(b, 0x09..=0x0d | 0x1c..=0x20 | 0x21..=0x7e)
}

/// Python's `str.strip()` set for ASCII text.
fn is_space(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r' | '\x1c'..='\x1f'
    )
}

/// A descriptor as Glance reads it: case-folded ASCII, cut at the first NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Descriptor {
    text: String,
    /// The `createType` value, `None` when absent (or too long to be one).
    subformat: Option<String>,
}

impl Descriptor {
    /// `None` when the bytes are not ASCII.
    fn parse(bytes: &[u8]) -> Option<Self> {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        let text = std::str::from_utf8(&bytes[..end])
            .ok()
            .filter(|t| t.is_ascii())?
            .to_ascii_lowercase();
        const KEY: &str = "createtype=\"";
        let subformat = text.find(KEY).and_then(|at| {
            let from = at + KEY.len();
            // No closing quote: Glance's slice then stops one byte short of the end.
            let to = text[from..]
                .find('"')
                .map_or(text.len().saturating_sub(1), |n| from + n);
            let value = text.get(from..to.max(from)).unwrap_or("");
            (value.len() < SUBFORMAT_MAX).then(|| value.to_string())
        });
        Some(Self { text, subformat })
    }

    fn allowed(&self) -> bool {
        self.subformat
            .as_deref()
            .is_some_and(|s| ALLOWED_SUBFORMATS.contains(&s))
    }

    /// Glance's `descriptor` safety check.
    fn check(&self) -> Result<(), Refusal> {
        if self.text.is_empty() {
            return Err(Refusal::VmdkNoDescriptor);
        }
        if !self.allowed() {
            return Err(Refusal::VmdkSubformat {
                subformat: quote(self.subformat.as_deref().unwrap_or("formatnotfound")),
            });
        }
        let mut extents = Vec::new();
        for line in self.text.split('\n').map(|l| l.trim_matches(is_space)) {
            if line.is_empty() || line.starts_with('#') || line.starts_with("ddb") {
                continue;
            }
            if line.find('=').is_some_and(|eq| !line[..eq].contains(' ')) {
                continue;
            }
            let access = line.split(' ').next().unwrap_or("");
            if EXTENT_ACCESS.contains(&access) {
                extents.push(line);
                continue;
            }
            return Err(Refusal::VmdkDescriptorLine { line: quote(line) });
        }
        if let Some(line) = extents.iter().find(|e| e.contains('/')) {
            return Err(Refusal::VmdkExtentPath { line: quote(line) });
        }
        if extents.is_empty() {
            return Err(Refusal::VmdkNoExtents);
        }
        Ok(())
    }
}

/// Glance's `footer` check over the last three sectors: footer marker, footer, end of stream.
fn check_footer(header: &SparseHeader, t: &[u8]) -> Option<Refusal> {
    let what = |what| Some(Refusal::VmdkFooter { what });
    let footer = SparseHeader::parse(&t[SECTOR..]);
    let zero = |b: &[u8]| b.iter().all(|&x| x == 0);
    if &t[SECTOR..SECTOR + 4] != MAGIC {
        return what("its signature differs from the header's");
    }
    if footer.version != header.version {
        return what("its version differs from the header's");
    }
    if (footer.descriptor_sector, footer.descriptor_sectors)
        != (header.descriptor_sector, header.descriptor_sectors)
    {
        return what("it names a different descriptor than the header");
    }
    if footer.gd_offset == GD_AT_END {
        return what("it points at another footer");
    }
    let marker = &t[..SECTOR];
    if le_u32(marker, 8) != 0 || le_u32(marker, 12) != MARKER_FOOTER || !zero(&marker[16..]) {
        return what("its footer marker is invalid");
    }
    if !zero(&t[2 * SECTOR..]) {
        return what("its end-of-stream marker is invalid");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# Disk DescriptorFile\nversion=1\nCID=8c601f0\nparentCID=ffffffff\n\
        createType=\"monolithicSparse\"\n\n# Extent description\nRW 131072 SPARSE \"ms.vmdk\"\n\n\
        # The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\nddb.adapterType = \"ide\"\n";

    fn check(text: &str) -> Result<(), Refusal> {
        Descriptor::parse(text.as_bytes()).unwrap().check()
    }

    /// A sparse header plus `descriptor` at sector 1 and `extra` sectors after it.
    fn sparse(descriptor: &str, gd_offset: u64, extra: usize) -> Vec<u8> {
        let mut b = vec![0; SECTOR * (21 + extra)];
        b[..4].copy_from_slice(MAGIC);
        b[4..8].copy_from_slice(&3u32.to_le_bytes());
        b[12..20].copy_from_slice(&131072u64.to_le_bytes());
        b[28..36].copy_from_slice(&1u64.to_le_bytes());
        b[36..44].copy_from_slice(&20u64.to_le_bytes());
        b[56..64].copy_from_slice(&gd_offset.to_le_bytes());
        b[SECTOR..SECTOR + descriptor.len()].copy_from_slice(descriptor.as_bytes());
        b
    }

    fn run(data: &[u8], step: usize) -> Option<Finding> {
        let mut p = Probe::default();
        let mut tail = Tail::default();
        let mut head = Vec::new();
        let mut at = 0u64;
        for c in data.chunks(step) {
            let room = 512usize.saturating_sub(head.len()).min(c.len());
            head.extend_from_slice(&c[..room]);
            p.feed(at, c, &head);
            tail.feed(c);
            at += c.len() as u64;
        }
        p.finish(&head, at, &tail)
    }

    #[test]
    fn a_clean_descriptor_passes() {
        assert_eq!(check(GOOD), Ok(()));
        assert_eq!(
            check(&GOOD.replace("monolithicSparse", "streamOptimized")),
            Ok(())
        );
        // a well-formed extra field is allowed, as Glance allows it
        assert_eq!(check(&format!("{GOOD}evil=\"x\"\r\n")), Ok(()));
    }

    #[test]
    fn glance_descriptor_rules() {
        let sub = check(&GOOD.replace("monolithicSparse", "monolithicFlat"));
        assert_eq!(
            sub,
            Err(Refusal::VmdkSubformat {
                subformat: "monolithicflat".into()
            })
        );
        assert_eq!(
            check(&GOOD.replace("createType", "kind"))
                .unwrap_err()
                .reason(),
            "vmdk_subformat"
        );
        assert_eq!(
            check(&format!("{GOOD}some bare words\n")),
            Err(Refusal::VmdkDescriptorLine {
                line: "some bare words".into()
            })
        );
        assert_eq!(
            check(&format!("{GOOD}spaced key = 1\n"))
                .unwrap_err()
                .reason(),
            "vmdk_descriptor_line"
        );
        assert_eq!(
            check(&GOOD.replace("\"ms.vmdk\"", "\"/etc/passwd\"")),
            Err(Refusal::VmdkExtentPath {
                line: "rw 131072 sparse \"/etc/passwd\"".into()
            })
        );
        assert_eq!(
            check(&GOOD.replace("RW 131072 SPARSE \"ms.vmdk\"", "")),
            Err(Refusal::VmdkNoExtents)
        );
        assert_eq!(check(""), Err(Refusal::VmdkNoDescriptor));
        assert_eq!(Descriptor::parse("caf\u{e9}".as_bytes()), None);
    }

    #[test]
    fn subformat_parsing_follows_glance() {
        let sub = |t: &str| Descriptor::parse(t.as_bytes()).unwrap().subformat;
        assert_eq!(
            sub("createType=\"streamOptimized\"\n"),
            Some("streamoptimized".into())
        );
        assert_eq!(sub("createtype=\"abc"), Some("ab".into()));
        assert_eq!(sub(&format!("createType=\"{}\"", "x".repeat(64))), None);
        assert_eq!(sub("nothing here"), None);
        assert_eq!(sub("createType=\"a\"\0createType=\"b\""), Some("a".into()));
    }

    #[test]
    fn sparse_images_whatever_the_chunking() {
        let data = sparse(GOOD, 30, 100);
        for step in [1, 7, 512, 4096, data.len()] {
            let f = run(&data, step).unwrap();
            assert_eq!(
                f,
                Finding::new(Format::Vmdk, Some(131072 * 512), None),
                "step {step}"
            );
        }
        let bad = sparse(&GOOD.replace("\"ms.vmdk\"", "\"../x/y\""), 30, 0);
        assert_eq!(
            run(&bad, 4096).unwrap().refusal.unwrap().reason(),
            "vmdk_extent_path"
        );
        let truncated = &data[..SECTOR * 10];
        assert_eq!(run(truncated, 4096), Some(Finding::truncated(Format::Vmdk)));
        assert_eq!(
            run(&data[..40], 4096),
            Some(Finding::truncated(Format::Vmdk))
        );
    }

    #[test]
    fn bad_sparse_headers_are_refused() {
        let mut v9 = sparse(GOOD, 30, 0);
        v9[4] = 9;
        assert_eq!(
            run(&v9, 4096).unwrap().refusal.unwrap().reason(),
            "vmdk_header"
        );
        let mut moved = sparse(GOOD, 30, 0);
        moved[28] = 2;
        assert_eq!(
            run(&moved, 4096).unwrap().refusal.unwrap().reason(),
            "vmdk_header"
        );
    }

    /// A streamOptimized image whose grain directory is at the end, with a valid footer.
    fn with_footer() -> Vec<u8> {
        let desc = GOOD.replace("monolithicSparse", "streamOptimized");
        let mut b = sparse(&desc, GD_AT_END, 10);
        let mut marker = vec![0; SECTOR];
        marker[12..16].copy_from_slice(&MARKER_FOOTER.to_le_bytes());
        let mut footer = b[..SECTOR].to_vec();
        footer[56..64].copy_from_slice(&30u64.to_le_bytes());
        b.extend_from_slice(&marker);
        b.extend_from_slice(&footer);
        b.extend_from_slice(&[0; SECTOR]);
        b
    }

    #[test]
    fn footers_are_checked_against_the_header() {
        let good = with_footer();
        for step in [1, 1000, good.len()] {
            assert_eq!(run(&good, step).unwrap().refusal, None, "step {step}");
        }
        let n = good.len();
        let cases: [(usize, u8); 5] = [
            (n - 2 * SECTOR, b'X'),      // footer signature
            (n - 2 * SECTOR + 4, 2),     // footer version
            (n - 2 * SECTOR + 56, 0xff), // footer points at a footer (with the rest 0xff)
            (n - 3 * SECTOR + 100, 1),   // marker padding
            (n - 1, 1),                  // end-of-stream padding
        ];
        for (at, value) in cases {
            let mut bad = good.clone();
            if value == 0xff {
                bad[at..at + 8].fill(0xff);
            } else {
                bad[at] = value;
            }
            assert_eq!(
                run(&bad, 4096).unwrap().refusal.unwrap().reason(),
                "vmdk_footer",
                "byte {at}"
            );
        }
    }

    #[test]
    fn bare_descriptors_are_vmdk_and_refused() {
        let flat = "# Disk DescriptorFile\nversion=1\nCID=d375dfca\nparentCID=ffffffff\n\
            createType=\"monolithicFlat\"\n\nRW 2048 FLAT \"/etc/passwd\" 0\n";
        let f = run(flat.as_bytes(), 1).unwrap();
        assert_eq!(f.refusal.unwrap().reason(), "vmdk_subformat");
        let sparse_named = GOOD.replace("\"ms.vmdk\"", "\"/etc/passwd\"");
        let f = run(sparse_named.as_bytes(), 4096).unwrap();
        assert_eq!(f.refusal.unwrap().reason(), "vmdk_extent_path");
        let f = run(GOOD.as_bytes(), 4096).unwrap();
        assert_eq!(f.refusal, Some(Refusal::VmdkBareDescriptor));
        // text followed by binary data after a NUL beyond the first sector
        let mut padded = GOOD.as_bytes().to_vec();
        padded.resize(600, b' ');
        padded.extend_from_slice(&[0, 0xff, 0x80, 1]);
        assert_eq!(
            run(&padded, 3).unwrap().refusal,
            Some(Refusal::VmdkBareDescriptor)
        );
    }

    #[test]
    fn ordinary_text_and_binary_are_not_vmdk() {
        assert_eq!(
            run(
                b"hello world, this is not a disk but it is long enough to count.\n",
                5
            ),
            None
        );
        assert_eq!(
            run(b"createType=\"monolithicSparse\" RW 1 SPARSE \"x\"", 5),
            None
        );
        let mut binary = GOOD.as_bytes().to_vec();
        binary[10] = 0;
        assert_eq!(run(&binary, 4096), None);
    }
}
