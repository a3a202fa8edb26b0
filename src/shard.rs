//! Splitting the fleet across replicas: each instance keeps the ICCIDs whose
//! stable hash, modulo the shard count, is its index.
//!
//! The hash is FNV-1a 64-bit over the ICCID's ASCII bytes with letters
//! upper-cased (so `...f` and `...F` land together). It is written out here
//! rather than taken from a library so that it never changes between
//! versions or platforms: a fleet split by one release is split the same way
//! by the next.

use std::fmt;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {}", self.index, self.count)
    }
}

impl Shard {
    /// Whether this shard exports `iccid`.
    pub fn owns(&self, iccid: &str) -> bool {
        self.count <= 1 || iccid_hash(iccid) % self.count == self.index
    }
}

/// FNV-1a 64-bit of the ICCID, letters upper-cased.
pub(crate) fn iccid_hash(iccid: &str) -> u64 {
    iccid.bytes().fold(FNV_OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte.to_ascii_uppercase())).wrapping_mul(FNV_PRIME)
    })
}

/// A shard index as a number (`2`) or as a name ending in `-<ordinal>`, such
/// as a StatefulSet pod name (`monogoto-exporter-2`).
pub(crate) fn parse_index(value: &str) -> Option<u64> {
    let value = value.trim();
    let digits = value.rsplit('-').next().unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_hash_is_pinned() {
        // FNV-1a reference values: the split must never change.
        assert_eq!(iccid_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(iccid_hash("A"), 0xaf63_fc4c_8602_22ec);
        assert_eq!(iccid_hash("8988228066602306720"), 0xa664_e334_6834_2edc);
        assert!(Shard { index: 1, count: 3 }.owns("8988228066602306720"));
        assert_eq!(
            iccid_hash("898822806660230672f"),
            iccid_hash("898822806660230672F")
        );
    }

    #[test]
    fn shards_are_disjoint_and_cover_the_fleet() {
        let fleet: Vec<String> = (0..10_000u64)
            .map(|i| format!("8988{:015}", i * 7919))
            .collect();
        for count in 1..=8u64 {
            let mut seen = HashSet::new();
            let mut sizes = Vec::new();
            for index in 0..count {
                let shard = Shard { index, count };
                let mine: Vec<&String> = fleet.iter().filter(|i| shard.owns(i)).collect();
                sizes.push(mine.len());
                for iccid in mine {
                    assert!(
                        seen.insert(iccid.clone()),
                        "{iccid} in two shards of {count}"
                    );
                }
            }
            assert_eq!(
                seen.len(),
                fleet.len(),
                "the union of {count} shards is the fleet"
            );
            let fair = fleet.len() as f64 / count as f64;
            assert!(
                sizes.iter().all(|&s| (s as f64 - fair).abs() < fair * 0.1),
                "balanced: {sizes:?}"
            );
        }
    }

    #[test]
    fn indexes_from_numbers_and_pod_names() {
        assert_eq!(parse_index("2"), Some(2));
        assert_eq!(parse_index("monogoto-exporter-2"), Some(2));
        assert_eq!(parse_index(" 0 "), Some(0));
        assert_eq!(parse_index("monogoto-exporter"), None);
        assert_eq!(parse_index("x-"), None);
        assert_eq!(parse_index("-1"), Some(1), "a lone dash is a separator");
        assert_eq!(parse_index(""), None);
    }
}
