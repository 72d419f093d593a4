//! Physical lines of a text export, counted from 1 as an editor shows them: a UTF-8
//! byte-order mark is dropped, `\n` and `\r\n` both end a line, and a DOS end-of-file mark
//! (^Z) at the very end is ignored. Lines are returned from one reused buffer.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};

use super::{FileError, MAX_RECORD_BYTES, READ_BUFFER_BYTES};

const BOM: &[u8] = b"\xEF\xBB\xBF";
/// DOS end-of-file mark.
const CTRL_Z: u8 = 0x1A;

/// One physical line: its number and its bytes without the line end.
pub(super) struct Line<'a> {
    pub number: u64,
    pub bytes: &'a [u8],
}

impl Line<'_> {
    /// Empty, or nothing but spaces and tabs.
    pub(super) fn is_blank(&self) -> bool {
        self.bytes.iter().all(|b| matches!(b, b' ' | b'\t'))
    }
}

/// Reads a file line by line.
pub(super) struct LineReader {
    inner: BufReader<File>,
    buf: Vec<u8>,
    /// Number of the next line.
    next_number: u64,
    /// Bytes consumed, the byte-order mark included.
    consumed: u64,
}

impl LineReader {
    /// Starts reading `file`; a UTF-8 byte-order mark is dropped when `strip_bom`.
    pub(super) fn new(file: File, strip_bom: bool) -> io::Result<LineReader> {
        let mut inner = BufReader::with_capacity(READ_BUFFER_BYTES, file);
        let mut consumed = 0;
        if strip_bom && inner.fill_buf()?.starts_with(BOM) {
            inner.consume(BOM.len());
            consumed = BOM.len() as u64;
        }
        Ok(LineReader {
            inner,
            buf: Vec::new(),
            next_number: 1,
            consumed,
        })
    }

    /// Skips `count` physical lines (report banners), whatever they contain.
    pub(super) fn skip(&mut self, count: usize) -> Result<(), FileError> {
        for _ in 0..count {
            if self.next_line()?.is_none() {
                break;
            }
        }
        Ok(())
    }

    /// Bytes consumed so far.
    pub(super) fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Lines consumed so far.
    pub(super) fn lines_consumed(&self) -> u64 {
        self.next_number - 1
    }

    /// The buffered reader, positioned after the lines read so far.
    pub(super) fn into_inner(self) -> BufReader<File> {
        self.inner
    }

    /// The next physical line, or `None` at the end of the file. A line longer than
    /// [`MAX_RECORD_BYTES`] makes the rest of the file unreadable.
    pub(super) fn next_line(&mut self) -> Result<Option<Line<'_>>, FileError> {
        self.buf.clear();
        let limit = MAX_RECORD_BYTES as u64 + 1;
        let read = (&mut self.inner)
            .take(limit)
            .read_until(b'\n', &mut self.buf)?;
        if read == 0 {
            return Ok(None);
        }
        let number = self.next_number;
        self.next_number += 1;
        self.consumed += read as u64;
        let mut bytes = &self.buf[..];
        if let Some(rest) = bytes.strip_suffix(b"\n") {
            bytes = rest.strip_suffix(b"\r").unwrap_or(rest);
        } else if read as u64 == limit {
            return Err(FileError::Malformed(format!(
                "line {number} is longer than {} MiB",
                MAX_RECORD_BYTES >> 20
            )));
        } else {
            // The last line, without a line end: drop a DOS end-of-file mark.
            while let Some(rest) = bytes.strip_suffix(&[CTRL_Z]) {
                bytes = rest;
            }
            bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        }
        Ok(Some(Line { number, bytes }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines(content: &[u8], strip_bom: bool) -> Vec<(u64, Vec<u8>)> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(content).unwrap();
        use std::io::Seek;
        f.rewind().unwrap();
        let mut r = LineReader::new(f, strip_bom).unwrap();
        let mut out = Vec::new();
        while let Some(line) = r.next_line().unwrap() {
            out.push((line.number, line.bytes.to_vec()));
        }
        assert_eq!(r.consumed(), content.len() as u64);
        out
    }

    #[test]
    fn counts_lines_and_strips_line_ends_bom_and_ctrl_z() {
        let got = lines(b"\xEF\xBB\xBFa\r\nb\n\nc\x1A", true);
        let want: Vec<(u64, Vec<u8>)> = vec![
            (1, b"a".to_vec()),
            (2, b"b".to_vec()),
            (3, b"".to_vec()),
            (4, b"c".to_vec()),
        ];
        assert_eq!(got, want);
        let got = lines(b"a\r\n\x1A", false);
        assert_eq!(got, vec![(1, b"a".to_vec()), (2, b"".to_vec())]);
        // Without stripping, the mark stays (another encoding's bytes).
        assert_eq!(lines(b"\xEF\xBB\xBFa", false)[0].1, b"\xEF\xBB\xBFa");
    }

    #[test]
    fn an_overlong_line_makes_the_rest_unreadable() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"ok\n").unwrap();
        f.write_all(&vec![b'x'; MAX_RECORD_BYTES + 1]).unwrap();
        use std::io::Seek;
        f.rewind().unwrap();
        let mut r = LineReader::new(f, false).unwrap();
        assert_eq!(r.next_line().unwrap().unwrap().bytes, b"ok");
        let err = r.next_line().err().unwrap();
        assert!(
            matches!(&err, FileError::Malformed(m) if m.starts_with("line 2 ")),
            "{err}"
        );
    }
}
