//! The streaming [`Inspector`] and its [`Verdict`].
//!
//! 1. [`Inspector::feed`] gets every buffer of the upload in order. It copies the first
//!    [`HEAD_LEN`] bytes, lets the VMDK and VHDX probes copy the regions their headers name,
//!    and keeps the last [`TAIL_LEN`] bytes.
//! 2. [`Inspector::finish`] asks every format about the captured bytes, then combines the
//!    findings as Glance does: none is raw, one is that format, ISO with MBR/GPT is ISO, and
//!    anything else is refused as several formats. A raw or partitioned stream whose last sector is
//!    a fixed-VHD footer is VHD.

use crate::capture::{Region, TAIL_LEN, Tail};
use crate::format::{self, Finding, HEAD_LEN, vhd, vhdx, vmdk};
use crate::{Format, Refusal};

/// Inspects an image as it streams by; see the crate docs.
#[derive(Debug, Clone)]
pub struct Inspector {
    /// Bytes fed so far.
    size: u64,
    /// The first [`HEAD_LEN`] bytes.
    head: Region,
    vmdk: vmdk::Probe,
    vhdx: vhdx::Probe,
    tail: Tail,
}

/// What the content of an image is, once every byte went through the [`Inspector`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The format of the content; when several matched, the first of them (and `refusal`
    /// says so).
    pub format: Format,
    /// The virtual size in bytes the format declares, when it has one (raw: the byte size).
    pub virtual_size: Option<u64>,
    /// The number of bytes fed.
    pub size: u64,
    /// Why the image must be refused, if it must; [`crate::check`] applies it.
    pub refusal: Option<Refusal>,
}

impl Default for Inspector {
    fn default() -> Self {
        Self {
            size: 0,
            head: Region::new(0, HEAD_LEN),
            vmdk: vmdk::Probe::default(),
            vhdx: vhdx::Probe::default(),
            tail: Tail::default(),
        }
    }
}

impl Inspector {
    /// An inspector that has seen no byte yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes of the image, in order. Buffers may have any size, one byte
    /// included; past the regions the formats need, a call costs a few comparisons and copies at
    /// most [`TAIL_LEN`] bytes.
    pub fn feed(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        let at = self.size;
        self.size += chunk.len() as u64;
        if at < HEAD_LEN as u64 {
            self.head.feed(at, chunk);
        }
        let head = self.head.bytes();
        self.vmdk.feed(at, chunk, head);
        self.vhdx.feed(at, chunk, head);
        self.tail.feed(chunk);
    }

    /// The number of bytes fed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes of memory the inspector holds for captured regions (about 36 KiB for most
    /// images, at most about 1.3 MiB).
    pub fn bytes_buffered(&self) -> usize {
        self.head.held() + self.vmdk.held() + self.vhdx.held() + TAIL_LEN
    }

    /// The verdict once every byte was fed.
    pub fn finish(self) -> Verdict {
        let head = self.head.bytes();
        let size = self.size;
        let mut found: Vec<Finding> = [
            format::qcow2::inspect(head),
            format::qed::inspect(head, size),
            format::vhd::inspect(head),
            self.vhdx.finish(head),
            self.vmdk.finish(head, size, &self.tail),
            format::vdi::inspect(head),
            format::iso::inspect(head),
            format::gpt::inspect(head, size),
            format::luks::inspect(head, size),
        ]
        .into_iter()
        .flatten()
        .collect();

        let partitioned = |f: &Finding| matches!(f.format, Format::Gpt | Format::Mbr);
        if found.len() == 2 && found.iter().any(|f| f.format == Format::Iso) {
            // A hybrid ISO: bootable as a disk through the partition table in front of it.
            found.retain(|f| !partitioned(f));
        }
        if found.iter().all(partitioned) {
            let fixed = self.tail.last(vhd::FOOTER_LEN);
            if let Some(virtual_size) = fixed.and_then(|t| vhd::fixed_footer(&t, size)) {
                // The partition table is the disk inside the VHD; its check still applies.
                let inner = found.pop().and_then(|f| f.refusal);
                found = vec![Finding::new(Format::Vhd, Some(virtual_size), inner)];
            }
        }

        match found.len() {
            0 => Verdict {
                format: Format::Raw,
                virtual_size: Some(size),
                size,
                refusal: None,
            },
            1 => {
                let f = found.remove(0);
                Verdict {
                    format: f.format,
                    virtual_size: f.virtual_size,
                    size,
                    refusal: f.refusal,
                }
            }
            _ => {
                // A safety violation in any of them outranks the ambiguity: it is refused even
                // when format errors are not.
                let refusal = found
                    .iter()
                    .find_map(|f| f.refusal.clone().filter(Refusal::is_safety))
                    .unwrap_or_else(|| Refusal::SeveralFormats {
                        formats: found.iter().map(|f| f.format).collect(),
                    });
                Verdict {
                    format: found[0].format,
                    virtual_size: None,
                    size,
                    refusal: Some(refusal),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(data: &[u8], step: usize) -> Verdict {
        let mut i = Inspector::new();
        for c in data.chunks(step.max(1)) {
            i.feed(c);
        }
        i.finish()
    }

    fn qcow2() -> Vec<u8> {
        let mut b = vec![0; 4096];
        b[..4].copy_from_slice(b"QFI\xfb");
        b[4..8].copy_from_slice(&3u32.to_be_bytes());
        b[24..32].copy_from_slice(&(1u64 << 30).to_be_bytes());
        b
    }

    fn with_mbr(mut b: Vec<u8>) -> Vec<u8> {
        b.resize(b.len().max(512), 0);
        b[510] = 0x55;
        b[511] = 0xaa;
        b[446 + 4] = 0x83;
        b[446 + 8] = 63;
        b
    }

    fn iso() -> Vec<u8> {
        let mut b = vec![0; 64 * 1024];
        b[32768] = 1;
        b[32769..32774].copy_from_slice(b"CD001");
        b[32768 + 80..32768 + 84].copy_from_slice(&32u32.to_le_bytes());
        b[32768 + 128..32768 + 130].copy_from_slice(&2048u16.to_le_bytes());
        b
    }

    #[test]
    fn nothing_recognised_is_raw_with_its_byte_size() {
        for data in [&[][..], &[0; 10], &[0xab; 100_000]] {
            let v = verdict(data, 4096);
            assert_eq!(v.format, Format::Raw);
            assert_eq!(v.virtual_size, Some(data.len() as u64));
            assert_eq!(v.refusal, None);
        }
    }

    #[test]
    fn a_hybrid_iso_is_iso_but_other_pairs_are_refused() {
        let v = verdict(&with_mbr(iso()), 1000);
        assert_eq!(
            (v.format, v.virtual_size, v.refusal),
            (Format::Iso, Some(65536), None)
        );
        let v = verdict(&with_mbr(qcow2()), 1000);
        assert_eq!(
            v.refusal,
            Some(Refusal::SeveralFormats {
                formats: vec![Format::Qcow2, Format::Mbr]
            })
        );
    }

    #[test]
    fn a_safety_violation_outranks_several_formats() {
        let mut b = with_mbr(qcow2());
        b[8..16].copy_from_slice(&512u64.to_be_bytes());
        assert_eq!(verdict(&b, 4096).refusal, Some(Refusal::QcowBackingFile));
    }

    #[test]
    fn the_verdict_does_not_depend_on_the_chunking() {
        let cases = [qcow2(), with_mbr(iso()), with_mbr(qcow2()), iso()];
        for data in cases {
            let whole = verdict(&data, data.len());
            for step in [1, 2, 511, 512, 513, 4096] {
                assert_eq!(verdict(&data, step), whole, "step {step}");
            }
        }
    }

    #[test]
    fn memory_stays_bounded_on_a_large_stream() {
        // binary data: only the head and the tail are kept
        let mut i = Inspector::new();
        let buf = vec![0xa5; 1 << 20];
        for _ in 0..64 {
            i.feed(&buf);
        }
        assert!(i.bytes_buffered() < 40 * 1024, "{}", i.bytes_buffered());
        assert_eq!(i.size(), 64 << 20);
        assert_eq!(i.finish().format, Format::Raw);
        // text: a possible VMDK descriptor is kept up to 1 MiB, then no more
        let mut i = Inspector::new();
        let buf = vec![b'z'; 1 << 20];
        for _ in 0..8 {
            i.feed(&buf);
        }
        assert!(i.bytes_buffered() < 1300 * 1024, "{}", i.bytes_buffered());
        assert_eq!(i.finish().format, Format::Raw);
    }
}
