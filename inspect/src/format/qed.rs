//! QEMU enhanced disk: identified (magic `QED\0`, once 512 bytes are in) and always refused,
//! as Glance bans it.

use super::Finding;
use crate::{Format, Refusal};

/// The QED finding for the first bytes of the stream, if they are QED.
pub(crate) fn inspect(head: &[u8], size: u64) -> Option<Finding> {
    (head.len() >= 512 && head.starts_with(b"QED\0"))
        .then(|| Finding::new(Format::Qed, Some(size), Some(Refusal::Qed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qed_is_always_refused() {
        let mut h = vec![0; 512];
        h[..4].copy_from_slice(b"QED\0");
        assert_eq!(inspect(&h, 9).unwrap().refusal, Some(Refusal::Qed));
        assert_eq!(inspect(&h[..511], 9), None);
    }
}
