//! File exports: the `files` source kind (a folder the legacy system drops exports into, and
//! when a file counts as complete) and a resource's `file` section (which files, their format
//! and layout, and the guards that keep a bad or truncated export from being applied).
//! [`validate_file_def`] checks what can be checked without the folder.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::ConfigError;

/// Milliseconds between two listings of an export folder. Polling always runs, because
/// network shares often deliver no file-system events.
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 2_000;
/// How long a file's size and modification time must stay unchanged before it is read
/// (`completion = "stable"`).
pub const DEFAULT_STABLE_MS: u64 = 2_000;
/// Processed files kept in the archive folder, newest first.
pub const DEFAULT_ARCHIVE_KEEP: usize = 10;
/// Share of bad rows above which a whole file is rejected (1% by default).
pub const DEFAULT_MAX_BAD_ROW_SHARE: f64 = 0.01;
/// Share of the current records an export may delete before it is held for approval: a
/// truncated file must not wipe a storefront's stock.
pub const DEFAULT_MAX_DELETE_SHARE: f64 = 0.2;

/// When a file in an export folder is complete and may be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Completion {
    /// Size and modification time unchanged for `stable_ms`.
    #[default]
    Stable,
    /// A marker file next to it: `<name><suffix>` or `<stem><suffix>`, e.g. `PRICES.csv.done`
    /// or `PRICES.done`, for one of `marker_suffixes`.
    Marker,
    /// The exporter writes under another name and renames into place: a file matching the
    /// pattern is complete as soon as it is seen.
    Rename,
}

/// A `kind = "files"` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSourceConfig {
    /// The export folder, relative to the config file.
    pub dir: PathBuf,
    /// Also listen for file-system events (`notify`); polling runs either way.
    #[serde(default = "default_true")]
    pub watch: bool,
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    #[serde(default)]
    pub completion: Completion,
    /// See [`DEFAULT_STABLE_MS`].
    #[serde(default = "default_stable_ms")]
    pub stable_ms: u64,
    /// `completion = "marker"`: suffixes of marker files.
    #[serde(default = "default_marker_suffixes")]
    pub marker_suffixes: Vec<String>,
    /// Where processed files are moved (relative to the config file); left in place when
    /// absent.
    #[serde(default)]
    pub archive_dir: Option<PathBuf>,
    /// See [`DEFAULT_ARCHIVE_KEEP`].
    #[serde(default = "default_archive_keep")]
    pub archive_keep: usize,
    /// The SQLite file holding the applied state of this source's exports (what the API
    /// serves), relative to the config file; `state/files-<source>.db` when absent.
    #[serde(default)]
    pub mirror: Option<PathBuf>,
}

fn default_true() -> bool {
    true
}
fn default_poll_interval_ms() -> u64 {
    DEFAULT_POLL_INTERVAL_MS
}
fn default_stable_ms() -> u64 {
    DEFAULT_STABLE_MS
}
fn default_marker_suffixes() -> Vec<String> {
    vec![".done".to_owned(), ".ok".to_owned()]
}
fn default_archive_keep() -> usize {
    DEFAULT_ARCHIVE_KEEP
}

/// The layout of an export file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileFormat {
    /// Delimited text (`delimiter`, default `,`), RFC 4180 quoting.
    Csv,
    /// Tab-delimited text.
    Tsv,
    /// Fixed-width text: every column needs `start` and `length`.
    FixedWidth,
    /// dBASE III / FoxPro table (`.dbf`, memo fields from `.dbt`/`.fpt` next to it).
    Dbf,
    /// One JSON object per line; columns are its top-level members.
    Jsonl,
}

impl FileFormat {
    /// The spelling used in adapter files.
    pub fn as_str(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Tsv => "tsv",
            FileFormat::FixedWidth => "fixed-width",
            FileFormat::Dbf => "dbf",
            FileFormat::Jsonl => "jsonl",
        }
    }

    fn is_delimited(self) -> bool {
        matches!(self, FileFormat::Csv | FileFormat::Tsv)
    }
}

/// The character encoding of a text export (or of a DBF whose header names none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TextEncoding {
    /// UTF-8, with or without a byte-order mark.
    #[default]
    #[serde(rename = "utf-8")]
    Utf8,
    #[serde(rename = "windows-1252")]
    Windows1252,
    #[serde(rename = "iso-8859-1")]
    Iso8859_1,
    /// The IBM PC / DOS code page, common in exports from DOS-era systems.
    Cp437,
}

/// Where the sign of a number is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignConvention {
    /// `-12.50` (or `+12.50`).
    #[default]
    Leading,
    /// `12.50-`, as COBOL and many mainframe reports write it.
    Trailing,
    /// Zoned decimal: the sign is punched over the last digit (`125{` = +1250, `125}` =
    /// -1250, `12J` = -121).
    Overpunch,
}

/// How one column of an export is read. Columns of a delimited file with a header need no
/// entry unless they need parse options; its type is the type of the field mapping it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileColumn {
    pub name: String,
    /// Fixed-width: first character, counting from 1.
    #[serde(default)]
    pub start: Option<usize>,
    /// Fixed-width: width in characters.
    #[serde(default)]
    pub length: Option<usize>,
    /// Delimited files without a header: field number, counting from 1.
    #[serde(default)]
    pub position: Option<usize>,
    /// Dates, times and timestamps: a `chrono` format such as `%d.%m.%Y`; ISO 8601 when
    /// absent.
    #[serde(default)]
    pub format: Option<String>,
    /// Decimals: digits after an implied decimal point (`12345` with 2 -> `123.45`).
    #[serde(default)]
    pub implied_decimals: Option<u32>,
    #[serde(default)]
    pub sign: SignConvention,
    /// An empty value makes the record bad (quarantined) instead of NULL. Sorting on a
    /// field needs its column required (keyset pagination cannot page over NULLs).
    #[serde(default)]
    pub required: bool,
}

/// `[resources.X.file]`: which exports feed a resource and how to read them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDef {
    /// Glob of file names inside the source folder, e.g. `PRICES_*.csv`. The newest complete
    /// match is the resource's current state.
    pub pattern: String,
    pub format: FileFormat,
    /// Text encoding; for DBF only a fallback when the header names no code page.
    #[serde(default)]
    pub encoding: Option<TextEncoding>,
    /// Delimited: the field separator (`,` for csv, tab for tsv).
    #[serde(default)]
    pub delimiter: Option<char>,
    /// Delimited: the quote character.
    #[serde(default = "default_quote")]
    pub quote: char,
    /// Delimited: whether the first (non-skipped) line names the columns.
    #[serde(default = "default_true")]
    pub header: bool,
    /// Delimited and fixed-width: lines to skip before the header or the first row (report
    /// banners).
    #[serde(default)]
    pub skip_lines: usize,
    /// Delimited: trim spaces around unquoted fields.
    #[serde(default)]
    pub trim: bool,
    /// The decimal separator of numbers in text formats (`,` in many European exports).
    #[serde(default = "default_decimal_separator")]
    pub decimal_separator: char,
    /// Per-column layout and parse options.
    #[serde(default)]
    pub columns: Vec<FileColumn>,
    /// See [`DEFAULT_MAX_BAD_ROW_SHARE`].
    #[serde(default = "default_max_bad_row_share")]
    pub max_bad_row_share: f64,
    /// See [`DEFAULT_MAX_DELETE_SHARE`].
    #[serde(default = "default_max_delete_share")]
    pub max_delete_share: f64,
}

fn default_quote() -> char {
    '"'
}
fn default_decimal_separator() -> char {
    '.'
}
fn default_max_bad_row_share() -> f64 {
    DEFAULT_MAX_BAD_ROW_SHARE
}
fn default_max_delete_share() -> f64 {
    DEFAULT_MAX_DELETE_SHARE
}

impl FileDef {
    /// The field separator, defaulted per format.
    pub fn delimiter(&self) -> char {
        self.delimiter.unwrap_or(match self.format {
            FileFormat::Tsv => '\t',
            _ => ',',
        })
    }

    /// The options of column `name`, if the adapter gave any.
    pub fn column(&self, name: &str) -> Option<&FileColumn> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Pure checks of a source of kind `files` named `name`.
pub(super) fn validate_files_source(
    file: &Path,
    name: &str,
    def: &FilesSourceConfig,
) -> Result<(), ConfigError> {
    let at = format!("sources.{name}");
    let err = |key: &str, reason: &str| ConfigError::new(file, format!("{at}.{key}"), reason);
    if def.poll_interval_ms < 100 {
        return Err(err("poll_interval_ms", "must be at least 100"));
    }
    if def.completion == Completion::Marker && def.marker_suffixes.is_empty() {
        return Err(err(
            "marker_suffixes",
            "completion = \"marker\" needs at least one suffix, e.g. [\".done\"]",
        ));
    }
    if def
        .marker_suffixes
        .iter()
        .any(|s| s.is_empty() || s.contains(['/', '\\']))
    {
        return Err(err(
            "marker_suffixes",
            "suffixes must be non-empty and contain no path separator",
        ));
    }
    if def.archive_dir.is_some() && def.archive_keep == 0 {
        return Err(err(
            "archive_keep",
            "must be at least 1 when archive_dir is set (leave archive_dir out to keep files in place)",
        ));
    }
    Ok(())
}

/// Pure checks of a resource's `file` section at `at` (e.g. `resources.prices.file`);
/// `mapped` are the columns its fields read.
pub(super) fn validate_file_def(
    file: &Path,
    at: &str,
    def: &FileDef,
    mapped: &[&str],
) -> Result<(), ConfigError> {
    let err = |key: &str, reason: String| ConfigError::new(file, format!("{at}.{key}"), reason);
    if def.pattern.is_empty() || def.pattern.contains(['/', '\\']) {
        return Err(err(
            "pattern",
            "must be a file-name glob inside the source folder, without a path separator".into(),
        ));
    }
    if let Err(e) = globset::Glob::new(&def.pattern) {
        return Err(err("pattern", format!("not a valid glob: {e}")));
    }
    for (key, share) in [
        ("max_bad_row_share", def.max_bad_row_share),
        ("max_delete_share", def.max_delete_share),
    ] {
        if !(0.0..=1.0).contains(&share) {
            return Err(err(key, "must be a share between 0.0 and 1.0".into()));
        }
    }
    if !def.format.is_delimited() {
        for (key, set) in [
            ("delimiter", def.delimiter.is_some()),
            ("header", !def.header),
            ("trim", def.trim),
        ] {
            if set {
                return Err(err(
                    key,
                    format!("only csv and tsv files have a {key} setting"),
                ));
            }
        }
    }
    if matches!(def.format, FileFormat::Dbf | FileFormat::Jsonl) && def.skip_lines > 0 {
        return Err(err(
            "skip_lines",
            format!("{} files have no lines to skip", def.format.as_str()),
        ));
    }
    for (i, c) in def.columns.iter().enumerate() {
        let cat = format!("columns[{i}]");
        let fixed = def.format == FileFormat::FixedWidth;
        match (fixed, c.start, c.length) {
            (true, Some(start), Some(length)) if start >= 1 && length >= 1 => {}
            (true, _, _) => {
                return Err(err(
                    &cat,
                    format!(
                        "fixed-width column `{}` needs start (from 1) and length (at least 1)",
                        c.name
                    ),
                ));
            }
            (false, None, None) => {}
            (false, _, _) => {
                return Err(err(
                    &cat,
                    format!(
                        "start and length are for fixed-width files (column `{}`)",
                        c.name
                    ),
                ));
            }
        }
        match c.position {
            Some(p) if def.format.is_delimited() && !def.header && p >= 1 => {}
            Some(_) => {
                return Err(err(
                    &cat,
                    format!(
                        "position (from 1) is for csv/tsv files without a header (column `{}`)",
                        c.name
                    ),
                ));
            }
            None if def.format.is_delimited()
                && !def.header
                && mapped.contains(&c.name.as_str()) =>
            {
                return Err(err(
                    &cat,
                    format!(
                        "column `{}` needs a position: the file has no header",
                        c.name
                    ),
                ));
            }
            None => {}
        }
        if def.columns[..i].iter().any(|o| o.name == c.name) {
            return Err(err(&cat, format!("column `{}` is listed twice", c.name)));
        }
    }
    let needs_entry =
        def.format == FileFormat::FixedWidth || (def.format.is_delimited() && !def.header);
    if needs_entry {
        for column in mapped {
            if def.column(column).is_none() {
                return Err(err(
                    "columns",
                    format!(
                        "column `{column}` is mapped by a field but has no layout entry ({})",
                        if def.format == FileFormat::FixedWidth {
                            "start and length"
                        } else {
                            "position"
                        }
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(text: &str) -> FileDef {
        toml::from_str(text).unwrap()
    }

    fn check(text: &str, mapped: &[&str]) -> Result<(), ConfigError> {
        validate_file_def(Path::new("a.toml"), "resources.p.file", &def(text), mapped)
    }

    #[test]
    fn defaults_are_documented_constants() {
        let d = def("pattern = \"P_*.csv\"\nformat = \"csv\"");
        assert_eq!(d.delimiter(), ',');
        assert!(d.header);
        assert_eq!(d.max_delete_share, DEFAULT_MAX_DELETE_SHARE);
        assert_eq!(d.max_bad_row_share, DEFAULT_MAX_BAD_ROW_SHARE);
        assert!(check("pattern = \"P_*.csv\"\nformat = \"csv\"", &["SKU"]).is_ok());
        let s: FilesSourceConfig = toml::from_str("dir = \"exports\"").unwrap();
        assert_eq!(s.completion, Completion::Stable);
        assert_eq!(s.poll_interval_ms, DEFAULT_POLL_INTERVAL_MS);
        assert_eq!(s.marker_suffixes, vec![".done", ".ok"]);
    }

    #[test]
    fn fixed_width_needs_a_layout_for_every_mapped_column() {
        let text = "pattern = \"STOCK.TXT\"\nformat = \"fixed-width\"\n\
                    columns = [{ name = \"SKU\", start = 1, length = 10 }]";
        assert!(check(text, &["SKU"]).is_ok());
        let e = check(text, &["SKU", "QTY"]).unwrap_err();
        assert_eq!(e.key, "resources.p.file.columns");
        assert!(e.reason.contains("QTY"), "{}", e.reason);
        let text = "pattern = \"S\"\nformat = \"fixed-width\"\ncolumns = [{ name = \"SKU\", start = 0, length = 3 }]";
        assert_eq!(
            check(text, &[]).unwrap_err().key,
            "resources.p.file.columns[0]"
        );
    }

    #[test]
    fn options_of_other_formats_are_refused() {
        let e = check(
            "pattern = \"x.dbf\"\nformat = \"dbf\"\ndelimiter = \";\"",
            &[],
        )
        .unwrap_err();
        assert_eq!(e.key, "resources.p.file.delimiter");
        let e = check("pattern = \"a/b.csv\"\nformat = \"csv\"", &[]).unwrap_err();
        assert_eq!(e.key, "resources.p.file.pattern");
        let e = check(
            "pattern = \"x.csv\"\nformat = \"csv\"\nmax_delete_share = 2.0",
            &[],
        )
        .unwrap_err();
        assert_eq!(e.key, "resources.p.file.max_delete_share");
        let text =
            "pattern = \"x.csv\"\nformat = \"csv\"\nheader = false\ncolumns = [{ name = \"A\" }]";
        let e = check(text, &["A"]).unwrap_err();
        assert!(e.reason.contains("position"), "{}", e.reason);
    }
}
