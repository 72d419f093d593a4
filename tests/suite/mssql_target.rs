//! Where the mssql tests run: the TDS test harness (`tests/suite/tds`) by default, or a real
//! SQL Server when `MSSQL_TEST_URL` holds an ADO.NET connection string, each test in a
//! database of its own. Setup SQL is written in the subset both understand; a test that needs
//! the harness' fault injection is skipped on a real server and says so on stderr.
//!
//! The login of `MSSQL_TEST_URL` needs permission to create databases (`CREATE ANY
//! DATABASE`, e.g. the `dbcreator` role): every test creates `[lb_test_<random>]` and drops it
//! when done (best effort). The database named in the string, if any, is not used.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tiberius::Client;
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt as _};

use super::tds::{TdsOptions, TdsServer};

/// The environment variable naming a real SQL Server (an ADO.NET connection string as
/// `tiberius::Config::from_ado_string` accepts it).
pub const URL_ENV: &str = "MSSQL_TEST_URL";

/// How long connecting to a real server, or one setup statement, may take.
const SERVER_TIMEOUT: Duration = Duration::from_secs(60);

/// The collation of each test database: the one the harness emulates, so text order and the
/// code page of `varchar` are the same on both.
const COLLATION: &str = "SQL_Latin1_General_CP1_CI_AS";

/// A tiberius client connected to the test database.
pub type TestClient = Client<Compat<TcpStream>>;

/// The server a test runs against: the harness, or a database of its own on a real server.
pub struct MssqlTarget {
    kind: Kind,
}

enum Kind {
    Harness(TdsServer),
    Server(TestDatabase),
}

impl MssqlTarget {
    /// A fresh harness, or a fresh database on the server of `MSSQL_TEST_URL` when that is
    /// set. Panics, naming the cause, when the string is not usable, the server cannot be
    /// reached or the database cannot be created: a test never passes without its server.
    pub async fn start() -> MssqlTarget {
        let Some(url) = server_url() else {
            return Self::harness_target();
        };
        match TestDatabase::create(&url).await {
            Ok(db) => MssqlTarget {
                kind: Kind::Server(db),
            },
            Err(e) => panic!("{URL_ENV}: {e}"),
        }
    }

    /// For a test that needs the harness (fault injection, a server that stops): the harness,
    /// or `None` on a real server after saying on stderr that the test is skipped and `why`.
    pub fn harness_only(why: &str) -> Option<MssqlTarget> {
        if let Some(url) = server_url() {
            eprintln!(
                "skipping {} on the SQL Server of {URL_ENV} ({}): {why}, which only the TDS \
                 harness can do",
                std::thread::current().name().unwrap_or("this test"),
                url.describe()
            );
            return None;
        }
        Some(Self::harness_target())
    }

    fn harness_target() -> MssqlTarget {
        MssqlTarget {
            kind: Kind::Harness(TdsServer::start(None, TdsOptions::default())),
        }
    }

    /// The harness (for fault injection), `None` on a real server.
    pub fn harness(&self) -> Option<&TdsServer> {
        match &self.kind {
            Kind::Harness(server) => Some(server),
            Kind::Server(_) => None,
        }
    }

    /// [`Self::harness`], mutable (to stop and restart it).
    pub fn harness_mut(&mut self) -> Option<&mut TdsServer> {
        match &mut self.kind {
            Kind::Harness(server) => Some(server),
            Kind::Server(_) => None,
        }
    }

    /// Runs a setup or "legacy application" statement: on the harness directly on SQLite
    /// (`TdsServer::execute`), on a real server as T-SQL. Write it in the subset both take
    /// (CREATE TABLE with SQL Server types, INSERT, UPDATE, DELETE) or branch on
    /// [`Self::harness`]. Panics on error.
    pub async fn setup(&self, sql: &str) {
        match &self.kind {
            Kind::Harness(server) => server.execute(sql),
            Kind::Server(db) => {
                let run = async {
                    let mut client = db.connect().await?;
                    batch(&mut client, sql).await
                };
                if let Err(e) = bounded(Box::pin(run)).await {
                    panic!("setup SQL failed on {}: {e}\n{sql}", db.describe());
                }
            }
        }
    }

    /// How many rows a query returns (on the harness read directly from SQLite, on a real
    /// server as T-SQL).
    pub async fn query_rows(&self, sql: &str) -> usize {
        match &self.kind {
            Kind::Harness(server) => server.query(sql).len(),
            Kind::Server(db) => {
                let run = async {
                    let mut client = db.connect().await?;
                    let rows = client
                        .simple_query(sql)
                        .await
                        .map_err(|e| e.to_string())?
                        .into_first_result()
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(rows.len())
                };
                match bounded(Box::pin(run)).await {
                    Ok(n) => n,
                    Err(e) => panic!("query failed on {}: {e}\n{sql}", db.describe()),
                }
            }
        }
    }

    /// A tiberius client of the test database, as a legacy application would connect (on a
    /// real server with `SET DATEFORMAT ymd`, so `'YYYY-MM-DD ...'` literals read the same
    /// whatever the login's language).
    pub async fn client(&self) -> TestClient {
        match &self.kind {
            Kind::Harness(server) => {
                let config = tiberius::Config::from_ado_string(&server.connection_string())
                    .expect("the harness' connection string");
                let tcp = TcpStream::connect(server.addr())
                    .await
                    .expect("connect to the harness");
                Box::pin(Client::connect(config, tcp.compat_write()))
                    .await
                    .expect("log in to the harness")
            }
            Kind::Server(db) => match bounded(Box::pin(db.connect())).await {
                Ok(client) => client,
                Err(e) => panic!("cannot connect to {}: {e}", db.describe()),
            },
        }
    }

    /// The connection keys of an mssql source config (host, port, database, user, password,
    /// encrypt and, on a real server, what its TLS needs), one per line.
    pub fn connection_keys(&self) -> String {
        match &self.kind {
            Kind::Harness(server) => {
                let o = TdsOptions::default();
                format!(
                    "host = \"127.0.0.1\"\nport = {}\ndatabase = {}\nuser = {}\npassword = {}\n\
                     encrypt = \"off\"\n",
                    server.addr().port(),
                    toml_str(&o.database),
                    toml_str(&o.user),
                    toml_str(&o.password)
                )
            }
            Kind::Server(db) => db.url.source_keys(&db.name),
        }
    }

    /// The bridge's `[sources.pos]` section for this target (5 s query and connect timeouts),
    /// with `extra` keys appended.
    pub fn source_toml(&self, extra: &str) -> String {
        format!(
            "[sources.pos]\nkind = \"mssql\"\n{}query_timeout_secs = 5\nconnect_timeout_secs = 5\n\
             {extra}",
            self.connection_keys()
        )
    }
}

/// The server of `MSSQL_TEST_URL`, `None` when it is unset or empty. Panics when it is set
/// but not usable.
fn server_url() -> Option<AdoUrl> {
    let raw = std::env::var(URL_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())?;
    match AdoUrl::parse(&raw) {
        Ok(url) => Some(url),
        Err(e) => panic!("{URL_ENV} is set but not usable: {e}"),
    }
}

/// Runs `work` against a real server within [`SERVER_TIMEOUT`].
async fn bounded<T>(work: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::time::timeout(SERVER_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {SERVER_TIMEOUT:?}")))
}

/// Runs a T-SQL batch and reads every result, so an error of any statement is returned.
async fn batch(client: &mut TestClient, sql: &str) -> Result<(), String> {
    client
        .simple_query(sql)
        .await
        .map_err(|e| e.to_string())?
        .into_results()
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// A database of one test on a real server; dropped with the value (best effort).
struct TestDatabase {
    url: AdoUrl,
    name: String,
    /// False only in this module's own test, which borrows the harness' one database.
    drop_when_done: bool,
}

impl TestDatabase {
    async fn create(url: &AdoUrl) -> Result<TestDatabase, String> {
        let name = format!("lb_test_{:016x}", rand::random::<u64>());
        let create = async {
            let mut master = Box::pin(url.connect("master"))
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", url.describe()))?;
            batch(
                &mut master,
                &format!("CREATE DATABASE [{name}] COLLATE {COLLATION}"),
            )
            .await
            .map_err(|e| {
                format!(
                    "CREATE DATABASE [{name}] failed on {}: {e} (the login needs permission to \
                     create databases: CREATE ANY DATABASE, e.g. the dbcreator role)",
                    url.describe()
                )
            })
        };
        bounded(Box::pin(create)).await?;
        Ok(TestDatabase {
            url: url.clone(),
            name,
            drop_when_done: true,
        })
    }

    /// A client of this database, with `SET DATEFORMAT ymd`.
    async fn connect(&self) -> Result<TestClient, String> {
        let mut client = Box::pin(self.url.connect(&self.name)).await?;
        batch(&mut client, "SET DATEFORMAT ymd").await?;
        Ok(client)
    }

    fn describe(&self) -> String {
        format!("database [{}] on {}", self.name, self.url.describe())
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if !self.drop_when_done {
            return;
        }
        // Drop runs inside the test's runtime: a thread of its own can block on its own one.
        let url = self.url.clone();
        let sql = format!(
            "IF DB_ID(N'{0}') IS NOT NULL BEGIN \
             ALTER DATABASE [{0}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; \
             DROP DATABASE [{0}]; END",
            self.name
        );
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(bounded(Box::pin(async {
                let mut master = Box::pin(url.connect("master")).await?;
                batch(&mut master, &sql).await
            })))
        })
        .join()
        .unwrap_or_else(|_| Err("the dropping thread panicked".into()));
        if let Err(e) = dropped {
            eprintln!(
                "could not drop the test {}: {e}; drop it by hand",
                self.describe()
            );
        }
    }
}

/// What the tests take from an ADO.NET connection string, read as tiberius reads it
/// (`Config::from_ado_string`, which must accept it too). No `Debug`: it holds the password.
#[derive(Clone)]
struct AdoUrl {
    raw: String,
    host: String,
    port: Option<u16>,
    instance: Option<String>,
    user: String,
    password: String,
    /// The source config's `encrypt`: `required`, `login-only` or `off`.
    encrypt: &'static str,
    trust_server_certificate: bool,
    ca_file: Option<String>,
}

impl AdoUrl {
    fn parse(raw: &str) -> Result<AdoUrl, String> {
        tiberius::Config::from_ado_string(raw)
            .map_err(|e| format!("tiberius does not accept the connection string: {e}"))?;
        let pairs = ado_pairs(raw)?;
        let get = |keys: &[&str]| keys.iter().find_map(|k| pairs.get(*k).map(String::as_str));
        let server = get(&["server", "data source"])
            .ok_or("the connection string names no server (server=tcp:HOST,PORT)")?;
        let (host, port, instance) = parse_server(server)?;
        if let Some(v) = get(&["integratedsecurity", "integrated security"])
            && (v.eq_ignore_ascii_case("sspi") || parse_bool(v) == Some(true))
        {
            return Err(
                "integrated security: the mssql source logs in with SQL authentication \
                        only (user=...;password=...)"
                    .into(),
            );
        }
        let user = get(&["uid", "username", "user", "user id"])
            .filter(|u| !u.trim().is_empty())
            .ok_or("the connection string names no user (SQL authentication: user=...)")?;
        let password = get(&["password", "pwd"]).unwrap_or_default();
        // tiberius: no `encrypt` means TLS required; false means TLS for the login only.
        let encrypt = match get(&["encrypt"]) {
            None => "required",
            Some(v) => match parse_bool(v) {
                Some(true) => "required",
                Some(false) => "login-only",
                None if v == "DANGER_PLAINTEXT" => "off",
                None => {
                    return Err(format!(
                        "encrypt={v} has no equivalent in the mssql source config \
                         (required = true, login-only = false, off = DANGER_PLAINTEXT)"
                    ));
                }
            },
        };
        let trust_server_certificate = match get(&["trustservercertificate"]) {
            None => false,
            Some(v) => parse_bool(v).ok_or("TrustServerCertificate is not true/false/yes/no")?,
        };
        if get(&["hostnameincertificate", "hostname in certificate"]).is_some() {
            return Err(
                "HostNameInCertificate has no equivalent in the mssql source config".into(),
            );
        }
        Ok(AdoUrl {
            raw: raw.to_owned(),
            host,
            port,
            instance,
            user: user.to_owned(),
            password: password.to_owned(),
            encrypt,
            trust_server_certificate,
            ca_file: get(&["trustservercertificateca"]).map(str::to_owned),
        })
    }

    /// Where the string points and who logs in, never the password.
    fn describe(&self) -> String {
        let server = match (&self.instance, self.port) {
            (Some(instance), _) => format!("{}\\{instance}", self.host),
            (None, Some(port)) => format!("tcp:{},{port}", self.host),
            (None, None) => format!("tcp:{}", self.host),
        };
        format!("{server} as {}", self.user)
    }

    /// The mssql source config keys reaching `database` on this server, one per line. A
    /// named instance without a port is asked from SQL Browser on 1434, as tiberius does
    /// with the string (the source config's default port is 1433).
    fn source_keys(&self, database: &str) -> String {
        let port = self
            .port
            .unwrap_or(if self.instance.is_some() { 1434 } else { 1433 });
        let mut keys = format!("host = {}\nport = {port}\n", toml_env_str(&self.host));
        if let Some(instance) = &self.instance {
            keys.push_str(&format!("instance = {}\n", toml_str(instance)));
        }
        keys.push_str(&format!(
            "database = {}\nuser = {}\npassword = {}\nencrypt = \"{}\"\n",
            toml_env_str(database),
            toml_env_str(&self.user),
            toml_env_str(&self.password),
            self.encrypt
        ));
        // Without TLS there is no certificate to trust: the config refuses the keys then.
        if self.encrypt != "off" {
            if self.trust_server_certificate {
                keys.push_str("trust_server_certificate = true\n");
            }
            if let Some(ca) = &self.ca_file {
                keys.push_str(&format!("ca_file = {}\n", toml_str(ca)));
            }
        }
        keys
    }

    /// Connects to `database` with the string's login, TLS and server.
    async fn connect(&self, database: &str) -> Result<TestClient, String> {
        let mut config = tiberius::Config::from_ado_string(&self.raw).map_err(|e| e.to_string())?;
        config.database(database);
        config.application_name("legacy-bridge tests");
        let named = self.instance.is_some();
        let attempt = async move {
            let tcp = if named {
                use tiberius::SqlBrowser as _;
                TcpStream::connect_named(&config).await?
            } else {
                TcpStream::connect(config.get_addr()).await?
            };
            tcp.set_nodelay(true)?;
            Box::pin(Client::connect(config, tcp.compat_write())).await
        };
        match tokio::time::timeout(SERVER_TIMEOUT, Box::pin(attempt)).await {
            Err(_) => Err(format!("no answer within {SERVER_TIMEOUT:?}")),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(client)) => Ok(client),
        }
    }
}

/// `host`, `port` and `instance` of a `server` value: `[tcp:]host[\instance][,port]`, with
/// `(local)` and `.` meaning localhost, as tiberius reads it.
fn parse_server(value: &str) -> Result<(String, Option<u16>, Option<String>), String> {
    let value = value.strip_prefix("tcp:").unwrap_or(value);
    let parts: Vec<&str> = value.split(',').collect();
    if parts.len() > 2 {
        return Err(format!(
            "server={value} is not [tcp:]HOST[\\INSTANCE][,PORT]"
        ));
    }
    let port = match parts.get(1) {
        Some(p) => Some(
            p.trim()
                .parse::<u16>()
                .map_err(|_| format!("server={value}: `{p}` is not a port"))?,
        ),
        None => None,
    };
    let (host, instance) = match parts[0].split_once('\\') {
        Some((host, instance)) => (host, Some(instance.to_owned())),
        None => (parts[0], None),
    };
    let host = host.replace("(local)", "localhost");
    let host = if host.is_empty() || host == "." {
        "localhost".to_owned()
    } else {
        host
    };
    Ok((host, port, instance))
}

/// An ADO.NET boolean as tiberius takes it.
fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" => Some(true),
        "false" | "no" => Some(false),
        _ => None,
    }
}

/// The pairs of an ADO.NET connection string (keys lower-cased, the last of a key wins):
/// separated by `;`, each split at its first `=` (`==` in a key is a literal `=`); a value
/// may be quoted with `'...'` or `"..."` (a doubled quote inside is one) or `{...}`.
fn ado_pairs(s: &str) -> Result<HashMap<String, String>, String> {
    let b: Vec<char> = s.chars().collect();
    let n = b.len();
    let mut i = 0;
    let mut pairs = HashMap::new();
    while i < n {
        while i < n && (b[i] == ';' || b[i].is_whitespace()) {
            i += 1;
        }
        if i >= n {
            break;
        }
        let mut key = String::new();
        loop {
            if i >= n || b[i] == ';' {
                return Err("key-value pairs must be joined by a `=`".into());
            }
            if b[i] == '=' {
                if b.get(i + 1) == Some(&'=') {
                    key.push('=');
                    i += 2;
                    continue;
                }
                i += 1;
                break;
            }
            key.push(b[i]);
            i += 1;
        }
        while i < n && b[i].is_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        let quoted = if i < n && (b[i] == '\'' || b[i] == '"' || b[i] == '{') {
            let close = if b[i] == '{' { '}' } else { b[i] };
            let doubles = close != '}';
            i += 1;
            loop {
                if i >= n {
                    return Err("the connection string has an unclosed quote or brace".into());
                }
                if b[i] == close {
                    if doubles && b.get(i + 1) == Some(&close) {
                        value.push(close);
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                value.push(b[i]);
                i += 1;
            }
            true
        } else {
            false
        };
        let start = i;
        while i < n && b[i] != ';' {
            i += 1;
        }
        let rest: String = b[start..i].iter().collect();
        if quoted {
            if !rest.trim().is_empty() {
                return Err("unexpected characters after a quoted value".into());
            }
        } else {
            value = rest.trim_end().to_owned();
        }
        pairs.insert(key.trim().to_ascii_lowercase(), value);
    }
    Ok(pairs)
}

/// A TOML string.
fn toml_str(v: &str) -> String {
    toml::Value::String(v.to_owned()).to_string()
}

/// A TOML string of a key the config reads with `${VAR}` expansion: `$` doubled.
fn toml_env_str(v: &str) -> String {
    toml_str(&v.replace('$', "$$"))
}

#[cfg(test)]
mod tests {
    use legacy_bridge::config::{MssqlEncryption, MssqlSourceConfig, SourceConfig};

    use super::*;

    /// The source config a string maps to, loaded and validated as the bridge loads it.
    fn loaded(raw: &str) -> MssqlSourceConfig {
        let url = AdoUrl::parse(raw).unwrap();
        let toml = format!(
            "[sources.pos]\nkind = \"mssql\"\n{}",
            url.source_keys("lb_test_x")
        );
        let (dir, _keys) = super::super::harness::write_config_with_source(&toml);
        let config = legacy_bridge::config::load(&dir.path().join("config.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{toml}"));
        match config.deployment.sources.get("pos") {
            Some(SourceConfig::Mssql(cfg)) => cfg.clone(),
            other => panic!("not an mssql source: {other:?}"),
        }
    }

    #[test]
    fn an_ado_string_maps_to_the_source_config() {
        let cfg = loaded(
            "server=tcp:sql01.example,14330;user=sa;password=Pa55$w0rd=;TrustServerCertificate=true",
        );
        assert_eq!(
            (cfg.host.as_str(), cfg.port(), cfg.instance.as_deref()),
            ("sql01.example", 14330, None)
        );
        assert_eq!(
            (
                cfg.database.as_str(),
                cfg.user.as_str(),
                cfg.password.as_str()
            ),
            ("lb_test_x", "sa", "Pa55$w0rd=")
        );
        assert_eq!(cfg.encrypt, MssqlEncryption::Required);
        assert!(cfg.trust_server_certificate);
        assert_eq!(cfg.ca_file, None);
    }

    #[test]
    fn encryption_and_trust_map_as_tiberius_reads_them() {
        let base = "server=tcp:db,1433;user=sa;password=x";
        let encrypt = |extra: &str| loaded(&format!("{base};{extra}")).encrypt;
        assert_eq!(encrypt(""), MssqlEncryption::Required);
        assert_eq!(encrypt("Encrypt=true"), MssqlEncryption::Required);
        assert_eq!(encrypt("encrypt=yes"), MssqlEncryption::Required);
        assert_eq!(encrypt("Encrypt=False"), MssqlEncryption::LoginOnly);
        assert_eq!(encrypt("encrypt=no"), MssqlEncryption::LoginOnly);
        assert_eq!(encrypt("encrypt=DANGER_PLAINTEXT"), MssqlEncryption::Off);
        // No TLS, so nothing to trust: the keys are left out (the config refuses them).
        let plain = loaded(&format!(
            "{base};encrypt=DANGER_PLAINTEXT;TrustServerCertificate=yes"
        ));
        assert!(!plain.trust_server_certificate);
        let ca = loaded(&format!("{base};TrustServerCertificateCA=/etc/ssl/ca.pem"));
        assert_eq!(
            ca.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/ssl/ca.pem"))
        );
        assert!(!ca.trust_server_certificate);
    }

    #[test]
    fn servers_instances_aliases_and_quoting() {
        let cfg = loaded(r"Data Source=(local)\SQLEXPRESS;User ID=bridge;Pwd='a;b=''c'''");
        assert_eq!(cfg.host, "localhost");
        assert_eq!(cfg.instance.as_deref(), Some("SQLEXPRESS"));
        assert_eq!(cfg.port(), 1434, "SQL Browser's port, as tiberius asks it");
        assert_eq!(
            (cfg.user.as_str(), cfg.password.as_str()),
            ("bridge", "a;b='c'")
        );
        let cfg = loaded(r"server=.\SQL2019,1500;uid=u;password={p;w}");
        assert_eq!(
            (cfg.host.as_str(), cfg.port(), cfg.instance.as_deref()),
            ("localhost", 1500, Some("SQL2019"))
        );
        assert_eq!(cfg.password, "p;w");
        let cfg = loaded("server=db;user=u;password=\"x\"\"y\"");
        assert_eq!((cfg.port(), cfg.password.as_str()), (1433, "x\"y"));
    }

    #[test]
    fn unusable_strings_say_why() {
        let err = |raw: &str| AdoUrl::parse(raw).err().unwrap_or_default();
        assert!(
            err("user=sa;password=x").contains("no server"),
            "{}",
            err("user=sa;password=x")
        );
        assert!(err("server=tcp:db,1433;password=x").contains("no user"));
        assert!(err("server=tcp:db,1433;user=sa;password=x;encrypt=strict").contains("strict"));
        assert!(
            err("server=tcp:db,1433;user=sa;password=x;IntegratedSecurity=SSPI")
                .contains("SQL authentication")
        );
        assert!(
            err("server=tcp:db,1433;user=sa;password=x;HostNameInCertificate=db.corp")
                .contains("HostNameInCertificate")
        );
        assert!(err("server=tcp:db,1433;user=sa;password='open").contains("tiberius"));
        assert!(err("server=tcp:db,notaport;user=sa;password=x").contains("tiberius"));
    }

    #[test]
    fn the_description_never_shows_the_password() {
        let url =
            AdoUrl::parse("server=tcp:db,1433;user=sa;password=S3cret-Pw;encrypt=false").unwrap();
        assert_eq!(url.describe(), "tcp:db,1433 as sa");
        let named = AdoUrl::parse(r"server=db\INST;user=sa;password=S3cret-Pw").unwrap();
        assert_eq!(named.describe(), r"db\INST as sa");
    }

    /// The real-server path's plumbing (the string parsed, tiberius connections, setup batches
    /// with `SET DATEFORMAT`, row counts, the source config it writes) over TDS, against the
    /// harness posing as the server: it has one database and no CREATE DATABASE or CREATE
    /// TABLE over TDS, so the table is made directly and the database is borrowed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_server_path_speaks_tds_end_to_end() {
        use legacy_bridge::source::{Source as _, mssql::MssqlSource};

        let harness = TdsServer::start(None, TdsOptions::default());
        harness.execute("CREATE TABLE SEEN (ID INT NOT NULL PRIMARY KEY, AT DATETIME NULL)");
        let url = AdoUrl::parse(&harness.connection_string()).unwrap();
        assert_eq!(url.encrypt, "off");
        let target = MssqlTarget {
            kind: Kind::Server(TestDatabase {
                url,
                name: TdsOptions::default().database,
                drop_when_done: false,
            }),
        };
        assert!(target.harness().is_none());
        target
            .setup("INSERT INTO SEEN (ID, AT) VALUES (1, '2024-03-31 02:15:00'), (2, NULL)")
            .await;
        assert_eq!(target.query_rows("SELECT * FROM SEEN").await, 2);
        let mut client = target.client().await;
        client
            .execute("INSERT INTO SEEN (ID) VALUES (@P1)", &[&3i32])
            .await
            .unwrap();
        drop(client);
        assert_eq!(harness.query("SELECT * FROM SEEN").len(), 3);
        let cfg: MssqlSourceConfig = toml::from_str(&target.connection_keys()).unwrap();
        let tables = MssqlSource::open("seen", &cfg).tables().await.unwrap();
        assert!(tables.iter().any(|t| t.name == "SEEN"), "{tables:?}");
    }

    /// The real-server path fails loudly, naming the server but not the password, when
    /// nothing listens there (no SQL Server is reachable from the build machines).
    #[tokio::test]
    async fn an_unreachable_server_is_a_failure_not_a_pass() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let url = AdoUrl::parse(&format!(
            "server=tcp:127.0.0.1,{port};user=sa;password=S3cret-Pw;TrustServerCertificate=true"
        ))
        .unwrap();
        let err = TestDatabase::create(&url).await.err().unwrap_or_default();
        assert!(
            err.contains(&format!("cannot connect to tcp:127.0.0.1,{port} as sa")),
            "{err}"
        );
        assert!(!err.contains("S3cret-Pw"), "{err}");
    }
}
