//! LOGIN7: parsing (offsets checked, password de-obfuscated) and the answers: success
//! (ENVCHANGE database, collation, language and packet size, INFO, LOGINACK, DONE) or failure
//! (ERROR 18456 and DONE, after which the connection is closed).

use super::sql::SqlError;
use super::tokens;
use super::types::COLLATION;

/// The fields of a LOGIN7 the harness uses.
#[derive(Debug)]
pub struct Login {
    pub packet_size: u32,
    pub user: String,
    pub password: String,
    pub database: String,
    /// Windows authentication was requested (not supported).
    pub integrated: bool,
}

const FIXED: usize = 94;
const INTEGRATED_SECURITY: u8 = 0x80;

/// Parses a LOGIN7 message.
pub fn parse(p: &[u8]) -> Result<Login, String> {
    if p.len() < FIXED {
        return Err(format!(
            "login7: {} bytes, shorter than the fixed part",
            p.len()
        ));
    }
    let u32_at = |i: usize| u32::from_le_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
    let declared = u32_at(0) as usize;
    if declared > p.len() {
        return Err("login7: declared length exceeds the message".into());
    }
    let string = |at: usize, password: bool| -> Result<String, String> {
        let offset = usize::from(u16::from_le_bytes([p[at], p[at + 1]]));
        let chars = usize::from(u16::from_le_bytes([p[at + 2], p[at + 3]]));
        let bytes = p
            .get(offset..offset + chars * 2)
            .ok_or_else(|| format!("login7: field at {at} points outside the message"))?;
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| {
                let (a, b) = if password {
                    (unscramble(c[0]), unscramble(c[1]))
                } else {
                    (c[0], c[1])
                };
                u16::from_le_bytes([a, b])
            })
            .collect();
        String::from_utf16(&units).map_err(|_| format!("login7: field at {at} is not UTF-16"))
    };
    Ok(Login {
        packet_size: u32_at(8),
        integrated: p[25] & INTEGRATED_SECURITY != 0,
        user: string(40, false)?,
        password: string(44, true)?,
        database: string(68, false)?,
    })
}

/// Reverses the LOGIN7 password obfuscation (nibbles swapped, then XOR 0xA5).
fn unscramble(b: u8) -> u8 {
    let x = b ^ 0xA5;
    x.rotate_left(4)
}

/// The tokens of a successful login.
pub fn success(database: &str, packet_size: u32) -> Vec<u8> {
    let mut out = Vec::new();
    tokens::env_strings(&mut out, tokens::ENV_DATABASE, database, "master");
    tokens::info(
        &mut out,
        5701,
        &format!("Changed database context to '{database}'."),
    );
    tokens::env_bytes(&mut out, tokens::ENV_COLLATION, &COLLATION, &[]);
    tokens::env_strings(&mut out, tokens::ENV_LANGUAGE, "us_english", "");
    tokens::info(&mut out, 5703, "Changed language setting to us_english.");
    tokens::login_ack(&mut out, "Microsoft SQL Server", [16, 0, 0x10, 0x27]);
    tokens::env_strings(
        &mut out,
        tokens::ENV_PACKET_SIZE,
        &packet_size.to_string(),
        "4096",
    );
    tokens::done(
        &mut out,
        tokens::DONE,
        tokens::DONE_FINAL,
        tokens::CMD_NONE,
        0,
    );
    out
}

/// The tokens of a refused login: `errors` (the last one is 18456), then DONE with the error bit.
pub fn failure(errors: &[SqlError]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in errors {
        tokens::error(&mut out, e);
    }
    tokens::done(
        &mut out,
        tokens::DONE,
        tokens::DONE_ERROR,
        tokens::CMD_NONE,
        0,
    );
    out
}

/// ERROR 18456 as SQL Server words it.
pub fn login_failed(user: &str) -> SqlError {
    SqlError::with_class(18456, 14, format!("Login failed for user '{user}'."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unscramble_inverts_the_obfuscation() {
        for b in 0..=255u8 {
            let scrambled = ((b << 4) & 0xf0 | (b >> 4) & 0x0f) ^ 0xA5;
            assert_eq!(unscramble(scrambled), b);
        }
    }

    #[test]
    fn short_or_lying_logins_are_errors() {
        assert!(parse(&[0; 10]).is_err());
        let mut p = vec![0u8; FIXED];
        p[0] = FIXED as u8;
        p[40] = 200; // user name offset past the end
        p[42] = 4;
        assert!(parse(&p).is_err());
    }
}
