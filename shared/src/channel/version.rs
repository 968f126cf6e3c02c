//! Protocol versions and the handshake rule.

/// The oldest channel protocol version this build speaks.
pub const MIN_VERSION: u16 = 1;
/// The newest channel protocol version this build speaks.
pub const MAX_VERSION: u16 = 1;

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
        assert_eq!(negotiate(1, 1), Some(1));
        assert_eq!(negotiate(1, 9), Some(MAX_VERSION));
        assert_eq!(negotiate(MAX_VERSION + 1, MAX_VERSION + 3), None);
        assert_eq!(negotiate(0, 0), None);
    }
}
