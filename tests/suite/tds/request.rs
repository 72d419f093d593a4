//! Client requests other than RPC: the ALL_HEADERS prefix (the transaction descriptor in it is
//! accepted and ignored), SQL batches, and Transaction Manager requests (begin, commit,
//! rollback, save), plus the bounds-checked reader every request parser uses.

/// A cursor over a message that never reads past its end.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| {
                format!(
                    "message truncated: {n} bytes wanted at {} of {}",
                    self.pos,
                    self.buf.len()
                )
            })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.bytes(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, String> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, String> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, String> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos.min(self.buf.len())..];
        self.pos = self.buf.len();
        out
    }

    /// A UTF-16LE string of `chars` code units.
    pub fn utf16(&mut self, chars: usize) -> Result<String, String> {
        let bytes = self.bytes(chars.checked_mul(2).ok_or("length overflow")?)?;
        utf16(bytes)
    }

    /// A B_VARCHAR (u8 length in characters).
    pub fn b_varchar(&mut self) -> Result<String, String> {
        let n = usize::from(self.u8()?);
        self.utf16(n)
    }
}

/// Decodes UTF-16LE bytes.
pub fn utf16(bytes: &[u8]) -> Result<String, String> {
    if !bytes.len().is_multiple_of(2) {
        return Err("odd number of bytes in a UTF-16 string".into());
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).map_err(|_| "invalid UTF-16".to_string())
}

/// Skips the ALL_HEADERS block (mandatory since TDS 7.2).
pub fn skip_all_headers(r: &mut Reader<'_>) -> Result<(), String> {
    let total = r.u32()? as usize;
    if total < 4 {
        return Err(format!("ALL_HEADERS length {total}"));
    }
    let mut headers = Reader::new(r.bytes(total - 4)?);
    while !headers.is_empty() {
        let len = headers.u32()? as usize;
        if len < 6 {
            return Err(format!("header length {len}"));
        }
        let _ty = headers.u16()?;
        headers.bytes(len - 6)?;
    }
    Ok(())
}

/// The text of a SQL batch.
pub fn sql_batch(payload: &[u8]) -> Result<String, String> {
    let mut r = Reader::new(payload);
    skip_all_headers(&mut r)?;
    utf16(r.rest())
}

/// A Transaction Manager request (MS-TDS 2.2.6.9).
#[derive(Debug, PartialEq)]
pub enum TmRequest {
    Begin { isolation: u8 },
    Commit,
    Rollback { savepoint: String },
    Save { name: String },
    Unsupported(u16),
}

/// Isolation level byte of TM_BEGIN_XACT for SNAPSHOT.
pub const ISOLATION_SNAPSHOT: u8 = 0x05;

/// Parses a Transaction Manager request.
pub fn transaction_manager(payload: &[u8]) -> Result<TmRequest, String> {
    let mut r = Reader::new(payload);
    skip_all_headers(&mut r)?;
    Ok(match r.u16()? {
        5 => {
            let isolation = r.u8()?;
            let _name = r.b_varchar()?;
            TmRequest::Begin { isolation }
        }
        7 => TmRequest::Commit,
        8 => TmRequest::Rollback {
            savepoint: r.b_varchar()?,
        },
        9 => TmRequest::Save {
            name: r.b_varchar()?,
        },
        other => TmRequest::Unsupported(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_and_tm_requests_parse_and_truncation_is_an_error() {
        let mut p = vec![22, 0, 0, 0, 18, 0, 0, 0, 2, 0];
        p.extend_from_slice(&[0; 8]);
        p.extend_from_slice(&1u32.to_le_bytes());
        let mut batch = p.clone();
        batch.extend("SELECT 1".encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(sql_batch(&batch).unwrap(), "SELECT 1");
        let mut begin = p.clone();
        begin.extend_from_slice(&[5, 0, ISOLATION_SNAPSHOT, 0]);
        assert_eq!(
            transaction_manager(&begin).unwrap(),
            TmRequest::Begin {
                isolation: ISOLATION_SNAPSHOT
            }
        );
        assert!(sql_batch(&p[..10]).is_err());
        assert!(sql_batch(&[0xFF, 0xFF, 0xFF, 0x7F]).is_err());
        assert!(transaction_manager(&p).is_err());
    }
}
