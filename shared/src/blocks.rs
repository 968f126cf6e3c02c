//! The block hashes of an image's data, as both planes carry and store them: the data cut into
//! blocks of `block_size` bytes (the last one shorter), the xxh3-64 of each block as 16
//! lowercase hex digits, in block order, in one string. The data plane computes them in the
//! upload's hashing pass; the control plane checks them ([`consistent`]) and keeps them with the
//! image; the block cache verifies each block it fills against them.

/// Block hashes as their hex string.
pub fn to_hex(hashes: &[u64]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(hashes.len() * 16);
    for h in hashes {
        let _ = write!(s, "{h:016x}");
    }
    s
}

/// Block hashes from their hex string; `None` if it is not one.
pub fn from_hex(s: &str) -> Option<Vec<u64>> {
    if !s.len().is_multiple_of(16) || !s.is_ascii() {
        return None;
    }
    s.as_bytes()
        .chunks(16)
        .map(|c| u64::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok())
        .collect()
}

/// How many blocks `size` bytes make in blocks of `block_size`.
pub fn count(size: u64, block_size: u64) -> u64 {
    size.div_ceil(block_size.max(1))
}

/// Whether `hashes` can be the block hashes of `size` bytes in blocks of `block_size`: lowercase
/// hex, one hash per block (none for no data). Empty hashes (none recorded) always are.
pub fn consistent(size: u64, block_size: u64, hashes: &str) -> bool {
    hashes.is_empty()
        || (block_size > 0
            && hashes.len() as u64 == 16 * count(size, block_size)
            && hashes
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let hashes = vec![0, 1, u64::MAX, 0x0123_4567_89ab_cdef];
        let hex = to_hex(&hashes);
        assert_eq!(hex.len(), 64);
        assert_eq!(&hex[48..], "0123456789abcdef");
        assert_eq!(from_hex(&hex), Some(hashes));
        assert_eq!(from_hex(""), Some(Vec::new()));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zzzzzzzzzzzzzzzz"), None);
    }

    #[test]
    fn consistency_with_the_size() {
        let two = to_hex(&[1, 2]);
        assert!(consistent(8 << 20, 4 << 20, &two));
        assert!(consistent((4 << 20) + 1, 4 << 20, &two));
        assert!(!consistent(4 << 20, 4 << 20, &two), "one block too many");
        assert!(!consistent(8 << 20, 0, &two));
        assert!(!consistent(
            8 << 20,
            4 << 20,
            &two.to_uppercase().replace('0', "A")
        ));
        assert!(consistent(123, 4 << 20, ""), "none recorded");
        assert_eq!(count(0, 4 << 20), 0);
    }
}
