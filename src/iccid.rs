//! The one normalisation of an ICCID, used for configured ICCIDs, discovery
//! listings and status answers alike, so that the same SIM written `...1f` in
//! one place and `...1F` in another is one SIM everywhere (one `iccid` label,
//! one shard, one match between what was asked for and what was answered).

/// Shortest ICCID accepted, trailing `F` included. The API's own documented
/// example (`8912372646888991`) has 16 digits, so shorter forms than E.118's
/// usual 19 or 20 exist in the wild.
pub(crate) const MIN_LEN: usize = 10;
/// Longest ICCID accepted (ITU-T E.118 allows up to 22 characters).
pub(crate) const MAX_LEN: usize = 22;

/// Why a value is not an ICCID, for error messages.
pub(crate) const NOT_AN_ICCID: &str =
    "not an ICCID (10 to 22 characters: digits, optionally ending in F)";

/// Checks an ICCID (digits, [`MIN_LEN`] to [`MAX_LEN`] characters, an optional
/// trailing `F` or `f`) and returns its canonical form: trimmed, upper-case `F`.
pub(crate) fn normalize(raw: &str) -> Result<String, &'static str> {
    let s = raw.trim();
    let digits = s.strip_suffix(['F', 'f']).unwrap_or(s);
    if !(MIN_LEN..=MAX_LEN).contains(&s.len())
        || digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(NOT_AN_ICCID);
    }
    let mut canonical = String::with_capacity(s.len());
    canonical.push_str(digits);
    if digits.len() != s.len() {
        canonical.push('F');
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        let ok = |s: &str| normalize(s).expect("an ICCID");
        assert_eq!(ok("8988200000000000001"), "8988200000000000001");
        assert_eq!(ok("8988200000000000001f"), "8988200000000000001F");
        assert_eq!(ok(" 8988200000000000001F\t"), "8988200000000000001F");
        assert_eq!(
            ok("8912372646888991"),
            "8912372646888991",
            "the API's example"
        );
        assert_eq!(ok("1234567890"), "1234567890", "10 characters");
        assert_eq!(ok("123456789f"), "123456789F", "10 with the F");
        assert_eq!(ok("1234567890123456789012"), "1234567890123456789012");
    }

    #[test]
    fn refusals() {
        for bad in [
            "",
            "   ",
            "123456789",
            "12345678F",
            "12345678901234567890123",
            "8988200000000000x01",
            "89882000000000000F1",
            "FFFFFFFFFFFFFFFFFF",
            "F",
            "+898820000000000001",
            "８９８８２０００００００００００００１",
            "\u{feff}8988200000000000001",
        ] {
            assert_eq!(normalize(bad), Err(NOT_AN_ICCID), "{bad:?}");
        }
    }
}
