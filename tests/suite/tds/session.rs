//! One client connection: PRELOGIN, LOGIN7, then SQL batches, RPCs and Transaction Manager
//! requests answered one at a time (no MARS). A reader task reassembles messages so an
//! ATTENTION can arrive while a response is being sent: rows stop at the next packet boundary
//! and the response ends with DONE carrying the attention bit. Faults (delay, deadlock, drop
//! mid-result) are applied here. Malformed input closes the connection; nothing panics.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

use super::Shared;
use super::exec::{Engine, Outcome};
use super::faults::Counters;
use super::login;
use super::packet::{self, FrameError, Message, PacketWriter};
use super::prelogin;
use super::request::{self, ISOLATION_SNAPSHOT, TmRequest};
use super::rpc::{self, Param};
use super::sql::{SqlError, Statement};
use super::tokens;

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// The client left, or the login failed.
    Closed,
    Protocol(String),
    Io,
    /// The drop-mid-result fault fired.
    Dropped,
}

impl From<std::io::Error> for End {
    fn from(_: std::io::Error) -> Self {
        End::Io
    }
}

impl From<FrameError> for End {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Closed => End::Closed,
            FrameError::Io => End::Io,
            FrameError::Malformed(why) => End::Protocol(why),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Batch,
    Rpc,
}

type Inbox = mpsc::Receiver<Result<Message, FrameError>>;

/// Serves one connection until it ends.
pub async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let spid = shared.next_spid.fetch_add(1, Ordering::SeqCst);
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel(16);
    let reader = tokio::spawn(async move {
        loop {
            let m = packet::read_message(&mut rd).await;
            let stop = m.is_err();
            if tx.send(m).await.is_err() || stop {
                break;
            }
        }
    });
    let mut session = Session {
        out: PacketWriter::new(wr, spid),
        shared,
        rx,
        engine: None,
        spid,
    };
    let end = session.run().await;
    if let Err(End::Protocol(why)) = end {
        Counters::bump(&session.shared.counters.protocol_errors);
        *super::lock(&session.shared.last_protocol_error) = Some(why);
    }
    reader.abort();
}

struct Session {
    shared: Arc<Shared>,
    rx: Inbox,
    out: PacketWriter,
    engine: Option<Engine>,
    spid: u16,
}

impl Session {
    async fn recv(&mut self) -> Result<Message, End> {
        match self.rx.recv().await {
            None => Err(End::Closed),
            Some(m) => Ok(m?),
        }
    }

    async fn run(&mut self) -> Result<(), End> {
        let msg = self.recv().await?;
        if msg.ty != packet::TYPE_PRELOGIN {
            return Err(End::Protocol(format!(
                "expected PRELOGIN, got type {}",
                msg.ty
            )));
        }
        prelogin::parse(&msg.payload).map_err(End::Protocol)?;
        self.out.buf().extend_from_slice(&prelogin::response());
        self.out.finish().await?;

        let msg = self.recv().await?;
        if msg.ty != packet::TYPE_LOGIN7 {
            return Err(End::Protocol(format!(
                "expected LOGIN7, got type {}",
                msg.ty
            )));
        }
        let login = login::parse(&msg.payload).map_err(End::Protocol)?;
        self.login(login).await?;

        loop {
            let msg = self.recv().await?;
            match msg.ty {
                packet::TYPE_SQL_BATCH => self.sql_batch(&msg.payload).await?,
                packet::TYPE_RPC => self.rpc(&msg.payload).await?,
                packet::TYPE_TRANSACTION_MANAGER => self.transaction_manager(&msg.payload).await?,
                packet::TYPE_ATTENTION => {
                    // nothing running: acknowledge at once
                    Counters::bump(&self.shared.counters.attentions);
                    self.ack_attention().await?;
                }
                other => return Err(End::Protocol(format!("unexpected message type {other}"))),
            }
        }
    }

    async fn login(&mut self, login: login::Login) -> Result<(), End> {
        let opts = &self.shared.options;
        let mut errors = Vec::new();
        if self.shared.faults.take_login_failure() {
            errors.push(login::login_failed(&login.user));
        } else if login.integrated {
            errors.push(SqlError::with_class(
                18452,
                14,
                "Login failed. The login is from an untrusted domain and cannot be used with Integrated authentication.",
            ));
        } else if !login.user.eq_ignore_ascii_case(&opts.user) || login.password != opts.password {
            errors.push(login::login_failed(&login.user));
        } else if !login.database.is_empty() && !login.database.eq_ignore_ascii_case(&opts.database)
        {
            errors.push(SqlError::with_class(
                4060,
                11,
                format!(
                    "Cannot open database \"{}\" requested by the login. The login failed.",
                    login.database
                ),
            ));
            errors.push(login::login_failed(&login.user));
        }
        if errors.is_empty() {
            let path = self.shared.db_path.clone();
            let (spid, database) = (self.spid, opts.database.clone());
            match tokio::task::spawn_blocking(move || Engine::open(&path, spid, &database)).await {
                Ok(Ok(engine)) => self.engine = Some(engine),
                Ok(Err(e)) => errors.extend([e, login::login_failed(&login.user)]),
                Err(e) => return Err(End::Protocol(format!("engine open failed: {e}"))),
            }
        }
        if !errors.is_empty() {
            Counters::bump(&self.shared.counters.failed_logins);
            self.out.buf().extend_from_slice(&login::failure(&errors));
            self.out.finish().await?;
            return Err(End::Closed);
        }
        let size = if (512..=32_767).contains(&login.packet_size) {
            login.packet_size
        } else {
            packet::DEFAULT_PACKET_SIZE as u32
        };
        let database = self.shared.options.database.clone();
        // counted before the client hears of it, so a test sees it once connected
        Counters::bump(&self.shared.counters.logins);
        self.out
            .buf()
            .extend_from_slice(&login::success(&database, size));
        self.out.finish().await?;
        self.out.set_packet_size(size as usize);
        Ok(())
    }

    /// Runs `f` on the engine in a blocking task (SQLite calls block).
    async fn with_engine<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Engine) -> R + Send + 'static,
    ) -> Result<R, End> {
        let mut engine = self
            .engine
            .take()
            .ok_or_else(|| End::Protocol("no engine".into()))?;
        let (engine, r) = tokio::task::spawn_blocking(move || {
            let r = f(&mut engine);
            (engine, r)
        })
        .await
        .map_err(|e| End::Protocol(format!("engine task failed: {e}")))?;
        self.engine = Some(engine);
        Ok(r)
    }

    /// An ATTENTION waiting in the inbox? Any other message now is a protocol error.
    fn poll_attention(&mut self) -> Result<bool, End> {
        match self.rx.try_recv() {
            Ok(Ok(m)) if m.ty == packet::TYPE_ATTENTION => {
                Counters::bump(&self.shared.counters.attentions);
                Ok(true)
            }
            Ok(Ok(m)) => Err(End::Protocol(format!(
                "message type {} while a response is pending",
                m.ty
            ))),
            Ok(Err(e)) => Err(e.into()),
            Err(TryRecvError::Empty) => Ok(false),
            Err(TryRecvError::Disconnected) => Err(End::Closed),
        }
    }

    /// Sleeps `d`, or less when an ATTENTION arrives (returns true then).
    async fn sleep_or_attention(&mut self, d: std::time::Duration) -> Result<bool, End> {
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(false),
            m = self.rx.recv() => match m {
                None => Err(End::Closed),
                Some(Ok(m)) if m.ty == packet::TYPE_ATTENTION => {
                    Counters::bump(&self.shared.counters.attentions);
                    Ok(true)
                }
                Some(Ok(m)) => Err(End::Protocol(format!("message type {} while a response is pending", m.ty))),
                Some(Err(e)) => Err(e.into()),
            },
        }
    }

    async fn ack_attention(&mut self) -> Result<(), End> {
        tokens::done(
            self.out.buf(),
            tokens::DONE,
            tokens::DONE_ATTN,
            tokens::CMD_NONE,
            0,
        );
        self.out.finish().await?;
        Ok(())
    }

    /// Applies the response delay; false when the request was cancelled meanwhile.
    async fn delay(&mut self) -> Result<bool, End> {
        if let Some(d) = self.shared.faults.delay()
            && self.sleep_or_attention(d).await?
        {
            self.ack_attention().await?;
            return Ok(false);
        }
        Ok(true)
    }

    async fn malformed(&mut self, why: String) -> Result<(), End> {
        let e = SqlError::with_class(
            4002,
            20,
            "The incoming tabular data stream (TDS) protocol stream is incorrect.",
        );
        tokens::error(self.out.buf(), &e);
        tokens::done(
            self.out.buf(),
            tokens::DONE,
            tokens::DONE_ERROR,
            tokens::CMD_NONE,
            0,
        );
        self.out.finish().await?;
        Err(End::Protocol(why))
    }

    fn end_with_error(&mut self, e: &SqlError, mode: Mode) {
        tokens::error(self.out.buf(), e);
        let token = if mode == Mode::Rpc {
            tokens::DONE_PROC
        } else {
            tokens::DONE
        };
        tokens::done(
            self.out.buf(),
            token,
            tokens::DONE_ERROR,
            tokens::CMD_NONE,
            0,
        );
    }

    async fn sql_batch(&mut self, payload: &[u8]) -> Result<(), End> {
        Counters::bump(&self.shared.counters.batches);
        match request::sql_batch(payload) {
            Ok(text) => self.statements(text, Vec::new(), Mode::Batch).await,
            Err(why) => self.malformed(why).await,
        }
    }

    async fn rpc(&mut self, payload: &[u8]) -> Result<(), End> {
        Counters::bump(&self.shared.counters.rpcs);
        let call = match rpc::parse(payload) {
            Ok(call) => call,
            Err(why) => return self.malformed(why).await,
        };
        match rpc::executesql(call) {
            Ok(x) => self.statements(x.sql, x.params, Mode::Rpc).await,
            Err(e) => {
                if self.delay().await? {
                    self.end_with_error(&e, Mode::Rpc);
                    self.out.finish().await?;
                }
                Ok(())
            }
        }
    }

    async fn transaction_manager(&mut self, payload: &[u8]) -> Result<(), End> {
        let req = match request::transaction_manager(payload) {
            Ok(r) => r,
            Err(why) => return self.malformed(why).await,
        };
        if !self.delay().await? {
            return Ok(());
        }
        let stmt = match req {
            TmRequest::Begin { isolation } => {
                if isolation == ISOLATION_SNAPSHOT
                    && let Some(e) = self.engine.as_mut()
                {
                    e.isolation = "SNAPSHOT".into();
                }
                Statement::Begin
            }
            TmRequest::Commit => Statement::Commit,
            TmRequest::Rollback { savepoint } if savepoint.is_empty() => Statement::Rollback(None),
            TmRequest::Rollback { savepoint } => Statement::Rollback(Some(savepoint)),
            TmRequest::Save { name } => Statement::Save(name),
            TmRequest::Unsupported(ty) => {
                let e = SqlError::new(
                    8509,
                    format!("Transaction Manager request type {ty} is not supported."),
                );
                self.end_with_error(&e, Mode::Batch);
                self.out.finish().await?;
                return Ok(());
            }
        };
        let result = self
            .with_engine(move |e| e.execute(&stmt, &[], None))
            .await?;
        match result {
            Ok(outcome) => {
                self.outcome_tokens(&outcome, true, Mode::Batch);
            }
            Err(e) => self.end_with_error(&e, Mode::Batch),
        }
        self.out.finish().await?;
        Ok(())
    }

    /// The deadlock fault: 1205 (and the rollback of an open transaction) instead of running.
    async fn deadlock(&mut self, mode: Mode) -> Result<bool, End> {
        if !self.shared.faults.take_deadlock() {
            return Ok(false);
        }
        let aborted = self.with_engine(|e| e.abort_transaction()).await?;
        if let Some(desc) = aborted {
            tokens::env_bytes(self.out.buf(), tokens::ENV_ROLLBACK_TRAN, &[], &desc);
        }
        let mut e = SqlError::with_class(
            1205,
            13,
            format!(
                "Transaction (Process ID {}) was deadlocked on lock resources with another process and has been \
                 chosen as the deadlock victim. Rerun the transaction.",
                self.spid
            ),
        );
        e.state = 51;
        self.end_with_error(&e, mode);
        self.out.finish().await?;
        Ok(true)
    }

    /// DONE (batch) or DONEINPROC (RPC) status for a statement.
    fn status(&self, last: bool, mode: Mode, count: bool) -> (u8, u16) {
        let nocount = self.engine.as_ref().is_some_and(|e| e.nocount);
        let mut status = if mode == Mode::Rpc || !last {
            tokens::DONE_MORE
        } else {
            tokens::DONE_FINAL
        };
        if count && !nocount {
            status |= tokens::DONE_COUNT;
        }
        (
            if mode == Mode::Rpc {
                tokens::DONE_IN_PROC
            } else {
                tokens::DONE
            },
            status,
        )
    }

    /// Tokens of a statement outcome other than rows and waits.
    fn outcome_tokens(&mut self, outcome: &Outcome, last: bool, mode: Mode) {
        let (env, cmd) = match outcome {
            Outcome::Affected { cmd, rows } => {
                let (token, status) = self.status(last, mode, true);
                tokens::done(self.out.buf(), token, status, *cmd, *rows);
                return;
            }
            Outcome::Began(d) => (
                Some((tokens::ENV_BEGIN_TRAN, d.to_vec(), Vec::new())),
                tokens::CMD_BEGIN_TRAN,
            ),
            Outcome::Committed(d) => (
                Some((tokens::ENV_COMMIT_TRAN, Vec::new(), d.to_vec())),
                tokens::CMD_COMMIT,
            ),
            Outcome::RolledBack(d) => (
                Some((tokens::ENV_ROLLBACK_TRAN, Vec::new(), d.to_vec())),
                tokens::CMD_ROLLBACK,
            ),
            Outcome::Nothing => {
                if last && mode == Mode::Batch {
                    tokens::done(
                        self.out.buf(),
                        tokens::DONE,
                        tokens::DONE_FINAL,
                        tokens::CMD_NONE,
                        0,
                    );
                }
                return;
            }
            Outcome::Rows { .. } | Outcome::Wait(_) => return,
        };
        if let Some((ty, new, old)) = env {
            tokens::env_bytes(self.out.buf(), ty, &new, &old);
        }
        let (token, status) = self.status(last, mode, false);
        tokens::done(self.out.buf(), token, status, cmd, 0);
    }

    async fn statements(
        &mut self,
        text: String,
        params: Vec<Param>,
        mode: Mode,
    ) -> Result<(), End> {
        if !self.delay().await? {
            return Ok(());
        }
        if self.deadlock(mode).await? {
            return Ok(());
        }
        let params = Arc::new(params);
        let p = params.clone();
        let prepared = self.with_engine(move |e| e.prepare(&text, &p)).await?;
        let stmts = match prepared {
            Ok(s) => s,
            Err(e) => {
                self.end_with_error(&e, mode);
                self.out.finish().await?;
                return Ok(());
            }
        };
        let n = stmts.len();
        let mut rows_sent = 0u64;
        for (idx, stmt) in stmts.into_iter().enumerate() {
            let last = idx + 1 == n;
            if self.poll_attention()? {
                return self.ack_attention().await;
            }
            let min_rv = self.shared.min_reserved_rowversion();
            let p = params.clone();
            let outcome = match self
                .with_engine(move |e| e.execute(&stmt, &p, min_rv))
                .await?
            {
                Ok(o) => o,
                Err(e) => {
                    self.end_with_error(&e, mode);
                    self.out.finish().await?;
                    return Ok(());
                }
            };
            match outcome {
                Outcome::Rows { columns, rows } => {
                    tokens::col_metadata(self.out.buf(), &columns);
                    let packet_room = packet::DEFAULT_PACKET_SIZE;
                    for row in &rows {
                        if self.shared.faults.drop_point() == Some(rows_sent) {
                            self.shared.faults.fired_drop();
                            self.out.flush_all(false).await?;
                            self.out.shutdown().await;
                            return Err(End::Dropped);
                        }
                        if let Err(e) = tokens::row(self.out.buf(), &columns, row) {
                            self.end_with_error(&e, mode);
                            self.out.finish().await?;
                            return Ok(());
                        }
                        rows_sent += 1;
                        if self.out.pending() >= packet_room
                            && self.out.flush_full().await?
                            && self.poll_attention()?
                        {
                            return self.ack_attention().await;
                        }
                    }
                    let (token, status) = self.status(last, mode, true);
                    tokens::done(
                        self.out.buf(),
                        token,
                        status,
                        tokens::CMD_SELECT,
                        rows.len() as u64,
                    );
                }
                Outcome::Wait(d) => {
                    self.out.flush_full().await?;
                    if self.sleep_or_attention(d).await? {
                        return self.ack_attention().await;
                    }
                    let (token, status) = self.status(last, mode, false);
                    tokens::done(self.out.buf(), token, status, tokens::CMD_NONE, 0);
                }
                other => self.outcome_tokens(&other, last, mode),
            }
        }
        if mode == Mode::Rpc {
            tokens::return_status(self.out.buf(), 0);
            tokens::done(
                self.out.buf(),
                tokens::DONE_PROC,
                tokens::DONE_FINAL,
                tokens::CMD_NONE,
                0,
            );
        }
        self.out.finish().await?;
        Ok(())
    }
}
