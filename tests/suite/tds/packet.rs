//! TDS packet framing: the 8-byte header, reassembly of a message from packets up to the
//! end-of-message (EOM) status, and splitting a response into packets of the negotiated size.
//! Malformed framing (unknown type, bad length, mixed types, oversized message) is an error
//! that closes the connection.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

pub const HEADER: usize = 8;
/// The packet size before and unless the login negotiates another (tiberius' default too).
pub const DEFAULT_PACKET_SIZE: usize = 4096;
/// The largest packet size a login may negotiate.
pub const MAX_PACKET_SIZE: usize = 32_767;
/// The largest request message the harness accepts.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

pub const TYPE_SQL_BATCH: u8 = 0x01;
pub const TYPE_RPC: u8 = 0x03;
pub const TYPE_TABULAR: u8 = 0x04;
pub const TYPE_ATTENTION: u8 = 0x06;
pub const TYPE_BULK_LOAD: u8 = 0x07;
pub const TYPE_TRANSACTION_MANAGER: u8 = 0x0E;
pub const TYPE_LOGIN7: u8 = 0x10;
pub const TYPE_SSPI: u8 = 0x11;
pub const TYPE_PRELOGIN: u8 = 0x12;

const STATUS_EOM: u8 = 0x01;
const STATUS_IGNORE: u8 = 0x02;

/// A reassembled client message.
#[derive(Debug)]
pub struct Message {
    pub ty: u8,
    pub payload: Vec<u8>,
}

/// Why a connection is being closed.
#[derive(Debug)]
pub enum FrameError {
    /// The peer closed the connection (between messages).
    Closed,
    Io,
    Malformed(String),
}

impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::Malformed("connection closed inside a packet".into())
        } else {
            FrameError::Io
        }
    }
}

/// Reads one whole message (all its packets). Messages flagged "ignore" are skipped.
pub async fn read_message(rd: &mut OwnedReadHalf) -> Result<Message, FrameError> {
    loop {
        let mut payload = Vec::new();
        let mut ty = None;
        loop {
            let mut header = [0u8; HEADER];
            // EOF before the first header byte of a message is a clean close.
            let n = rd.read(&mut header[..1]).await?;
            if n == 0 {
                return if ty.is_none() {
                    Err(FrameError::Closed)
                } else {
                    Err(FrameError::Malformed(
                        "connection closed inside a message".into(),
                    ))
                };
            }
            rd.read_exact(&mut header[1..]).await?;
            let packet_ty = header[0];
            let status = header[1];
            let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
            if !matches!(
                packet_ty,
                TYPE_SQL_BATCH
                    | TYPE_RPC
                    | TYPE_ATTENTION
                    | TYPE_BULK_LOAD
                    | TYPE_TRANSACTION_MANAGER
                    | TYPE_LOGIN7
                    | TYPE_SSPI
                    | TYPE_PRELOGIN
            ) {
                return Err(FrameError::Malformed(format!(
                    "unknown packet type 0x{packet_ty:02X}"
                )));
            }
            if !(HEADER..=MAX_PACKET_SIZE).contains(&length) {
                return Err(FrameError::Malformed(format!("packet length {length}")));
            }
            if ty.is_some_and(|t| t != packet_ty) {
                return Err(FrameError::Malformed(
                    "packet type changed inside a message".into(),
                ));
            }
            ty = Some(packet_ty);
            let start = payload.len();
            if start + length - HEADER > MAX_MESSAGE {
                return Err(FrameError::Malformed("message too large".into()));
            }
            payload.resize(start + length - HEADER, 0);
            rd.read_exact(&mut payload[start..]).await?;
            if status & STATUS_EOM != 0 {
                if status & STATUS_IGNORE != 0 {
                    break;
                }
                return Ok(Message {
                    ty: packet_ty,
                    payload,
                });
            }
        }
    }
}

/// Buffers the tokens of one response and writes them as packets of the negotiated size.
pub struct PacketWriter {
    wr: OwnedWriteHalf,
    packet_size: usize,
    spid: u16,
    packet_id: u8,
    buf: Vec<u8>,
}

impl PacketWriter {
    pub fn new(wr: OwnedWriteHalf, spid: u16) -> Self {
        PacketWriter {
            wr,
            packet_size: DEFAULT_PACKET_SIZE,
            spid,
            packet_id: 1,
            buf: Vec::new(),
        }
    }

    pub fn set_packet_size(&mut self, size: usize) {
        self.packet_size = size.clamp(512, MAX_PACKET_SIZE);
    }

    /// The buffer tokens are appended to.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Bytes buffered and not yet written.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Writes every full packet buffered so far (not the last, partial one). Returns whether
    /// anything was written.
    pub async fn flush_full(&mut self) -> std::io::Result<bool> {
        let room = self.packet_size - HEADER;
        if self.buf.len() <= room {
            return Ok(false);
        }
        let full = (self.buf.len() - 1) / room * room;
        let rest = self.buf.split_off(full);
        let data = std::mem::replace(&mut self.buf, rest);
        let mut wire = Vec::with_capacity(data.len() + data.len() / room * HEADER + HEADER);
        for chunk in data.chunks(room) {
            self.frame(&mut wire, chunk, false);
        }
        self.wr.write_all(&wire).await?;
        Ok(true)
    }

    /// Writes everything buffered; the last packet carries EOM when `end` is set.
    pub async fn flush_all(&mut self, end: bool) -> std::io::Result<()> {
        let room = self.packet_size - HEADER;
        let data = std::mem::take(&mut self.buf);
        let mut wire = Vec::with_capacity(data.len() + data.len() / room * HEADER + HEADER);
        let chunks: Vec<&[u8]> = if data.is_empty() {
            vec![&[]]
        } else {
            data.chunks(room).collect()
        };
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            if chunk.is_empty() && !end {
                continue;
            }
            self.frame(&mut wire, chunk, end && i == last);
        }
        self.wr.write_all(&wire).await?;
        self.wr.flush().await
    }

    /// Ends the response message.
    pub async fn finish(&mut self) -> std::io::Result<()> {
        self.flush_all(true).await
    }

    /// Abruptly closes the connection (a fault).
    pub async fn shutdown(&mut self) {
        let _ = self.wr.shutdown().await;
    }

    fn frame(&mut self, wire: &mut Vec<u8>, chunk: &[u8], eom: bool) {
        let len = (chunk.len() + HEADER) as u16;
        wire.push(TYPE_TABULAR);
        wire.push(if eom { STATUS_EOM } else { 0 });
        wire.extend_from_slice(&len.to_be_bytes());
        wire.extend_from_slice(&self.spid.to_be_bytes());
        wire.push(self.packet_id);
        wire.push(0);
        self.packet_id = self.packet_id.wrapping_add(1);
        wire.extend_from_slice(chunk);
    }
}
