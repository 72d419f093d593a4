//! T-SQL tokens: identifiers (bare, `[bracketed]`, `"quoted"`), `N'...'` and `'...'` strings,
//! numbers, `0x` binary literals, `@variables`, `@@globals` and operators. Comments and
//! whitespace are dropped. Anything else is an "Incorrect syntax" error, never a panic.

use super::sql::SqlError;

/// One token of a T-SQL text.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A bare word: keyword or identifier, as written.
    Word(String),
    /// A `[bracketed]` or `"quoted"` identifier, unescaped.
    Quoted(String),
    /// A string literal, unescaped; `unicode` for `N'...'`.
    Str { text: String, unicode: bool },
    /// A number as written (`12`, `1.5`, `2e3`).
    Num(String),
    /// A `0x...` literal.
    Bin(Vec<u8>),
    /// `@name` (without the `@`).
    Var(String),
    /// `@@name` (without the `@@`).
    Global(String),
    /// Punctuation and operators: `( ) , . ; = <> != < > <= >= + - * / % & | ^ ~`.
    Op(&'static str),
}

impl Tok {
    /// True for the bare word `kw` (case-insensitive).
    pub fn is_kw(&self, kw: &str) -> bool {
        matches!(self, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    /// True for the operator `op`.
    pub fn is_op(&self, op: &str) -> bool {
        matches!(self, Tok::Op(o) if *o == op)
    }

    /// The token as SQL Server would quote it in "Incorrect syntax near '...'".
    pub fn shown(&self) -> String {
        match self {
            Tok::Word(w) => w.clone(),
            Tok::Quoted(q) => q.clone(),
            Tok::Str { text, .. } => text.clone(),
            Tok::Num(n) => n.clone(),
            Tok::Bin(b) => format!("0x{}", hex::encode_upper(b)),
            Tok::Var(v) => format!("@{v}"),
            Tok::Global(g) => format!("@@{g}"),
            Tok::Op(o) => (*o).to_owned(),
        }
    }
}

const OPS: [&str; 21] = [
    "<>", "!=", "<=", ">=", "!<", "!>", "(", ")", ",", ".", ";", "=", "<", ">", "+", "-", "*", "/",
    "%", "&", "|",
];
const MORE_OPS: [&str; 2] = ["^", "~"];

/// Splits `text` into tokens.
pub fn lex(text: &str) -> Result<Vec<Tok>, SqlError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && next == Some('-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            // T-SQL block comments nest.
            let mut depth = 0usize;
            loop {
                if i + 1 >= chars.len() {
                    return Err(SqlError::syntax("*/"));
                }
                if chars[i] == '/' && chars[i + 1] == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars[i + 1] == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if (c == 'N' || c == 'n') && next == Some('\'') {
            let (text, end) = quoted(&chars, i + 1, '\'', '\'')?;
            out.push(Tok::Str {
                text,
                unicode: true,
            });
            i = end;
        } else if c == '\'' {
            let (text, end) = quoted(&chars, i, '\'', '\'')?;
            out.push(Tok::Str {
                text,
                unicode: false,
            });
            i = end;
        } else if c == '[' {
            let (text, end) = quoted(&chars, i, '[', ']')?;
            out.push(Tok::Quoted(text));
            i = end;
        } else if c == '"' {
            let (text, end) = quoted(&chars, i, '"', '"')?;
            out.push(Tok::Quoted(text));
            i = end;
        } else if c == '0' && matches!(next, Some('x') | Some('X')) {
            let start = i + 2;
            let mut end = start;
            while end < chars.len() && chars[end].is_ascii_hexdigit() {
                end += 1;
            }
            let mut digits: String = chars[start..end].iter().collect();
            if digits.len() % 2 == 1 {
                digits.insert(0, '0');
            }
            let bytes = hex::decode(&digits).map_err(|_| SqlError::syntax(&digits))?;
            out.push(Tok::Bin(bytes));
            i = end;
        } else if c.is_ascii_digit() || (c == '.' && next.is_some_and(|n| n.is_ascii_digit())) {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let num: String = chars[start..i].iter().collect();
            if num.matches('.').count() > 1 {
                return Err(SqlError::syntax(&num));
            }
            out.push(Tok::Num(num));
        } else if c == '@' {
            let global = next == Some('@');
            let start = if global { i + 2 } else { i + 1 };
            let mut end = start;
            while end < chars.len() && is_word_char(chars[end]) {
                end += 1;
            }
            let name: String = chars[start..end].iter().collect();
            if name.is_empty() {
                return Err(SqlError::syntax("@"));
            }
            out.push(if global {
                Tok::Global(name)
            } else {
                Tok::Var(name)
            });
            i = end;
        } else if c.is_alphabetic() || c == '_' || c == '#' {
            let start = i;
            while i < chars.len() && is_word_char(chars[i]) {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let op = OPS
                .iter()
                .chain(MORE_OPS.iter())
                .find(|op| rest.starts_with(**op))
                .ok_or_else(|| SqlError::syntax(&c.to_string()))?;
            out.push(Tok::Op(op));
            i += op.chars().count();
        }
    }
    Ok(out)
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '@' || c == '$' || c == '#'
}

/// Reads a quoted run starting at `chars[start] == open`; a doubled `close` is an escaped one.
/// Returns the unescaped text and the index after the closing quote.
fn quoted(
    chars: &[char],
    start: usize,
    open: char,
    close: char,
) -> Result<(String, usize), SqlError> {
    debug_assert_eq!(chars.get(start), Some(&open));
    let mut text = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => {
                let seen: String = chars[start..].iter().take(30).collect();
                return Err(SqlError::new(
                    105,
                    format!("Unclosed quotation mark after the character string '{seen}'."),
                ));
            }
            Some(&ch) if ch == close => {
                if chars.get(i + 1) == Some(&close) {
                    text.push(close);
                    i += 2;
                } else {
                    return Ok((text, i + 1));
                }
            }
            Some(&ch) => {
                text.push(ch);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexes_the_dialect() {
        let toks = lex(
            "SELECT TOP (@P1) [a]]b], N'it''s', 0x0A1, 1.5e3 FROM dbo.t -- x\n/* y /* z */ */;",
        )
        .unwrap();
        assert_eq!(toks[0], Tok::Word("SELECT".into()));
        assert_eq!(toks[3], Tok::Var("P1".into()));
        assert_eq!(toks[5], Tok::Quoted("a]b".into()));
        assert_eq!(
            toks[7],
            Tok::Str {
                text: "it's".into(),
                unicode: true
            }
        );
        assert_eq!(toks[9], Tok::Bin(vec![0x00, 0xA1]));
        assert_eq!(toks[11], Tok::Num("1.5e3".into()));
        assert_eq!(toks.last(), Some(&Tok::Op(";")));
    }

    #[test]
    fn unterminated_input_is_an_error() {
        assert_eq!(lex("SELECT 'abc").unwrap_err().number, 105);
        assert!(lex("SELECT [abc").is_err());
        assert!(lex("SELECT /* abc").is_err());
        assert!(lex("SELECT `x`").is_err());
    }
}
