//! Disk-image format inspection for uploads, with the safety rules of Glance's format
//! inspector (oslo.utils `imageutils/format_inspector.py`, as Glance 33 uses it in
//! `glance/location.py`).
//!
//! An [`Inspector`] is fed every buffer of an upload, in order, in the same pass that hashes
//! it: no temp file, no second read. It copies only the regions the formats need (the first
//! 34 KiB, a VMDK descriptor, three VHDX tables, the last 1.5 KiB), so it holds a bounded amount
//! of memory (under 1.3 MiB, [`Inspector::bytes_buffered`]) whatever the image size, and once past
//! the first MiB a buffer costs a few comparisons and a 1.5 KiB copy. [`Inspector::finish`] gives
//! a [`Verdict`]: the [`Format`], its virtual size, and the [`Refusal`] if the content breaks a
//! rule. [`check`] then applies Glance's `require_image_format_match` rule against the image's
//! claimed `disk_format` and says what `virtual_size` to record.
//!
//! ```
//! let mut inspector = inspect::Inspector::new();
//! for buffer in [&b"QFI\xfb\0\0\0\x03"[..], &[0; 504]] {
//!     inspector.feed(buffer);
//! }
//! let verdict = inspector.finish();
//! assert_eq!(verdict.format, inspect::Format::Qcow2);
//! assert!(inspect::check(&verdict, "qcow2", true).is_ok());
//! assert!(inspect::check(&verdict, "vmdk", true).is_err());
//! ```
//!
//! This crate is **not** an image reader: it never follows a qcow2 L1 table or a VMDK grain, it
//! does not convert, and it does no I/O. It decides, from headers alone, what Glance would decide.
//!
//! # The rules, as in Glance
//!
//! - Every format is tried on the same bytes. The content is raw when none matches. When
//!   several match it is refused, except ISO together with an MBR/GPT (a hybrid bootable ISO),
//!   which counts as ISO.
//! - Per-format safety checks (each module documents its own): qcow2 without backing file,
//!   without external data file, with no unknown incompatible features, version 2 or 3; VMDK
//!   `monolithicSparse`/`streamOptimized` only, with a descriptor of known lines and extents
//!   without paths, and a consistent stream footer; MBR/GPT partition entries sane (Glance's
//!   `mbr` check); LUKS version 1 only; QED never. Raw, VHD, VHDX, VDI and ISO have none.
//! - [`check`]: with `require_match`, the detected format must be the claimed `disk_format`,
//!   except that `raw` accepts any content (its virtual size is then the byte size) and claims
//!   Glance cannot inspect (`ami`, `ari`, `aki`, `ploop`, anything outside
//!   [`INSPECTABLE_FORMATS`]) accept raw content.
//!
//! # Where we differ from Glance, and why
//!
//! - **Fixed VHD is recognised** from the footer at the end of the stream. Glance only reads the
//!   footer copy at the start, which fixed VHDs lack, so it sees them as raw and refuses them as
//!   `vhd`. We accept them when the footer's checksum, disk type and size all agree with the
//!   stream; an MBR/GPT inside still gets its `mbr` check.
//! - **Safety violations are refused whatever `require_match` says**, also when the claim does not
//!   match (Glance skips the safety checks once it has logged a mismatch with the option off).
//! - **A bare VMDK descriptor** (text naming extents in other files) is always refused; Glance
//!   refuses one claimed as `vmdk` only by failing to compute its size, and accepts it as `raw`.
//! - **Determinism**: Glance reads a bare descriptor from its first read buffer, so its answer can
//!   depend on the buffer size; ours reads up to the first NUL (1 MiB − 1 at most) however the
//!   stream is split. Likewise a VHDX metadata table that does not parse leaves the size unknown
//!   here, where Glance may count the image as truncated depending on the read size.
//! - LUKS passphrase checks (Glance runs them only when a passphrase is configured) are absent.

#![deny(unsafe_code)]

mod capture;
mod check;
mod format;
mod inspector;
mod refusal;

pub use check::{INSPECTABLE_FORMATS, check};
pub use inspector::{Inspector, Verdict};
pub use refusal::Refusal;

/// A disk image format the inspector recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Anything no other format matches.
    Raw,
    /// QEMU copy-on-write v2/v3.
    Qcow2,
    /// VMware virtual disk.
    Vmdk,
    /// Microsoft Virtual PC (qemu's `vpc`), dynamic or fixed.
    Vhd,
    /// Microsoft Hyper-V VHDX.
    Vhdx,
    /// VirtualBox disk image.
    Vdi,
    /// ISO 9660 / UDF optical disc image.
    Iso,
    /// A disk with a GUID partition table (a protective MBR).
    Gpt,
    /// A disk with a legacy MBR partition table.
    Mbr,
    /// LUKS encrypted volume.
    Luks,
    /// QEMU enhanced disk.
    Qed,
}

impl Format {
    /// Every format, in the order the inspector lists them.
    pub const ALL: [Format; 11] = [
        Format::Raw,
        Format::Qcow2,
        Format::Qed,
        Format::Vhd,
        Format::Vhdx,
        Format::Vmdk,
        Format::Vdi,
        Format::Iso,
        Format::Gpt,
        Format::Mbr,
        Format::Luks,
    ];

    /// The format's name: Glance's `disk_format` name, and `mbr` for a legacy MBR disk
    /// (which Glance's inspector calls `gpt`, see [`Format::inspector_name`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Vmdk => "vmdk",
            Format::Vhd => "vhd",
            Format::Vhdx => "vhdx",
            Format::Vdi => "vdi",
            Format::Iso => "iso",
            Format::Gpt => "gpt",
            Format::Mbr => "mbr",
            Format::Luks => "luks",
            Format::Qed => "qed",
        }
    }

    /// The name Glance's inspector reports, which is what a `disk_format` is compared with:
    /// the same as [`Format::as_str`] except that MBR disks are `gpt`.
    pub fn inspector_name(self) -> &'static str {
        match self {
            Format::Mbr => "gpt",
            other => other.as_str(),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_mbr_is_gpt_to_glance() {
        let mut names: Vec<_> = Format::ALL.iter().map(|f| f.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Format::ALL.len());
        assert_eq!(Format::Mbr.inspector_name(), "gpt");
        assert_eq!(Format::Vhd.inspector_name(), "vhd");
        assert_eq!(Format::Iso.to_string(), "iso");
    }
}
