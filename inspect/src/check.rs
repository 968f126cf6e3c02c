//! Glance's decision after the upload (`ImageProxy.set_data` in `glance/location.py`): the
//! content against the image's claimed `disk_format`, under
//! `[image_format] require_image_format_match`.
//!
//! Glance inspects only `container_format=bare` images; whether to call [`check`] for the others
//! is the caller's choice.

use crate::{Refusal, Verdict};

/// The `disk_format` names Glance's inspector knows (oslo.utils `ALL_FORMATS`). A claim outside
/// this list (`ami`, `ari`, `aki`, `ploop`, …) cannot be inspected, so it accepts raw content.
pub const INSPECTABLE_FORMATS: &[&str] = &[
    "raw", "qcow2", "vhd", "vhdx", "vmdk", "vdi", "qed", "iso", "gpt", "luks",
];

/// Decides whether an image whose content got `verdict` may be stored under `disk_format`.
///
/// On success, returns the `virtual_size` to record (`None` when Glance records none):
///
/// | content | claim | outcome |
/// |---|---|---|
/// | format X | `X` | accepted, X's virtual size |
/// | raw | not inspectable (`ami`, `aki`, `ari`, `ploop`, …) | accepted, no virtual size |
/// | anything | `raw` | accepted, virtual size = byte size |
/// | anything else | | [`Refusal::Mismatch`] when `require_match`, else accepted without size |
///
/// MBR disks match the claim `gpt`, as in Glance, and a hybrid ISO matches `iso` only.
/// A [`Verdict::refusal`] comes first: safety violations are always refused, format errors
/// (several formats, truncated) only when `require_match`. A virtual size of 0 is not recorded,
/// as in Glance.
pub fn check(
    verdict: &Verdict,
    disk_format: &str,
    require_match: bool,
) -> Result<Option<u64>, Refusal> {
    if let Some(refusal) = &verdict.refusal {
        return if refusal.is_safety() || require_match {
            Err(refusal.clone())
        } else {
            Ok(None)
        };
    }
    let detected = verdict.format.inspector_name();
    let virtual_size = if detected == disk_format {
        verdict.virtual_size
    } else if detected == "raw" && !INSPECTABLE_FORMATS.contains(&disk_format) {
        None
    } else if disk_format == "raw" {
        Some(verdict.size)
    } else if require_match {
        return Err(Refusal::Mismatch {
            claimed: disk_format.to_string(),
            detected,
        });
    } else {
        None
    };
    Ok(virtual_size.filter(|&size| size != 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Format;

    fn verdict(format: Format, virtual_size: Option<u64>, refusal: Option<Refusal>) -> Verdict {
        Verdict {
            format,
            virtual_size,
            size: 1000,
            refusal,
        }
    }

    #[test]
    fn glance_match_table() {
        let qcow2 = verdict(Format::Qcow2, Some(1 << 30), None);
        let raw = verdict(Format::Raw, Some(1000), None);
        let mbr = verdict(Format::Mbr, Some(1000), None);
        let iso = verdict(Format::Iso, Some(4096), None);
        let mismatch = |claimed: &str, detected| {
            Err(Refusal::Mismatch {
                claimed: claimed.into(),
                detected,
            })
        };
        type Row<'a> = (&'a Verdict, &'a str, bool, Result<Option<u64>, Refusal>);
        let table: [Row<'_>; 17] = [
            (&qcow2, "qcow2", true, Ok(Some(1 << 30))),
            (&qcow2, "raw", true, Ok(Some(1000))),
            (&qcow2, "vmdk", true, mismatch("vmdk", "qcow2")),
            (&qcow2, "vmdk", false, Ok(None)),
            (&qcow2, "ami", true, mismatch("ami", "qcow2")),
            (&raw, "raw", true, Ok(Some(1000))),
            (&raw, "qcow2", true, mismatch("qcow2", "raw")),
            (&raw, "iso", true, mismatch("iso", "raw")),
            (&raw, "ami", true, Ok(None)),
            (&raw, "aki", true, Ok(None)),
            (&raw, "ari", true, Ok(None)),
            (&raw, "ploop", true, Ok(None)),
            (&mbr, "gpt", true, Ok(Some(1000))),
            (&mbr, "raw", true, Ok(Some(1000))),
            (&mbr, "iso", true, mismatch("iso", "gpt")),
            (&iso, "iso", true, Ok(Some(4096))),
            (&iso, "gpt", true, mismatch("gpt", "iso")),
        ];
        for (v, claim, require, expected) in table {
            assert_eq!(
                check(v, claim, require),
                expected,
                "{:?} as {claim}",
                v.format
            );
        }
    }

    #[test]
    fn safety_violations_are_refused_whatever_the_option_and_format_errors_only_with_it() {
        let backing = verdict(Format::Qcow2, Some(1), Some(Refusal::QcowBackingFile));
        for (claim, require) in [
            ("qcow2", true),
            ("qcow2", false),
            ("raw", true),
            ("ami", false),
        ] {
            assert_eq!(
                check(&backing, claim, require),
                Err(Refusal::QcowBackingFile)
            );
        }
        let several = Refusal::SeveralFormats {
            formats: vec![Format::Qcow2, Format::Mbr],
        };
        let v = verdict(Format::Qcow2, None, Some(several.clone()));
        assert_eq!(check(&v, "raw", true), Err(several));
        assert_eq!(check(&v, "raw", false), Ok(None));
    }

    #[test]
    fn zero_virtual_size_is_not_recorded() {
        assert_eq!(
            check(&verdict(Format::Vhdx, Some(0), None), "vhdx", true),
            Ok(None)
        );
        assert_eq!(
            check(&verdict(Format::Vhdx, None, None), "vhdx", true),
            Ok(None)
        );
    }
}
