//! One module per image format. Each reads the bytes the [`Inspector`](crate::Inspector)
//! captured and says whether the content is that format ([`Finding`]), what its virtual size
//! is, and which of Glance's safety rules it breaks. The formats whose headers are all in the
//! first [`HEAD_LEN`] bytes are plain functions of those bytes; VMDK and VHDX need regions
//! located by their headers and have a `Probe` fed alongside the stream.

pub(crate) mod gpt;
pub(crate) mod iso;
pub(crate) mod luks;
pub(crate) mod qcow2;
pub(crate) mod qed;
pub(crate) mod vdi;
pub(crate) mod vhd;
pub(crate) mod vhdx;
pub(crate) mod vmdk;

use crate::{Format, Refusal};

/// How much of the start of the stream is kept: up to the end of the first ISO 9660 volume
/// descriptor (sector 16 of 2 KiB), which also covers every 512-byte header and the 592-byte
/// LUKS header.
pub(crate) const HEAD_LEN: usize = iso::DESCRIPTOR_END;

/// What one format makes of the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    /// The format the content is.
    pub(crate) format: Format,
    /// Its virtual size in bytes, when the format gives one.
    pub(crate) virtual_size: Option<u64>,
    /// The first rule the content breaks, if any.
    pub(crate) refusal: Option<Refusal>,
}

impl Finding {
    pub(crate) fn new(format: Format, virtual_size: Option<u64>, refusal: Option<Refusal>) -> Self {
        Self {
            format,
            virtual_size,
            refusal,
        }
    }

    /// The content starts as `format` but the stream ended before its headers.
    pub(crate) fn truncated(format: Format) -> Self {
        Self::new(format, None, Some(Refusal::Truncated { format }))
    }
}

/// Fixed-width integer readers over a byte slice; callers check the length first.
pub(crate) fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

pub(crate) fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

pub(crate) fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
