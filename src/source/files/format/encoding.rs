//! Character sets of export files: turning the bytes of one field or line into text. ASCII
//! input (the common case) is borrowed without any decoding work; the single-byte code pages
//! come from `encoding_rs` (Windows and other WHATWG encodings) and `oem_cp` (DOS code pages).

use std::borrow::Cow;

use oem_cp::code_table::DECODING_TABLE_CP_MAP;
use oem_cp::code_table_type::TableType;

use crate::config::TextEncoding;

/// A character set the reader can decode.
#[derive(Clone, Copy)]
pub(super) enum Charset {
    /// UTF-8; invalid sequences make the record bad.
    Utf8,
    /// True ISO-8859-1: byte `b` is `U+00bb`, so 0x80-0x9F are C1 controls. (WHATWG, and
    /// therefore `encoding_rs`, treat the label `iso-8859-1` as windows-1252.)
    Latin1,
    /// A DOS code page from `oem_cp`.
    Oem(&'static TableType),
    /// An encoding from `encoding_rs` (windows-125x, CJK code pages of DBF files).
    Web(&'static encoding_rs::Encoding),
}

impl Charset {
    /// The character set of a text export configured with `encoding` (UTF-8 when absent).
    pub(super) fn from_config(encoding: Option<TextEncoding>) -> Charset {
        match encoding.unwrap_or_default() {
            TextEncoding::Utf8 => Charset::Utf8,
            TextEncoding::Windows1252 => Charset::Web(encoding_rs::WINDOWS_1252),
            TextEncoding::Iso8859_1 => Charset::Latin1,
            TextEncoding::Cp437 => Charset::oem(437).unwrap_or(Charset::Latin1),
        }
    }

    /// A DOS code page by number, if `oem_cp` knows it.
    pub(super) fn oem(code_page: u16) -> Option<Charset> {
        DECODING_TABLE_CP_MAP.get(&code_page).map(Charset::Oem)
    }

    /// Whether one byte is always one character (fixed-width columns can then be cut from
    /// the bytes before decoding).
    pub(super) fn is_single_byte(self) -> bool {
        match self {
            Charset::Utf8 => false,
            Charset::Latin1 | Charset::Oem(_) => true,
            Charset::Web(e) => e.is_single_byte(),
        }
    }

    /// Decodes `bytes`, or `None` when they are not valid in this character set.
    pub(super) fn decode(self, bytes: &[u8]) -> Option<Cow<'_, str>> {
        match self {
            Charset::Utf8 => std::str::from_utf8(bytes).ok().map(Cow::Borrowed),
            // ASCII means the same in every supported single-byte code page.
            _ if bytes.is_ascii() => std::str::from_utf8(bytes).ok().map(Cow::Borrowed),
            Charset::Latin1 => Some(Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect())),
            Charset::Oem(table) => table.decode_string_checked(bytes).map(Cow::Owned),
            Charset::Web(e) => e.decode_without_bom_handling_and_without_replacement(bytes),
        }
    }

    /// Decodes `bytes`, replacing what is not valid with U+FFFD (for showing a bad record).
    pub(super) fn decode_lossy(self, bytes: &[u8]) -> Cow<'_, str> {
        match self.decode(bytes) {
            Some(text) => text,
            None => match self {
                Charset::Oem(table) => Cow::Owned(table.decode_string_lossy(bytes)),
                Charset::Web(e) => e.decode_without_bom_handling(bytes).0,
                Charset::Utf8 | Charset::Latin1 => String::from_utf8_lossy(bytes),
            },
        }
    }

    /// What to say when text is not valid in this character set.
    pub(super) fn invalid_text_reason(self) -> &'static str {
        match self {
            Charset::Utf8 => {
                "not valid UTF-8 text (set `encoding` if the export uses another code page)"
            }
            _ => "not valid text in the export's code page",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_is_borrowed_in_every_charset() {
        for cs in [
            Charset::Utf8,
            Charset::Latin1,
            Charset::from_config(Some(TextEncoding::Cp437)),
            Charset::from_config(Some(TextEncoding::Windows1252)),
        ] {
            assert!(matches!(cs.decode(b"SKU-1 12.50"), Some(Cow::Borrowed(_))));
        }
    }

    #[test]
    fn single_byte_code_pages_differ_where_they_should() {
        let latin1 = Charset::from_config(Some(TextEncoding::Iso8859_1));
        let w1252 = Charset::from_config(Some(TextEncoding::Windows1252));
        let cp437 = Charset::from_config(Some(TextEncoding::Cp437));
        assert_eq!(latin1.decode(&[0x80, 0x9F]).unwrap(), "\u{80}\u{9F}");
        assert_eq!(w1252.decode(&[0x80, 0x9F]).unwrap(), "€Ÿ");
        assert_eq!(w1252.decode(&[0xFC]).unwrap(), "ü");
        assert_eq!(cp437.decode(&[0x81]).unwrap(), "ü");
        assert_eq!(latin1.decode(&[0xFC]).unwrap(), "ü");
    }

    #[test]
    fn invalid_utf8_is_refused_and_shown_lossily() {
        assert!(Charset::Utf8.decode(&[b'a', 0xFF]).is_none());
        assert_eq!(Charset::Utf8.decode_lossy(&[b'a', 0xFF]), "a\u{FFFD}");
        assert!(Charset::Utf8.decode("é".as_bytes()).is_some());
    }
}
