//! Numbers as legacy exports write them: a configurable decimal separator, implied decimals,
//! and leading, trailing or overpunched (zoned decimal) signs. The digits are accumulated
//! into an integer mantissa and a scale, so a decimal is exact and never passes through a
//! float.

use rust_decimal::Decimal;

use crate::config::SignConvention;

/// How the numbers of one column are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NumberStyle {
    pub decimal_separator: char,
    /// Digits after an implied decimal point.
    pub implied_decimals: u32,
    pub sign: SignConvention,
}

impl Default for NumberStyle {
    fn default() -> Self {
        NumberStyle {
            decimal_separator: '.',
            implied_decimals: 0,
            sign: SignConvention::Leading,
        }
    }
}

/// Why text is not a number; the messages never repeat the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NumberError {
    /// Not a number in the column's style.
    Invalid,
    /// Looks like digit grouping (`1,234.50`), which exports must not use.
    Grouping,
    /// A written decimal separator in a column with implied decimals.
    SeparatorWithImpliedDecimals,
    /// Too many digits for an exact decimal (28 significant digits) or an integer.
    OutOfRange,
    /// An integer column holding a fraction.
    Fraction,
}

impl NumberError {
    /// The reason, after "column X: ".
    pub(super) fn reason(self, integer: bool) -> &'static str {
        match (self, integer) {
            (NumberError::Invalid, false) => "expected a decimal number",
            (NumberError::Invalid, true) => "expected an integer",
            (NumberError::Grouping, _) => {
                "expected a number without digit grouping (check `decimal_separator`)"
            }
            (NumberError::SeparatorWithImpliedDecimals, _) => {
                "expected digits only: the column has implied decimals but a decimal separator was written"
            }
            (NumberError::OutOfRange, false) => "decimal number out of range",
            (NumberError::OutOfRange, true) => "integer out of range",
            (NumberError::Fraction, _) => "expected an integer, found a fraction",
        }
    }
}

/// The most digits a decimal mantissa holds (2^96 - 1 has 29 digits).
const MAX_MANTISSA: u128 = (1u128 << 96) - 1;
/// The largest scale `rust_decimal` accepts.
const MAX_SCALE: u32 = 28;

/// A parsed number: `(-1)^negative * mantissa / 10^scale`.
struct Parts {
    negative: bool,
    mantissa: u128,
    scale: u32,
}

/// Parses `text` (already trimmed, not empty) as an exact decimal.
pub(super) fn parse_decimal(text: &str, style: NumberStyle) -> Result<Decimal, NumberError> {
    let parts = parse_parts(text, style)?;
    if parts.mantissa > MAX_MANTISSA || parts.scale > MAX_SCALE {
        return Err(NumberError::OutOfRange);
    }
    let signed = i128::try_from(parts.mantissa).map_err(|_| NumberError::OutOfRange)?;
    let signed = if parts.negative { -signed } else { signed };
    Decimal::try_from_i128_with_scale(signed, parts.scale).map_err(|_| NumberError::OutOfRange)
}

/// Parses `text` (already trimmed, not empty) as an integer; a fraction whose digits are all
/// zero (`12.00`, or `1200` with 2 implied decimals) is accepted.
pub(super) fn parse_integer(text: &str, style: NumberStyle) -> Result<i64, NumberError> {
    let Parts {
        negative,
        mut mantissa,
        scale,
    } = parse_parts(text, style)?;
    for _ in 0..scale {
        if mantissa % 10 != 0 {
            return Err(NumberError::Fraction);
        }
        mantissa /= 10;
    }
    let magnitude = i128::try_from(mantissa).map_err(|_| NumberError::OutOfRange)?;
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value).map_err(|_| NumberError::OutOfRange)
}

/// The value of an overpunched last character: its digit and whether it makes the number
/// negative. `{`/`A`-`I` are +0..+9, `}`/`J`-`R` are -0..-9; a plain digit is positive.
fn overpunch(c: u8) -> Option<(u8, bool)> {
    match c {
        b'0'..=b'9' => Some((c - b'0', false)),
        b'{' => Some((0, false)),
        b'A'..=b'I' => Some((c - b'A' + 1, false)),
        b'}' => Some((0, true)),
        b'J'..=b'R' => Some((c - b'J' + 1, true)),
        _ => None,
    }
}

fn parse_parts(text: &str, style: NumberStyle) -> Result<Parts, NumberError> {
    let mut body = text;
    let mut negative = false;
    // An overpunched last digit, to be appended after the body's digits.
    let mut punched: Option<u8> = None;
    let strip_leading = |body: &mut &str, negative: &mut bool| {
        if let Some(rest) = body.strip_prefix('-') {
            *negative = true;
            *body = rest;
            true
        } else if let Some(rest) = body.strip_prefix('+') {
            *body = rest;
            true
        } else {
            false
        }
    };
    match style.sign {
        SignConvention::Leading => {
            strip_leading(&mut body, &mut negative);
        }
        SignConvention::Trailing => {
            if let Some(rest) = body.strip_suffix('-') {
                negative = true;
                body = rest;
            } else if let Some(rest) = body.strip_suffix('+') {
                body = rest;
            } else {
                // A leading sign is unambiguous too; accept it (never both).
                strip_leading(&mut body, &mut negative);
            }
        }
        SignConvention::Overpunch => {
            let last = *body.as_bytes().last().ok_or(NumberError::Invalid)?;
            let (digit, neg) = overpunch(last).ok_or(NumberError::Invalid)?;
            negative = neg;
            punched = Some(digit);
            // `last` is ASCII, so this cut is on a character boundary.
            body = &body[..body.len() - 1];
        }
    }

    let mut mantissa: u128 = 0;
    let mut digits = 0usize;
    let mut fraction_digits: u32 = 0;
    let mut seen_separator = false;
    let mut overflow = false;
    let mut push = |d: u8, mantissa: &mut u128| match mantissa
        .checked_mul(10)
        .and_then(|m| m.checked_add(u128::from(d)))
    {
        Some(m) => *mantissa = m,
        None => overflow = true,
    };
    for c in body.chars() {
        if c.is_ascii_digit() {
            push(c as u8 - b'0', &mut mantissa);
            digits += 1;
            if seen_separator {
                fraction_digits += 1;
            }
        } else if c == style.decimal_separator && !seen_separator {
            seen_separator = true;
        } else if matches!(c, ',' | '.' | '\'' | ' ' | '\u{a0}' | '\u{202f}' | '_') {
            return Err(NumberError::Grouping);
        } else {
            return Err(NumberError::Invalid);
        }
    }
    if let Some(d) = punched {
        push(d, &mut mantissa);
        digits += 1;
        if seen_separator {
            fraction_digits += 1;
        }
    }
    if digits == 0 {
        return Err(NumberError::Invalid);
    }
    if overflow {
        return Err(NumberError::OutOfRange);
    }
    if seen_separator && style.implied_decimals > 0 {
        return Err(NumberError::SeparatorWithImpliedDecimals);
    }
    let scale = fraction_digits.saturating_add(style.implied_decimals);
    Ok(Parts {
        negative,
        mantissa,
        scale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn style(sep: char, implied: u32, sign: SignConvention) -> NumberStyle {
        NumberStyle {
            decimal_separator: sep,
            implied_decimals: implied,
            sign,
        }
    }

    fn dec(text: &str) -> Decimal {
        Decimal::from_str_exact(text).unwrap()
    }

    #[test]
    fn leading_signs_and_separators() {
        let s = NumberStyle::default();
        assert_eq!(parse_decimal("-12.5", s), Ok(dec("-12.5")));
        assert_eq!(parse_decimal("+12.50", s), Ok(dec("12.50")));
        assert_eq!(parse_decimal(".5", s), Ok(dec("0.5")));
        assert_eq!(parse_decimal("5.", s), Ok(dec("5")));
        let comma = style(',', 0, SignConvention::Leading);
        assert_eq!(parse_decimal("-1234,56", comma), Ok(dec("-1234.56")));
        assert_eq!(parse_decimal("1.234,56", comma), Err(NumberError::Grouping));
        assert_eq!(parse_decimal("1,234.56", s), Err(NumberError::Grouping));
        assert_eq!(parse_decimal("12a", s), Err(NumberError::Invalid));
        assert_eq!(parse_decimal("-", s), Err(NumberError::Invalid));
        assert_eq!(parse_decimal(".", s), Err(NumberError::Invalid));
        assert_eq!(parse_decimal("1.2.3", s), Err(NumberError::Grouping));
        assert_eq!(parse_decimal("12-", s), Err(NumberError::Invalid));
    }

    #[test]
    fn trailing_signs() {
        let s = style('.', 0, SignConvention::Trailing);
        assert_eq!(parse_decimal("12.50-", s), Ok(dec("-12.50")));
        assert_eq!(parse_decimal("12.50+", s), Ok(dec("12.50")));
        assert_eq!(parse_decimal("-12.50", s), Ok(dec("-12.50")));
        assert_eq!(parse_decimal("-12.50-", s), Err(NumberError::Invalid));
        assert_eq!(parse_integer("42-", s), Ok(-42));
    }

    #[test]
    fn overpunched_last_digit() {
        let s = style('.', 0, SignConvention::Overpunch);
        assert_eq!(parse_integer("125{", s), Ok(1250));
        assert_eq!(parse_integer("125}", s), Ok(-1250));
        assert_eq!(parse_integer("12J", s), Ok(-121));
        assert_eq!(parse_integer("12R", s), Ok(-129));
        assert_eq!(parse_integer("12A", s), Ok(121));
        assert_eq!(parse_integer("12I", s), Ok(129));
        assert_eq!(parse_integer("123", s), Ok(123));
        assert_eq!(parse_integer("}", s), Ok(0));
        assert_eq!(parse_integer("12S", s), Err(NumberError::Invalid));
        let implied = style('.', 2, SignConvention::Overpunch);
        assert_eq!(parse_decimal("0001234N", implied), Ok(dec("-123.45")));
    }

    #[test]
    fn implied_decimals() {
        let s = style('.', 2, SignConvention::Leading);
        assert_eq!(parse_decimal("12345", s), Ok(dec("123.45")));
        assert_eq!(parse_decimal("-00005", s), Ok(dec("-0.05")));
        assert_eq!(
            parse_decimal("123.45", s),
            Err(NumberError::SeparatorWithImpliedDecimals)
        );
        assert_eq!(parse_integer("1200", s), Ok(12));
        assert_eq!(parse_integer("1201", s), Err(NumberError::Fraction));
    }

    #[test]
    fn exactness_and_range() {
        let s = NumberStyle::default();
        assert_eq!(
            parse_decimal("12345678901234567890.12345678", s),
            Ok(dec("12345678901234567890.12345678"))
        );
        assert_eq!(
            parse_decimal("123456789012345678901234567890", s),
            Err(NumberError::OutOfRange)
        );
        assert_eq!(
            parse_decimal(&"9".repeat(60), s),
            Err(NumberError::OutOfRange)
        );
        assert_eq!(parse_integer("9223372036854775807", s), Ok(i64::MAX));
        assert_eq!(parse_integer("-9223372036854775808", s), Ok(i64::MIN));
        assert_eq!(
            parse_integer("9223372036854775808", s),
            Err(NumberError::OutOfRange)
        );
        assert_eq!(parse_integer("12.00", s), Ok(12));
        assert_eq!(parse_integer("12.5", s), Err(NumberError::Fraction));
        // Non-ASCII digits are not digits here.
        assert_eq!(parse_integer("١٢", s), Err(NumberError::Invalid));
    }
}
