//! Salesforce-style record ids: 3-character key prefix, 12 base-62 characters, and the 3-character
//! case-safe checksum that turns a 15-character id into an 18-character one.

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const CHECKSUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// The 18-character form of a 15-character id (`None` if it is not 15 ASCII alphanumerics).
pub fn to_18(id15: &str) -> Option<String> {
    if id15.len() != 15 || !id15.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let mut out = id15.to_owned();
    for chunk in id15.as_bytes().chunks(5) {
        let mut bits = 0usize;
        for (i, b) in chunk.iter().enumerate() {
            if b.is_ascii_uppercase() {
                bits |= 1 << i;
            }
        }
        out.push(char::from(*CHECKSUM.get(bits)?));
    }
    Some(out)
}

/// Builds the id number `n` of an object: prefix + pod "5g0" + base-62 counter, 18 characters.
pub fn make(prefix: &str, pod: &str, n: u64) -> String {
    let mut digits = Vec::new();
    let mut v = n;
    for _ in 0..9 {
        digits.push(BASE62[(v % 62) as usize]);
        v /= 62;
    }
    digits.reverse();
    let id15 = format!("{prefix}{pod}{}", String::from_utf8_lossy(&digits));
    to_18(&id15).unwrap_or(id15)
}

/// The stored (18-character) form of an id given by a client: 15 or 18 characters.
pub fn normalize(id: &str) -> Option<String> {
    match id.len() {
        15 => to_18(id),
        18 if id.bytes().all(|b| b.is_ascii_alphanumeric()) => Some(id.to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_salesforce() {
        // A well-known pair from Salesforce documentation.
        assert_eq!(
            to_18("001A0000006Vm9r").as_deref(),
            Some("001A0000006Vm9rIAC")
        );
        assert_eq!(to_18("short"), None);
    }

    #[test]
    fn made_ids_are_18_chars_unique_and_normalizable() {
        let a = make("500", "5g0", 1);
        let b = make("500", "5g0", 62);
        assert_eq!(a.len(), 18);
        assert!(a.starts_with("5005g0"));
        assert_ne!(a, b);
        assert_eq!(normalize(&a[..15]), Some(a.clone()));
        assert_eq!(normalize(&a), Some(a.clone()));
        assert_eq!(normalize("bad id"), None);
    }
}
