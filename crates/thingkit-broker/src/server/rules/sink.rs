//! File sinks: JSON lines, CSV (RFC 4180) and Parquet, optionally partitioned by the
//! message's arrival date (UTC) into `path/date=YYYY-MM-DD/part-<seq>-<uuid>.<ext>` (the
//! layout Spark and Hive read as a `date` partition column).
//!
//! - JSON lines: one output per line. Unpartitioned, `path` is the file (appended to).
//! - CSV: a header row from `columns` when the file is new, then one row per output: each
//!   column's value as text (strings as they are, numbers and Booleans as JSON writes them,
//!   arrays and objects as JSON), empty when missing, Undefined or Null; fields quoted as RFC
//!   4180 says, lines ending in CRLF. Unpartitioned, `path` is the file.
//! - Parquet: `path` is always a directory of `part-<seq>-<uuid>.parquet` files. Schema from
//!   `columns` (string: BYTE_ARRAY UTF8, int64: INT64, double: DOUBLE, boolean: BOOLEAN, all
//!   OPTIONAL; a value that does not convert is null); Snappy; row groups of
//!   `parquet_row_group_rows`. A file is written as the hidden `.part-....parquet.inprogress`
//!   (Spark and Hadoop skip names starting with `.`) and renamed when closed: after
//!   `parquet_roll_rows` rows, when `parquet_roll_interval` has passed, when the date partition
//!   changes and at shutdown. Rows not yet in a closed file are lost if the process is killed.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thingkit_rules::topic_rule::{Column, FileAction, FileFormat};
use thingkit_rules::{Output, Value};

use super::Inner;
use super::action::{AttemptError, Job, Performer};
use super::evaluation::text_of;

pub(crate) struct FileSink {
    format: FileFormat,
    columns: Vec<Column>,
    partition_by_date: bool,
    path: PathBuf,
    roll_rows: usize,
    roll_interval: Duration,
    row_group_rows: usize,
    seq: u64,
    open: Option<Open>,
    /// The UUID source for file names.
    inner: std::sync::Weak<Inner>,
}

struct Open {
    date: Option<String>,
    rows: usize,
    opened: Instant,
    writer: Writer,
}

enum Writer {
    Lines(File),
    #[cfg(feature = "parquet")]
    Parquet(Box<parquet_file::ParquetFile>),
}

impl FileSink {
    pub(crate) fn new(inner: &Arc<Inner>, action: &FileAction) -> Result<FileSink, String> {
        if action.path.is_empty() {
            return Err("path is empty".into());
        }
        let needs_columns = matches!(action.format, FileFormat::Csv | FileFormat::Parquet);
        if needs_columns && action.columns.is_empty() {
            return Err("csv and parquet sinks need columns".into());
        }
        for (i, c) in action.columns.iter().enumerate() {
            if c.name.is_empty() || c.name.len() > 256 {
                return Err(format!("columns[{i}]: a name of 1 to 256 bytes"));
            }
            if action.columns[..i].iter().any(|d| d.name == c.name) {
                return Err(format!("columns[{i}]: {:?} appears twice", c.name));
            }
        }
        if action.format == FileFormat::Parquet && !cfg!(feature = "parquet") {
            return Err(
                "this build has no Parquet support (the broker's `parquet` feature)".into(),
            );
        }
        let config = &inner.config;
        Ok(FileSink {
            format: action.format,
            columns: action.columns.clone(),
            partition_by_date: action.partition_by_date,
            path: config.resolve(&action.path),
            roll_rows: config.parquet_roll_rows.max(1),
            roll_interval: config.parquet_roll_interval,
            row_group_rows: config
                .parquet_row_group_rows
                .clamp(1, config.parquet_roll_rows.max(1)),
            seq: 0,
            open: None,
            inner: Arc::downgrade(inner),
        })
    }

    fn extension(&self) -> &'static str {
        match self.format {
            FileFormat::Jsonl => "jsonl",
            FileFormat::Csv => "csv",
            FileFormat::Parquet => "parquet",
        }
    }

    /// The directory files go to, for a message of `date`.
    fn directory(&self, date: Option<&str>) -> PathBuf {
        match date {
            Some(d) => self.path.join(format!("date={d}")),
            None => self.path.clone(),
        }
    }

    fn part_name(&mut self) -> String {
        let uuid = self
            .inner
            .upgrade()
            .map(|i| i.env.uuid())
            .unwrap_or_else(|| format!("{:x}", super::super::unix_now_ms()));
        let seq = self.seq;
        self.seq += 1;
        format!("part-{seq:05}-{uuid}.{}", self.extension())
    }

    fn open_for(&mut self, date: Option<String>) -> Result<Open, AttemptError> {
        let io = |what: &str, p: &Path, e: std::io::Error| {
            AttemptError::retry(format!("{what} {}: {e}", p.display()))
        };
        let parquet = self.format == FileFormat::Parquet;
        let file_path = if parquet || self.partition_by_date {
            let dir = self.directory(date.as_deref());
            std::fs::create_dir_all(&dir).map_err(|e| io("creating", &dir, e))?;
            dir.join(self.part_name())
        } else {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
            }
            self.path.clone()
        };
        let writer = if parquet {
            #[cfg(feature = "parquet")]
            {
                Writer::Parquet(Box::new(
                    parquet_file::ParquetFile::create(&file_path, &self.columns)
                        .map_err(AttemptError::retry)?,
                ))
            }
            #[cfg(not(feature = "parquet"))]
            {
                return Err(AttemptError::fatal("no Parquet support in this build"));
            }
        } else {
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&file_path)
                .map_err(|e| io("opening", &file_path, e))?;
            let empty = file.metadata().map(|m| m.len() == 0).unwrap_or(false);
            if self.format == FileFormat::Csv && empty {
                let header: Vec<Option<String>> =
                    self.columns.iter().map(|c| Some(c.name.clone())).collect();
                file.write_all(&csv_row(&header))
                    .map_err(|e| io("writing", &file_path, e))?;
            }
            Writer::Lines(file)
        };
        Ok(Open {
            date,
            rows: 0,
            opened: Instant::now(),
            writer,
        })
    }

    fn close_open(&mut self) {
        if let Some(open) = self.open.take() {
            match open.writer {
                Writer::Lines(file) => {
                    let _ = file.sync_data();
                }
                #[cfg(feature = "parquet")]
                Writer::Parquet(p) => {
                    if let Err(e) = p.finish() {
                        tracing::error!(error = %e, "rules: cannot close a Parquet file");
                    }
                }
            }
        }
    }

    fn values(&self, output: &Output) -> Vec<Value> {
        let object = match output {
            Output::Json(Value::Object(o)) => Some(o),
            _ => None,
        };
        self.columns
            .iter()
            .map(|c| {
                object
                    .and_then(|o| o.get(&c.name))
                    .cloned()
                    .unwrap_or(Value::Undefined)
            })
            .collect()
    }
}

impl Performer for FileSink {
    fn perform(&mut self, job: &Job, _inner: &Inner) -> Result<(), AttemptError> {
        let date = self
            .partition_by_date
            .then(|| utc_date(job.inbound.timestamp_ms));
        if self.open.as_ref().is_some_and(|o| o.date != date) {
            self.close_open();
        }
        if self.open.is_none() {
            self.open = Some(self.open_for(date)?);
        }
        let line = match self.format {
            FileFormat::Jsonl => {
                if matches!(job.output.as_ref(), Output::Binary(_)) {
                    return Err(AttemptError::fatal(
                        "a binary output cannot be written as a JSON line",
                    ));
                }
                let mut line = job.payload.to_vec();
                line.push(b'\n');
                Some(line)
            }
            FileFormat::Csv => {
                let fields: Vec<Option<String>> =
                    self.values(&job.output).iter().map(text_of).collect();
                Some(csv_row(&fields))
            }
            FileFormat::Parquet => None,
        };
        let values = if line.is_none() {
            self.values(&job.output)
        } else {
            Vec::new()
        };
        let row_group_rows = self.row_group_rows;
        let Some(open) = self.open.as_mut() else {
            return Err(AttemptError::retry("no file open"));
        };
        match (&mut open.writer, line) {
            (Writer::Lines(file), Some(line)) => {
                if let Err(e) = file.write_all(&line) {
                    self.open = None;
                    return Err(AttemptError::retry(format!(
                        "writing {}: {e}",
                        self.path.display()
                    )));
                }
            }
            #[cfg(feature = "parquet")]
            (Writer::Parquet(p), None) => {
                if let Err(e) = p.push(&values, row_group_rows) {
                    self.open = None;
                    return Err(AttemptError::retry(e));
                }
            }
            _ => {
                let _ = (values, row_group_rows);
                return Err(AttemptError::fatal(
                    "the sink's writer does not match its format",
                ));
            }
        }
        open.rows += 1;
        Ok(())
    }

    fn tick(&mut self) {
        if self.format != FileFormat::Parquet {
            return;
        }
        let due = self
            .open
            .as_ref()
            .is_some_and(|o| o.rows >= self.roll_rows || o.opened.elapsed() >= self.roll_interval);
        if due {
            self.close_open();
        }
    }

    fn close(&mut self) {
        self.close_open();
    }
}

/// One CSV record (RFC 4180): fields quoted when they hold a comma, a quote, CR or LF (quotes
/// doubled), CRLF at the end; `None` is the empty field.
pub(crate) fn csv_row(fields: &[Option<String>]) -> Vec<u8> {
    let mut out = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let Some(f) = f else { continue };
        if f.contains([',', '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&f.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(f);
        }
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The UTC date of `ms` (milliseconds since the epoch) as `YYYY-MM-DD`.
pub(crate) fn utc_date(ms: u64) -> String {
    let days = i64::try_from(ms / 86_400_000).unwrap_or(0);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(feature = "parquet")]
mod parquet_file {
    //! One Parquet file being written: rows buffered per column, a row group at a time.

    use std::fs::File;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use parquet::basic::{Compression, ConvertedType, Repetition, Type as Physical};
    use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::types::Type;
    use thingkit_rules::Value;
    use thingkit_rules::topic_rule::{Column, ColumnType};

    use super::text_of;

    enum Buffer {
        Str(Vec<ByteArray>),
        Int(Vec<i64>),
        Double(Vec<f64>),
        Bool(Vec<bool>),
    }

    pub(super) struct ParquetFile {
        writer: SerializedFileWriter<File>,
        columns: Vec<(Buffer, Vec<i16>)>,
        buffered: usize,
        temp: PathBuf,
        done: PathBuf,
    }

    impl ParquetFile {
        /// Creates `.<name>.inprogress` beside `path`, renamed to `path` by [`finish`].
        pub(super) fn create(path: &Path, columns: &[Column]) -> Result<ParquetFile, String> {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let temp = path.with_file_name(format!(".{name}.inprogress"));
            let fields = columns
                .iter()
                .map(|c| {
                    let (physical, converted) = match c.ty {
                        ColumnType::String => (Physical::BYTE_ARRAY, ConvertedType::UTF8),
                        ColumnType::Int64 => (Physical::INT64, ConvertedType::NONE),
                        ColumnType::Double => (Physical::DOUBLE, ConvertedType::NONE),
                        ColumnType::Boolean => (Physical::BOOLEAN, ConvertedType::NONE),
                    };
                    Type::primitive_type_builder(&c.name, physical)
                        .with_repetition(Repetition::OPTIONAL)
                        .with_converted_type(converted)
                        .build()
                        .map(Arc::new)
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("parquet schema: {e}"))?;
            let schema = Type::group_type_builder("schema")
                .with_fields(fields)
                .build()
                .map_err(|e| format!("parquet schema: {e}"))?;
            let props = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_created_by(format!("thingkit {}", env!("CARGO_PKG_VERSION")))
                .build();
            let file = File::create(&temp).map_err(|e| format!("{}: {e}", temp.display()))?;
            let writer = SerializedFileWriter::new(file, Arc::new(schema), Arc::new(props))
                .map_err(|e| format!("{}: {e}", temp.display()))?;
            let buffers = columns
                .iter()
                .map(|c| {
                    let b = match c.ty {
                        ColumnType::String => Buffer::Str(Vec::new()),
                        ColumnType::Int64 => Buffer::Int(Vec::new()),
                        ColumnType::Double => Buffer::Double(Vec::new()),
                        ColumnType::Boolean => Buffer::Bool(Vec::new()),
                    };
                    (b, Vec::new())
                })
                .collect();
            Ok(ParquetFile {
                writer,
                columns: buffers,
                buffered: 0,
                temp,
                done: path.to_path_buf(),
            })
        }

        /// Adds one row (a value per column, in order); writes a row group every
        /// `row_group_rows` rows.
        pub(super) fn push(
            &mut self,
            values: &[Value],
            row_group_rows: usize,
        ) -> Result<(), String> {
            for ((buffer, levels), value) in self.columns.iter_mut().zip(values) {
                let present = match buffer {
                    Buffer::Str(v) => {
                        text_of(value).map(|t| v.push(ByteArray::from(t.into_bytes())))
                    }
                    Buffer::Int(v) => as_i64(value).map(|x| v.push(x)),
                    Buffer::Double(v) => as_f64(value).map(|x| v.push(x)),
                    Buffer::Bool(v) => as_bool(value).map(|x| v.push(x)),
                };
                levels.push(i16::from(present.is_some()));
            }
            self.buffered += 1;
            if self.buffered >= row_group_rows {
                self.flush_row_group()?;
            }
            Ok(())
        }

        fn flush_row_group(&mut self) -> Result<(), String> {
            if self.buffered == 0 {
                return Ok(());
            }
            let err = |e: parquet::errors::ParquetError| format!("parquet: {e}");
            let mut group = self.writer.next_row_group().map_err(err)?;
            for (buffer, levels) in &mut self.columns {
                let Some(mut column) = group.next_column().map_err(err)? else {
                    return Err("parquet: fewer columns than the schema".into());
                };
                match buffer {
                    Buffer::Str(v) => {
                        column
                            .typed::<ByteArrayType>()
                            .write_batch(v, Some(levels), None)
                            .map_err(err)?;
                        v.clear();
                    }
                    Buffer::Int(v) => {
                        column
                            .typed::<Int64Type>()
                            .write_batch(v, Some(levels), None)
                            .map_err(err)?;
                        v.clear();
                    }
                    Buffer::Double(v) => {
                        column
                            .typed::<DoubleType>()
                            .write_batch(v, Some(levels), None)
                            .map_err(err)?;
                        v.clear();
                    }
                    Buffer::Bool(v) => {
                        column
                            .typed::<BoolType>()
                            .write_batch(v, Some(levels), None)
                            .map_err(err)?;
                        v.clear();
                    }
                }
                levels.clear();
                column.close().map_err(err)?;
            }
            group.close().map_err(err)?;
            self.buffered = 0;
            Ok(())
        }

        /// Writes what is buffered and the footer, then renames the file to its final name.
        pub(super) fn finish(mut self) -> Result<(), String> {
            self.flush_row_group()?;
            self.writer.close().map_err(|e| format!("parquet: {e}"))?;
            std::fs::rename(&self.temp, &self.done)
                .map_err(|e| format!("renaming {}: {e}", self.temp.display()))
        }
    }

    fn as_i64(value: &Value) -> Option<i64> {
        match value {
            Value::Int(i) => i64::try_from(*i).ok(),
            Value::Decimal(d) if d.is_integer() => {
                d.trunc_to_i128().and_then(|i| i64::try_from(i).ok())
            }
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn as_f64(value: &Value) -> Option<f64> {
        match value {
            Value::Int(i) => Some(*i as f64),
            Value::Decimal(d) => Some(d.to_f64()),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn as_bool(value: &Value) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_follow_the_civil_calendar() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400_000), "2000-02-29");
        assert_eq!(utc_date(1_767_225_599_999), "2025-12-31");
        assert_eq!(utc_date(1_767_225_600_000), "2026-01-01");
    }

    #[test]
    fn csv_rows_quote_what_rfc_4180_requires() {
        let row = csv_row(&[
            Some("plain".into()),
            None,
            Some("a,b".into()),
            Some("say \"hi\"".into()),
            Some("two\nlines".into()),
        ]);
        assert_eq!(
            String::from_utf8(row).unwrap(),
            "plain,,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\"\r\n"
        );
    }
}
