//! Image vocabulary: [`ImageId`], [`ImageStatus`] and its transition table, [`Visibility`],
//! [`HashAlgo`] and the default disk/container format lists.
//!
//! Status names and transitions are Glance's (`glance/domain/__init__.py`,
//! `Image.valid_state_targets`); see `../shared/GLANCE-API.md` §2.2.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An image identifier: a UUID in its canonical hyphenated, lower-case form.
///
/// Parsing accepts only the 8-4-4-4-12 hex form (any case), so an `ImageId` can never
/// contain a path separator and is always safe to use as a file name in a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct ImageId(uuid::Uuid);

/// Serialized as its canonical string, written from a stack buffer (no allocation: the data
/// plane sends an image id in every channel request).
impl Serialize for ImageId {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; ImageId::STR_LEN];
        ser.serialize_str(self.encode(&mut buf))
    }
}

/// The string was not a hyphenated UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid image id (expected a hyphenated UUID)")]
pub struct InvalidImageId;

impl ImageId {
    /// A fresh random (v4) id.
    pub fn new_random() -> Self {
        ImageId(uuid::Uuid::new_v4())
    }

    /// The canonical string form, e.g. `4b3e…-…`.
    pub fn as_hyphenated(&self) -> String {
        self.0.hyphenated().to_string()
    }

    /// Length of the canonical string form.
    pub const STR_LEN: usize = 36;

    /// Writes the canonical string form into `buf` (no allocation) and returns it.
    pub fn encode<'b>(&self, buf: &'b mut [u8; ImageId::STR_LEN]) -> &'b str {
        self.0.hyphenated().encode_lower(buf)
    }
}

impl FromStr for ImageId {
    type Err = InvalidImageId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() != 36 {
            return Err(InvalidImageId);
        }
        for (i, c) in b.iter().enumerate() {
            let ok = match i {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_hexdigit(),
            };
            if !ok {
                return Err(InvalidImageId);
            }
        }
        uuid::Uuid::parse_str(s)
            .map(ImageId)
            .map_err(|_| InvalidImageId)
    }
}

impl TryFrom<String> for ImageId {
    type Error = InvalidImageId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ImageId> for String {
    fn from(id: ImageId) -> String {
        id.as_hyphenated()
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// The status of an image, with Glance's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageStatus {
    /// Registered, no data yet.
    Queued,
    /// Data is being uploaded through `PUT /file`.
    Saving,
    /// Data is being staged through `PUT /stage`.
    Uploading,
    /// An import task is running.
    Importing,
    /// Data is stored and can be downloaded.
    Active,
    /// Data exists but downloads are refused to non-admins.
    Deactivated,
    /// Legacy failure status.
    Killed,
    /// Deleted (terminal; the row is kept so the id is never reused).
    Deleted,
    /// Deleted with `delayed_delete`: data kept until the scrubber runs.
    PendingDelete,
}

impl ImageStatus {
    /// Every status, in Glance's order.
    pub const ALL: [ImageStatus; 9] = [
        ImageStatus::Queued,
        ImageStatus::Saving,
        ImageStatus::Uploading,
        ImageStatus::Importing,
        ImageStatus::Active,
        ImageStatus::Deactivated,
        ImageStatus::Killed,
        ImageStatus::Deleted,
        ImageStatus::PendingDelete,
    ];

    /// Glance's name for the status.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageStatus::Queued => "queued",
            ImageStatus::Saving => "saving",
            ImageStatus::Uploading => "uploading",
            ImageStatus::Importing => "importing",
            ImageStatus::Active => "active",
            ImageStatus::Deactivated => "deactivated",
            ImageStatus::Killed => "killed",
            ImageStatus::Deleted => "deleted",
            ImageStatus::PendingDelete => "pending_delete",
        }
    }

    /// The statuses this one may move to (Glance's `valid_state_targets`).
    pub fn targets(self) -> &'static [ImageStatus] {
        use ImageStatus::*;
        match self {
            Queued => &[Saving, Uploading, Importing, Active, Deleted],
            Saving => &[Active, Killed, Deleted, Queued],
            Uploading => &[Importing, Queued, Deleted],
            Importing => &[Active, Deleted, Queued],
            Active => &[PendingDelete, Deleted, Deactivated],
            Deactivated => &[Active, Deleted],
            PendingDelete => &[Deleted, Active],
            Killed => &[Deleted],
            Deleted => &[],
        }
    }

    /// Whether `self → to` is an allowed transition.
    pub fn can_become(self, to: ImageStatus) -> bool {
        self.targets().contains(&to)
    }
}

impl fmt::Display for ImageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string is not a Glance status name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown image status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for ImageStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// Who can see an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Everyone.
    Public,
    /// Everyone, but left out of default lists of other projects.
    Community,
    /// The owner and accepted members (Glance's default).
    Shared,
    /// The owner only.
    Private,
}

impl Visibility {
    /// Glance's name for the visibility.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Community => "community",
            Visibility::Shared => "shared",
            Visibility::Private => "private",
        }
    }
}

impl FromStr for Visibility {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "public" => Ok(Visibility::Public),
            "community" => Ok(Visibility::Community),
            "shared" => Ok(Visibility::Shared),
            "private" => Ok(Visibility::Private),
            _ => Err(()),
        }
    }
}

/// The hash stored as `os_hash_algo`/`os_hash_value`: Glance's `hashing_algorithm`, any of
/// Python hashlib's fixed-length algorithms (what glanceclient recomputes with `hashlib.new`
/// when it verifies a download). hashlib's variable-length `shake_*` cannot be used (Glance
/// would call `hexdigest()` without a length), nor the OpenSSL-dependent extras.
///
/// New variants go at the end: the channel encodes the variant's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HashAlgo {
    /// SHA-224.
    Sha224,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512 (Glance's default `hashing_algorithm`).
    #[default]
    Sha512,
    /// SHA-512/224 (`sha512_224`).
    Sha512_224,
    /// SHA-512/256 (`sha512_256`).
    Sha512_256,
    /// SHA3-224 (`sha3_224`).
    Sha3_224,
    /// SHA3-256 (`sha3_256`).
    Sha3_256,
    /// SHA3-384 (`sha3_384`).
    Sha3_384,
    /// SHA3-512 (`sha3_512`).
    Sha3_512,
    /// BLAKE2b with hashlib's default 64-byte digest.
    Blake2b,
    /// BLAKE2s with hashlib's default 32-byte digest.
    Blake2s,
    /// SHA-1 (hashlib accepts it; not a secure choice).
    Sha1,
    /// MD5 (hashlib accepts it; not a secure choice).
    Md5,
}

impl HashAlgo {
    /// Every algorithm, in declaration order.
    pub const ALL: [HashAlgo; 14] = [
        HashAlgo::Sha224,
        HashAlgo::Sha256,
        HashAlgo::Sha384,
        HashAlgo::Sha512,
        HashAlgo::Sha512_224,
        HashAlgo::Sha512_256,
        HashAlgo::Sha3_224,
        HashAlgo::Sha3_256,
        HashAlgo::Sha3_384,
        HashAlgo::Sha3_512,
        HashAlgo::Blake2b,
        HashAlgo::Blake2s,
        HashAlgo::Sha1,
        HashAlgo::Md5,
    ];

    /// Bytes of a digest (hashlib's `digest_size`; BLAKE2 at its default, as Glance uses it).
    pub fn digest_len(self) -> usize {
        match self {
            HashAlgo::Sha224 | HashAlgo::Sha512_224 | HashAlgo::Sha3_224 => 28,
            HashAlgo::Sha256 | HashAlgo::Sha512_256 | HashAlgo::Sha3_256 | HashAlgo::Blake2s => 32,
            HashAlgo::Sha384 | HashAlgo::Sha3_384 => 48,
            HashAlgo::Sha512 | HashAlgo::Sha3_512 | HashAlgo::Blake2b => 64,
            HashAlgo::Sha1 => 20,
            HashAlgo::Md5 => 16,
        }
    }

    /// The hashlib name stored in `os_hash_algo`.
    pub fn as_str(self) -> &'static str {
        match self {
            HashAlgo::Sha224 => "sha224",
            HashAlgo::Sha256 => "sha256",
            HashAlgo::Sha384 => "sha384",
            HashAlgo::Sha512 => "sha512",
            HashAlgo::Sha512_224 => "sha512_224",
            HashAlgo::Sha512_256 => "sha512_256",
            HashAlgo::Sha3_224 => "sha3_224",
            HashAlgo::Sha3_256 => "sha3_256",
            HashAlgo::Sha3_384 => "sha3_384",
            HashAlgo::Sha3_512 => "sha3_512",
            HashAlgo::Blake2b => "blake2b",
            HashAlgo::Blake2s => "blake2s",
            HashAlgo::Sha1 => "sha1",
            HashAlgo::Md5 => "md5",
        }
    }
}

impl FromStr for HashAlgo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        // hashlib also knows OpenSSL's spellings of the SHA-512/t and SHA-3 names
        let name = match lower.as_str() {
            "sha512-224" => "sha512_224",
            "sha512-256" => "sha512_256",
            "sha3-224" => "sha3_224",
            "sha3-256" => "sha3_256",
            "sha3-384" => "sha3_384",
            "sha3-512" => "sha3_512",
            other => other,
        };
        if let Some(a) = HashAlgo::ALL.iter().find(|a| a.as_str() == name) {
            return Ok(*a);
        }
        let known: Vec<&str> = HashAlgo::ALL.iter().map(|a| a.as_str()).collect();
        Err(if name.starts_with("shake_") {
            format!(
                "hashing algorithm {s:?} has no fixed digest length and cannot be used; use one of {}",
                known.join(", ")
            )
        } else {
            format!(
                "unsupported hashing algorithm {s:?} (supported: {})",
                known.join(", ")
            )
        })
    }
}

/// Glance's default `[image_format] disk_formats`.
pub const DEFAULT_DISK_FORMATS: &[&str] = &[
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];

/// Glance's default `[image_format] container_formats`.
pub const DEFAULT_CONTAINER_FORMATS: &[&str] = &[
    "ami",
    "ari",
    "aki",
    "bare",
    "ovf",
    "ova",
    "docker",
    "compressed",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_algorithms_use_hashlib_names() {
        for a in HashAlgo::ALL {
            assert_eq!(a.as_str().parse::<HashAlgo>(), Ok(a));
            // the config file spells it the same way
            let toml = serde_json::to_string(&a).unwrap();
            assert_eq!(toml, format!("\"{}\"", a.as_str()));
        }
        assert_eq!("SHA3-256".parse::<HashAlgo>(), Ok(HashAlgo::Sha3_256));
        assert!(
            "shake_128"
                .parse::<HashAlgo>()
                .unwrap_err()
                .contains("fixed")
        );
        assert!("crc32".parse::<HashAlgo>().unwrap_err().contains("blake2b"));
        assert_eq!(HashAlgo::default(), HashAlgo::Sha512);
    }

    #[test]
    fn image_id_accepts_only_hyphenated_uuids() {
        let ok = "0B3A8C7E-1234-4321-abcd-0123456789ab";
        let id: ImageId = ok.parse().unwrap();
        assert_eq!(id.to_string(), ok.to_lowercase());
        for bad in [
            "",
            "../../etc/passwd",
            "0b3a8c7e123443214abcd0123456789ab",
            "{0b3a8c7e-1234-4321-abcd-0123456789ab}",
            "0b3a8c7e-1234-4321-abcd-0123456789a/",
            "urn:uuid:0b3a8c7e-1234-4321-abcd-01234567",
            "0b3a8c7e-1234-4321-abcd-0123456789abc",
        ] {
            assert!(bad.parse::<ImageId>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn status_table_matches_glance() {
        use ImageStatus::*;
        // (from, to, allowed) — every pair is listed so a change to the table fails here.
        let allowed: &[(ImageStatus, &[ImageStatus])] = &[
            (Queued, &[Saving, Uploading, Importing, Active, Deleted]),
            (Saving, &[Active, Killed, Deleted, Queued]),
            (Uploading, &[Importing, Queued, Deleted]),
            (Importing, &[Active, Deleted, Queued]),
            (Active, &[PendingDelete, Deleted, Deactivated]),
            (Deactivated, &[Active, Deleted]),
            (PendingDelete, &[Deleted, Active]),
            (Killed, &[Deleted]),
            (Deleted, &[]),
        ];
        for (from, tos) in allowed {
            for to in ImageStatus::ALL {
                assert_eq!(from.can_become(to), tos.contains(&to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn status_names_round_trip() {
        for st in ImageStatus::ALL {
            assert_eq!(st.as_str().parse::<ImageStatus>().unwrap(), st);
            assert_eq!(serde_json::to_string(&st).unwrap(), format!("\"{st}\""));
        }
        assert!("bogus".parse::<ImageStatus>().is_err());
    }
}
