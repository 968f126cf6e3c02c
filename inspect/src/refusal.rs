//! Why an image is refused: one [`Refusal`] per rule, each with a message for the person who
//! uploaded it and a stable [`Refusal::reason`] slug for metrics labels.
//!
//! Glance sorts its failures into two kinds, and so do we ([`Refusal::is_safety`]):
//!
//! - **safety violations** (oslo's `SafetyCheckFailed`): the content is a format with a
//!   dangerous or unsupported feature. Glance refuses these whatever the configuration.
//! - **format errors** (oslo's `ImageFormatError`): the content does not match the claimed
//!   `disk_format`, matches several formats, or is too short to inspect. Glance refuses these
//!   only with `[image_format] require_image_format_match = True` (the default).

use crate::Format;

/// The longest piece of image text (a VMDK line or subformat) quoted in a message.
const QUOTE_MAX: usize = 64;

/// Why an image is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The qcow2 header names a backing file (a host path qemu would open).
    #[error("qcow2 image has a backing file")]
    QcowBackingFile,
    /// The qcow2 external data file feature is set (CVE-2024-32498).
    #[error("qcow2 image uses an external data file")]
    QcowDataFile,
    /// qcow2 v3 incompatible feature bits beyond the ones Glance knows are set.
    #[error("qcow2 image has unknown incompatible feature bits {bits:#x}")]
    QcowUnknownFeatures {
        /// The unknown bits of the incompatible-features field.
        bits: u64,
    },
    /// A qcow2 version other than 2 or 3.
    #[error("qcow2 version {version} is not supported")]
    QcowVersion {
        /// The header's version field.
        version: u32,
    },
    /// QED images are identified but never allowed.
    #[error("QED images are not allowed")]
    Qed,
    /// The VMDK sparse header cannot be used (bad version, descriptor in the wrong place).
    #[error("VMDK sparse header is invalid: {what}")]
    VmdkHeader {
        /// What is wrong with it.
        what: &'static str,
    },
    /// The VMDK descriptor is missing, empty or not ASCII text.
    #[error("VMDK image has no readable descriptor")]
    VmdkNoDescriptor,
    /// The VMDK `createType` is not one of the single-file sparse subformats.
    #[error("VMDK subformat {subformat:?} is not allowed")]
    VmdkSubformat {
        /// The `createType` found (lower case), or `formatnotfound`.
        subformat: String,
    },
    /// A VMDK descriptor line that is not a comment, `ddb` entry, `key=value` pair or extent.
    #[error("VMDK descriptor line not allowed: {line:?}")]
    VmdkDescriptorLine {
        /// The line (lower case, cut to 64 bytes).
        line: String,
    },
    /// A VMDK extent line names a path (contains `/`), e.g. a host file (CVE-2022-47951).
    #[error("VMDK extent names a path: {line:?}")]
    VmdkExtentPath {
        /// The extent line (lower case, cut to 64 bytes).
        line: String,
    },
    /// The VMDK descriptor lists no extent.
    #[error("VMDK descriptor lists no extents")]
    VmdkNoExtents,
    /// The VMDK stream footer (for a grain directory at the end) disagrees with the header.
    #[error("VMDK footer is invalid: {what}")]
    VmdkFooter {
        /// What is wrong with it.
        what: &'static str,
    },
    /// A bare VMDK descriptor file: it has no data of its own, only extents in other files.
    #[error("VMDK image is a bare descriptor file without a sparse header")]
    VmdkBareDescriptor,
    /// An MBR partition entry has a boot flag other than 0x00 or 0x80.
    #[error("MBR partition {partition} has an invalid boot flag")]
    MbrBootFlag {
        /// The partition slot, 0 to 3.
        partition: u8,
    },
    /// The MBR has no partitions at all.
    #[error("MBR defines no partitions")]
    MbrNoPartitions,
    /// The protective MBR of a GPT disk is not the one the UEFI spec requires.
    #[error("GPT image has an invalid protective MBR: {what}")]
    ProtectiveMbr {
        /// What is wrong with it.
        what: &'static str,
    },
    /// A LUKS version other than 1.
    #[error("LUKS version {version} is not supported")]
    LuksVersion {
        /// The header's version field.
        version: u16,
    },
    /// The content matches more than one format (other than a hybrid ISO with a partition table).
    #[error("image matches several formats: {}", names(formats))]
    SeveralFormats {
        /// The formats that matched.
        formats: Vec<Format>,
    },
    /// The content starts like `format` but ends before the headers it needs.
    #[error("{format} image is truncated: a header it needs is missing")]
    Truncated {
        /// The format the content starts as.
        format: Format,
    },
    /// The content is not the claimed `disk_format`.
    #[error("Image disk_format {claimed} does not match stream data {detected}")]
    Mismatch {
        /// The `disk_format` the image claims.
        claimed: String,
        /// What the content is, as Glance names it.
        detected: &'static str,
    },
}

fn names(formats: &[Format]) -> String {
    formats
        .iter()
        .map(|f| f.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Refusal {
    /// A stable slug for metrics labels and logs; the set of values is closed.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::QcowBackingFile => "qcow2_backing_file",
            Refusal::QcowDataFile => "qcow2_data_file",
            Refusal::QcowUnknownFeatures { .. } => "qcow2_unknown_features",
            Refusal::QcowVersion { .. } => "qcow2_version",
            Refusal::Qed => "qed",
            Refusal::VmdkHeader { .. } => "vmdk_header",
            Refusal::VmdkNoDescriptor => "vmdk_no_descriptor",
            Refusal::VmdkSubformat { .. } => "vmdk_subformat",
            Refusal::VmdkDescriptorLine { .. } => "vmdk_descriptor_line",
            Refusal::VmdkExtentPath { .. } => "vmdk_extent_path",
            Refusal::VmdkNoExtents => "vmdk_no_extents",
            Refusal::VmdkFooter { .. } => "vmdk_footer",
            Refusal::VmdkBareDescriptor => "vmdk_bare_descriptor",
            Refusal::MbrBootFlag { .. } => "mbr_boot_flag",
            Refusal::MbrNoPartitions => "mbr_no_partitions",
            Refusal::ProtectiveMbr { .. } => "gpt_protective_mbr",
            Refusal::LuksVersion { .. } => "luks_version",
            Refusal::SeveralFormats { .. } => "several_formats",
            Refusal::Truncated { .. } => "truncated",
            Refusal::Mismatch { .. } => "format_mismatch",
        }
    }

    /// Every value [`Refusal::reason`] can return, to pre-register metric series.
    pub const REASONS: &'static [&'static str] = &[
        "qcow2_backing_file",
        "qcow2_data_file",
        "qcow2_unknown_features",
        "qcow2_version",
        "qed",
        "vmdk_header",
        "vmdk_no_descriptor",
        "vmdk_subformat",
        "vmdk_descriptor_line",
        "vmdk_extent_path",
        "vmdk_no_extents",
        "vmdk_footer",
        "vmdk_bare_descriptor",
        "mbr_boot_flag",
        "mbr_no_partitions",
        "gpt_protective_mbr",
        "luks_version",
        "several_formats",
        "truncated",
        "format_mismatch",
    ];

    /// Whether this is a safety violation, refused whatever `require_image_format_match` says;
    /// the others are format errors, refused only when it is on.
    pub fn is_safety(&self) -> bool {
        !matches!(
            self,
            Refusal::SeveralFormats { .. } | Refusal::Truncated { .. } | Refusal::Mismatch { .. }
        )
    }

    /// The name of Glance's safety check this refusal corresponds to (`backing_file`,
    /// `data_file`, `unknown_features`, `descriptor`, `footer`, `mbr`, `version`, `banned`),
    /// e.g. to honour `[image_format] gpt_safety_checks_nonfatal`; `None` for format errors.
    pub fn check_name(&self) -> Option<&'static str> {
        Some(match self {
            Refusal::QcowBackingFile => "backing_file",
            Refusal::QcowDataFile => "data_file",
            Refusal::QcowUnknownFeatures { .. } | Refusal::QcowVersion { .. } => "unknown_features",
            Refusal::Qed => "banned",
            Refusal::VmdkHeader { .. }
            | Refusal::VmdkNoDescriptor
            | Refusal::VmdkSubformat { .. }
            | Refusal::VmdkDescriptorLine { .. }
            | Refusal::VmdkExtentPath { .. }
            | Refusal::VmdkNoExtents
            | Refusal::VmdkBareDescriptor => "descriptor",
            Refusal::VmdkFooter { .. } => "footer",
            Refusal::MbrBootFlag { .. }
            | Refusal::MbrNoPartitions
            | Refusal::ProtectiveMbr { .. } => "mbr",
            Refusal::LuksVersion { .. } => "version",
            Refusal::SeveralFormats { .. }
            | Refusal::Truncated { .. }
            | Refusal::Mismatch { .. } => {
                return None;
            }
        })
    }
}

/// Cuts image text to [`QUOTE_MAX`] bytes (on a char boundary) for quoting in a message.
pub(crate) fn quote(text: &str) -> String {
    let mut end = text.len().min(QUOTE_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Refusal> {
        vec![
            Refusal::QcowBackingFile,
            Refusal::QcowDataFile,
            Refusal::QcowUnknownFeatures { bits: 0x10 },
            Refusal::QcowVersion { version: 1 },
            Refusal::Qed,
            Refusal::VmdkHeader { what: "x" },
            Refusal::VmdkNoDescriptor,
            Refusal::VmdkSubformat {
                subformat: "monolithicflat".into(),
            },
            Refusal::VmdkDescriptorLine { line: "x".into() },
            Refusal::VmdkExtentPath { line: "x".into() },
            Refusal::VmdkNoExtents,
            Refusal::VmdkFooter { what: "x" },
            Refusal::VmdkBareDescriptor,
            Refusal::MbrBootFlag { partition: 2 },
            Refusal::MbrNoPartitions,
            Refusal::ProtectiveMbr { what: "x" },
            Refusal::LuksVersion { version: 2 },
            Refusal::SeveralFormats {
                formats: vec![Format::Qcow2, Format::Gpt],
            },
            Refusal::Truncated {
                format: Format::Vhd,
            },
            Refusal::Mismatch {
                claimed: "qcow2".into(),
                detected: "raw",
            },
        ]
    }

    #[test]
    fn every_reason_is_listed_once_and_only_format_errors_lack_a_check_name() {
        let all = all();
        assert_eq!(all.len(), Refusal::REASONS.len());
        for (r, listed) in all.iter().zip(Refusal::REASONS) {
            assert_eq!(r.reason(), *listed);
            assert_eq!(r.is_safety(), r.check_name().is_some(), "{r:?}");
        }
    }

    #[test]
    fn messages_read_well() {
        assert_eq!(
            Refusal::QcowUnknownFeatures { bits: 0x10 }.to_string(),
            "qcow2 image has unknown incompatible feature bits 0x10"
        );
        assert_eq!(
            Refusal::SeveralFormats {
                formats: vec![Format::Qcow2, Format::Gpt]
            }
            .to_string(),
            "image matches several formats: qcow2, gpt"
        );
        assert_eq!(
            Refusal::VmdkSubformat {
                subformat: "monolithicflat".into()
            }
            .to_string(),
            "VMDK subformat \"monolithicflat\" is not allowed"
        );
        assert_eq!(
            Refusal::Mismatch {
                claimed: "qcow2".into(),
                detected: "raw"
            }
            .to_string(),
            "Image disk_format qcow2 does not match stream data raw"
        );
    }

    #[test]
    fn quote_cuts_on_a_char_boundary() {
        assert_eq!(quote("short"), "short");
        let long = "é".repeat(40);
        let q = quote(&long);
        assert!(q.len() <= QUOTE_MAX && q.chars().all(|c| c == 'é'));
    }
}
