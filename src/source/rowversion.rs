//! A SQL Server `rowversion` as the integer counter capture compares: 8 bytes, unsigned,
//! big-endian. Both sources (tiberius and ODBC) read and bind it through here, so a cursor
//! means the same number whichever way the bridge reaches the server.

/// The counter held in a binary value of at most 8 big-endian bytes; `None` when it is wider
/// or does not fit an `i64` (a rowversion stays far below 2^63).
pub fn from_bytes(bytes: &[u8]) -> Option<i64> {
    if bytes.len() > 8 {
        return None;
    }
    let mut be = [0u8; 8];
    be[8 - bytes.len()..].copy_from_slice(bytes);
    i64::try_from(u64::from_be_bytes(be)).ok()
}

/// The 8 bytes a counter is compared as. A negative counter (a lookback reaching below the
/// first rowversion) is the lowest rowversion, not a huge one: as two's complement it would
/// sort above every row and the cursor would read nothing.
pub fn to_bytes(counter: i64) -> [u8; 8] {
    u64::try_from(counter).unwrap_or(0).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_orders_as_bytes() {
        assert_eq!(from_bytes(&[0, 0, 0, 0, 0, 0, 7, 0xD1]), Some(2001));
        assert_eq!(from_bytes(&[7, 0xD1]), Some(2001));
        assert_eq!(from_bytes(&to_bytes(2001)), Some(2001));
        assert!(to_bytes(255) < to_bytes(256), "byte order is number order");
    }

    #[test]
    fn below_zero_is_the_lowest_and_too_wide_is_refused() {
        assert_eq!(to_bytes(-5), [0; 8]);
        assert_eq!(from_bytes(&[0; 9]), None);
        assert_eq!(from_bytes(&[0x80, 0, 0, 0, 0, 0, 0, 0]), None);
    }
}
