//! PRELOGIN: the client's options are checked for well-formedness and answered with the
//! server version, encryption NOT_SUP (the harness has no TLS), no instance and no MARS.

/// Option tokens (MS-TDS 2.2.6.5).
const VERSION: u8 = 0x00;
const ENCRYPTION: u8 = 0x01;
const INSTOPT: u8 = 0x02;
const THREADID: u8 = 0x03;
const MARS: u8 = 0x04;
const TERMINATOR: u8 = 0xFF;

/// ENCRYPT_NOT_SUP.
pub const ENCRYPT_NOT_SUP: u8 = 0x02;

/// What the client's PRELOGIN asked for.
#[derive(Debug, Default)]
pub struct ClientPrelogin {
    pub encryption: Option<u8>,
    pub mars: bool,
}

/// Parses the client's PRELOGIN option table.
pub fn parse(payload: &[u8]) -> Result<ClientPrelogin, String> {
    let mut out = ClientPrelogin::default();
    let mut i = 0;
    loop {
        let token = *payload.get(i).ok_or("prelogin: no terminator")?;
        if token == TERMINATOR {
            return Ok(out);
        }
        let entry = payload
            .get(i + 1..i + 5)
            .ok_or("prelogin: truncated option table")?;
        let offset = usize::from(u16::from_be_bytes([entry[0], entry[1]]));
        let len = usize::from(u16::from_be_bytes([entry[2], entry[3]]));
        let data = payload
            .get(offset..offset + len)
            .ok_or_else(|| format!("prelogin: option {token} points outside the message"))?;
        match token {
            ENCRYPTION => out.encryption = data.first().copied(),
            MARS => out.mars = data.first().is_some_and(|m| *m != 0),
            _ => {}
        }
        i += 5;
    }
}

/// The server's PRELOGIN answer.
pub fn response() -> Vec<u8> {
    // version 16.0.4135.0 (major, minor, build BE, sub-build BE)
    let options: [(u8, Vec<u8>); 5] = [
        (VERSION, vec![16, 0, 0x10, 0x27, 0, 0]),
        (ENCRYPTION, vec![ENCRYPT_NOT_SUP]),
        (INSTOPT, vec![0]),
        (THREADID, vec![]),
        (MARS, vec![0]),
    ];
    let mut table = Vec::new();
    let mut data = Vec::new();
    let mut offset = options.len() * 5 + 1;
    for (token, value) in &options {
        table.push(*token);
        table.extend_from_slice(&(offset as u16).to_be_bytes());
        table.extend_from_slice(&(value.len() as u16).to_be_bytes());
        offset += value.len();
        data.extend_from_slice(value);
    }
    table.push(TERMINATOR);
    table.extend_from_slice(&data);
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_own_answer_and_rejects_garbage() {
        let ours = parse(&response()).unwrap();
        assert_eq!(ours.encryption, Some(ENCRYPT_NOT_SUP));
        assert!(!ours.mars);
        assert!(parse(&[]).is_err());
        assert!(parse(&[0x01, 0x00, 0x50, 0x00, 0x01, 0xFF]).is_err());
        assert!(parse(&[0x01, 0x00]).is_err());
    }
}
