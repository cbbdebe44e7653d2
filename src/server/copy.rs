//! `COPY table [(columns)] FROM STDIN` for bulk ingest: the statement's options, and a
//! decoder that turns the client's byte stream (Postgres' text or CSV format) into
//! record batches of the table's types. Rows are decoded as they arrive; nothing is
//! written until the client says the copy is done, so a bad row leaves the table as it was.

use std::sync::Arc;

use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, FixedSizeListArray, Float32Array, Float64Array, ListArray,
    StringArray, StringBuilder,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::csv::reader::{Decoder as CsvDecoder, ReaderBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use rankql_udfs::vector::args::Vectors;

/// Rows decoded before they are turned into one typed batch.
const ROWS_PER_BATCH: usize = 8192;

/// Why a COPY was refused or its data rejected. Each message names the line, column or
/// option at fault.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// An option rankql does not support.
    #[error("COPY: {0}")]
    Unsupported(String),
    /// A column list names a column the table does not have.
    #[error("COPY: table {table} has no column {column}")]
    NoSuchColumn {
        /// The table.
        table: String,
        /// The missing column.
        column: String,
    },
    /// A NOT NULL column left out of the column list.
    #[error("COPY: column {0} is NOT NULL but is not in the COPY column list")]
    MissingNotNull(String),
    /// A row that does not parse.
    #[error("COPY: line {line}: {reason}")]
    BadRow {
        /// The 1-based line of the data (header included).
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// CSV data that does not parse.
    #[error("COPY: {0}")]
    Csv(String),
}

impl crate::sqlstate::SqlState for CopyError {
    fn sqlstate(&self) -> &'static str {
        match self {
            CopyError::Unsupported(_) => crate::sqlstate::FEATURE_NOT_SUPPORTED,
            CopyError::NoSuchColumn { .. } => "42703",
            CopyError::MissingNotNull(_) => "23502",
            CopyError::BadRow { .. } | CopyError::Csv(_) => "22P04",
        }
    }
}

/// The format of the data stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    /// Postgres' text format: delimiter-separated, `\N` for NULL, backslash escapes.
    Text,
    /// CSV: quoted fields, an unquoted empty field is NULL.
    Csv,
}

/// A parsed `COPY … FROM STDIN`.
#[derive(Debug, Clone)]
pub struct CopyIn {
    /// The target table as written in the statement.
    pub table: String,
    /// The columns the data holds, in order; empty means all of the table's columns.
    pub columns: Vec<String>,
    /// The data format.
    pub format: CopyFormat,
    /// The field delimiter.
    pub delimiter: u8,
    /// The text that stands for NULL.
    pub null: String,
    /// Whether the first line is a header to skip (CSV only).
    pub header: bool,
    /// The CSV quote character.
    pub quote: u8,
    /// The CSV escape character (defaults to the quote).
    pub escape: u8,
}

impl CopyIn {
    /// `Some` when `sql` is one `COPY … FROM STDIN` statement (its options checked),
    /// `None` for anything else.
    pub fn parse(sql: &str) -> Option<Result<Self, CopyError>> {
        let head = sql.trim_start();
        if !head.get(..4)?.eq_ignore_ascii_case("copy") {
            return None;
        }
        let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
        if statements.len() != 1 {
            return None;
        }
        let Statement::Copy {
            source:
                CopySource::Table {
                    table_name,
                    columns,
                },
            to: false,
            target: CopyTarget::Stdin,
            options,
            legacy_options,
            ..
        } = statements.remove(0)
        else {
            return None;
        };
        let mut copy = Self {
            table: table_name.to_string(),
            columns: columns.into_iter().map(|c| c.value).collect(),
            format: CopyFormat::Text,
            delimiter: b'\t',
            null: "\\N".to_string(),
            header: false,
            quote: b'"',
            escape: b'"',
        };
        Some(copy.apply_options(options, legacy_options).map(|()| copy))
    }

    fn apply_options(
        &mut self,
        options: Vec<CopyOption>,
        legacy: Vec<CopyLegacyOption>,
    ) -> Result<(), CopyError> {
        let mut delimiter = None;
        let mut null = None;
        let mut escape = None;
        let byte = |c: char, what: &str| {
            u8::try_from(c).ok().filter(u8::is_ascii).ok_or_else(|| {
                CopyError::Unsupported(format!("{what} must be one ASCII character"))
            })
        };
        for option in options {
            match option {
                CopyOption::Format(name) => {
                    self.format = match name.value.to_ascii_lowercase().as_str() {
                        "text" => CopyFormat::Text,
                        "csv" => CopyFormat::Csv,
                        other => {
                            return Err(CopyError::Unsupported(format!(
                                "FORMAT {other} is not supported; use text or csv"
                            )))
                        }
                    }
                }
                CopyOption::Delimiter(c) => delimiter = Some(byte(c, "DELIMITER")?),
                CopyOption::Null(text) => null = Some(text),
                CopyOption::Header(on) => self.header = on,
                CopyOption::Quote(c) => self.quote = byte(c, "QUOTE")?,
                CopyOption::Escape(c) => escape = Some(byte(c, "ESCAPE")?),
                CopyOption::Encoding(name)
                    if name.eq_ignore_ascii_case("utf8") || name.eq_ignore_ascii_case("utf-8") => {}
                CopyOption::Freeze(_) => {}
                other => {
                    return Err(CopyError::Unsupported(format!(
                        "option {other} is not supported"
                    )))
                }
            }
        }
        for option in legacy {
            match option {
                CopyLegacyOption::Csv(csv_options) => {
                    self.format = CopyFormat::Csv;
                    for csv_option in csv_options {
                        match csv_option {
                            CopyLegacyCsvOption::Header => self.header = true,
                            CopyLegacyCsvOption::Quote(c) => self.quote = byte(c, "QUOTE")?,
                            CopyLegacyCsvOption::Escape(c) => escape = Some(byte(c, "ESCAPE")?),
                            other => {
                                return Err(CopyError::Unsupported(format!(
                                    "option {other} is not supported"
                                )))
                            }
                        }
                    }
                }
                CopyLegacyOption::Delimiter(c) => delimiter = Some(byte(c, "DELIMITER")?),
                CopyLegacyOption::Null(text) => null = Some(text),
                CopyLegacyOption::Header => self.header = true,
                other => {
                    return Err(CopyError::Unsupported(format!(
                        "option {other} is not supported"
                    )))
                }
            }
        }
        let csv = self.format == CopyFormat::Csv;
        self.delimiter = delimiter.unwrap_or(if csv { b',' } else { b'\t' });
        self.null = null.unwrap_or_else(|| {
            if csv {
                String::new()
            } else {
                "\\N".to_string()
            }
        });
        self.escape = escape.unwrap_or(self.quote);
        if self.header && !csv {
            return Err(CopyError::Unsupported(
                "HEADER is only supported with FORMAT csv".to_string(),
            ));
        }
        Ok(())
    }
}

/// Decodes a COPY data stream into batches with the table's schema.
pub struct RowDecoder {
    table: SchemaRef,
    /// For each column of the data, its index in the table.
    positions: Vec<usize>,
    /// The columns of the data, as text.
    text_schema: SchemaRef,
    format: Format,
    batches: Vec<RecordBatch>,
    /// Lines consumed so far (for error messages).
    line: u64,
    ended: bool,
}

enum Format {
    Text {
        delimiter: u8,
        null: Vec<u8>,
        pending: Vec<u8>,
        columns: Vec<StringBuilder>,
        rows: usize,
    },
    Csv(Box<CsvDecoder>),
}

impl RowDecoder {
    /// A decoder for `copy`'s data into a table of schema `table`.
    pub fn new(copy: &CopyIn, table: SchemaRef) -> Result<Self, CopyError> {
        let positions: Vec<usize> = if copy.columns.is_empty() {
            (0..table.fields().len()).collect()
        } else {
            copy.columns
                .iter()
                .map(|name| {
                    table.index_of(name).map_err(|_| CopyError::NoSuchColumn {
                        table: copy.table.clone(),
                        column: name.clone(),
                    })
                })
                .collect::<Result<_, _>>()?
        };
        for (index, field) in table.fields().iter().enumerate() {
            if !field.is_nullable() && !positions.contains(&index) {
                return Err(CopyError::MissingNotNull(field.name().clone()));
            }
        }
        let text_schema = Arc::new(Schema::new(
            positions
                .iter()
                .map(|&i| Field::new(table.field(i).name(), DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let format = match copy.format {
            CopyFormat::Text => Format::Text {
                delimiter: copy.delimiter,
                null: copy.null.as_bytes().to_vec(),
                pending: Vec::new(),
                columns: (0..positions.len()).map(|_| StringBuilder::new()).collect(),
                rows: 0,
            },
            CopyFormat::Csv => {
                let null = regex::Regex::new(&format!("^{}$", regex::escape(&copy.null)))
                    .map_err(|e| CopyError::Unsupported(format!("NULL string: {e}")))?;
                let decoder = ReaderBuilder::new(text_schema.clone())
                    .with_header(copy.header)
                    .with_delimiter(copy.delimiter)
                    .with_quote(copy.quote)
                    .with_escape(copy.escape)
                    .with_null_regex(null)
                    .with_batch_size(ROWS_PER_BATCH)
                    .build_decoder();
                Format::Csv(Box::new(decoder))
            }
        };
        Ok(Self {
            table,
            positions,
            text_schema,
            format,
            batches: Vec::new(),
            line: 0,
            ended: false,
        })
    }

    /// Decodes the next chunk of the stream (chunks may split rows anywhere).
    pub fn push(&mut self, mut data: &[u8]) -> Result<(), CopyError> {
        if self.ended {
            return Ok(());
        }
        match &mut self.format {
            Format::Text { pending, .. } => {
                pending.extend_from_slice(data);
                self.decode_text_lines(false)
            }
            Format::Csv(_) => {
                while !data.is_empty() {
                    let Format::Csv(decoder) = &mut self.format else {
                        break;
                    };
                    let consumed = decoder
                        .decode(data)
                        .map_err(|e| CopyError::Csv(e.to_string()))?;
                    data = &data[consumed..];
                    if decoder.capacity() == 0 {
                        self.flush_csv()?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Decodes what is left and returns every row as batches of the table's schema.
    pub fn finish(mut self) -> Result<Vec<RecordBatch>, CopyError> {
        match &mut self.format {
            Format::Text { pending, .. } => {
                if !pending.is_empty() && !pending.ends_with(b"\n") {
                    pending.push(b'\n');
                }
                self.decode_text_lines(true)?;
            }
            Format::Csv(decoder) => {
                decoder
                    .decode(&[])
                    .map_err(|e| CopyError::Csv(e.to_string()))?;
                self.flush_csv()?;
            }
        }
        Ok(self.batches)
    }

    /// Decodes the complete lines in the text buffer; `at_end` also flushes a partial batch.
    fn decode_text_lines(&mut self, at_end: bool) -> Result<(), CopyError> {
        let Format::Text {
            delimiter,
            null,
            pending,
            columns,
            rows,
        } = &mut self.format
        else {
            return Ok(());
        };
        let mut ready: Vec<(RecordBatch, u64)> = Vec::new();
        let mut start = 0;
        while let Some(offset) = pending[start..].iter().position(|&b| b == b'\n') {
            let end = start + offset;
            let mut line = &pending[start..end];
            start = end + 1;
            self.line += 1;
            if line.ends_with(b"\r") {
                line = &line[..line.len() - 1];
            }
            if line == b"\\." {
                self.ended = true;
                break;
            }
            let fields = split_text_line(line, *delimiter);
            if fields.len() != columns.len() {
                return Err(CopyError::BadRow {
                    line: self.line,
                    reason: format!("expected {} columns, found {}", columns.len(), fields.len()),
                });
            }
            for (field, column) in fields.into_iter().zip(columns.iter_mut()) {
                if field == null.as_slice() {
                    column.append_null();
                } else {
                    let value =
                        String::from_utf8(unescape_text(field)).map_err(|_| CopyError::BadRow {
                            line: self.line,
                            reason: "not valid UTF-8".to_string(),
                        })?;
                    column.append_value(value);
                }
            }
            *rows += 1;
            if *rows >= ROWS_PER_BATCH {
                let first_line = self.line + 1 - *rows as u64;
                *rows = 0;
                ready.push((
                    take_strings(columns, &self.text_schema, first_line)?,
                    first_line,
                ));
            }
        }
        pending.drain(..start);
        if self.ended {
            pending.clear();
        }
        if (at_end || self.ended) && *rows > 0 {
            let first_line = self.line + 1 - *rows as u64;
            *rows = 0;
            ready.push((
                take_strings(columns, &self.text_schema, first_line)?,
                first_line,
            ));
        }
        for (text, first_line) in ready {
            let typed = self.typed(&text, first_line)?;
            self.batches.push(typed);
        }
        Ok(())
    }

    fn flush_csv(&mut self) -> Result<(), CopyError> {
        let Format::Csv(decoder) = &mut self.format else {
            return Ok(());
        };
        if let Some(batch) = decoder.flush().map_err(|e| CopyError::Csv(e.to_string()))? {
            let first_line = self.line + 1;
            self.line += batch.num_rows() as u64;
            let typed = self.typed(&batch, first_line)?;
            self.batches.push(typed);
        }
        Ok(())
    }

    /// Turns a batch of text columns into the table's types; NULL for columns the data
    /// does not hold.
    fn typed(&self, text: &RecordBatch, first_line: u64) -> Result<RecordBatch, CopyError> {
        let rows = text.num_rows();
        let mut arrays: Vec<ArrayRef> = self
            .table
            .fields()
            .iter()
            .map(|field| new_null_array(field.data_type(), rows))
            .collect();
        for (column, &position) in self.positions.iter().enumerate() {
            let field = self.table.field(position);
            arrays[position] =
                convert(text.column(column), field).map_err(|(row, reason)| CopyError::BadRow {
                    line: first_line + row as u64,
                    reason: format!("column {}: {reason}", field.name()),
                })?;
        }
        RecordBatch::try_new(self.table.clone(), arrays).map_err(|e| CopyError::BadRow {
            line: first_line,
            reason: e.to_string(),
        })
    }
}

/// The rows gathered so far, as a batch of text columns.
fn take_strings(
    columns: &mut [StringBuilder],
    schema: &SchemaRef,
    first_line: u64,
) -> Result<RecordBatch, CopyError> {
    let arrays: Vec<ArrayRef> = columns
        .iter_mut()
        .map(|c| Arc::new(c.finish()) as ArrayRef)
        .collect();
    RecordBatch::try_new(schema.clone(), arrays).map_err(|e| CopyError::BadRow {
        line: first_line,
        reason: e.to_string(),
    })
}

/// Splits a text-format line at unescaped delimiters.
fn split_text_line(line: &[u8], delimiter: u8) -> Vec<&[u8]> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b'\\' => i += 2,
            b if b == delimiter => {
                fields.push(&line[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    fields.push(&line[start.min(line.len())..]);
    fields
}

/// Resolves the text format's backslash escapes (`\t`, `\n`, `\\`, octal, `\xHH`).
fn unescape_text(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        if b != b'\\' || i + 1 == field.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let next = field[i + 1];
        i += 2;
        match next {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut value = u32::from(next - b'0');
                let mut digits = 1;
                while digits < 3 && i < field.len() && (b'0'..=b'7').contains(&field[i]) {
                    value = value * 8 + u32::from(field[i] - b'0');
                    i += 1;
                    digits += 1;
                }
                out.push((value & 0xff) as u8);
            }
            b'x' if i < field.len() && field[i].is_ascii_hexdigit() => {
                let mut value = 0u32;
                let mut digits = 0;
                while digits < 2 && i < field.len() && field[i].is_ascii_hexdigit() {
                    value = value * 16 + char::from(field[i]).to_digit(16).unwrap_or(0);
                    i += 1;
                    digits += 1;
                }
                out.push(value as u8);
            }
            other => out.push(other),
        }
    }
    out
}

/// Converts a text column to `field`'s type; on failure, the first bad row and why.
fn convert(text: &ArrayRef, field: &Field) -> Result<ArrayRef, (usize, String)> {
    let strings = text
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| (0, "internal: COPY column is not text".to_string()))?;
    match field.data_type() {
        DataType::Utf8 => Ok(text.clone()),
        DataType::FixedSizeList(item, dimension) => {
            let width = *dimension as usize;
            let values = vector_values(strings, field, Some(width))?;
            // A NULL row still takes `width` slots in a fixed-size list.
            let padded = values.iter().flat_map(|row| match row {
                Some(vector) => vector.clone(),
                None => vec![0.0; width],
            });
            let flat = float_values(padded, item.data_type())?;
            let nulls = values.iter().map(Option::is_some).collect::<Vec<_>>();
            let list =
                FixedSizeListArray::try_new(item.clone(), *dimension, flat, Some(nulls.into()))
                    .map_err(|e| (0, e.to_string()))?;
            Ok(Arc::new(list))
        }
        DataType::List(item) => {
            let values = vector_values(strings, field, None)?;
            let lengths = values.iter().map(|v| v.as_ref().map_or(0, Vec::len));
            let offsets = OffsetBuffer::from_lengths(lengths);
            let flat = float_values(values.iter().flatten().flatten().copied(), item.data_type())?;
            let nulls = values.iter().map(Option::is_some).collect::<Vec<_>>();
            let list = ListArray::try_new(item.clone(), offsets, flat, Some(nulls.into()))
                .map_err(|e| (0, e.to_string()))?;
            Ok(Arc::new(list))
        }
        target => {
            let options = CastOptions {
                safe: true,
                ..CastOptions::default()
            };
            let cast = cast_with_options(text, target, &options).map_err(|e| (0, e.to_string()))?;
            if let Some(row) = (0..strings.len()).find(|&r| strings.is_valid(r) && cast.is_null(r))
            {
                return Err((
                    row,
                    format!("{:?} is not a valid {target}", strings.value(row)),
                ));
            }
            Ok(cast)
        }
    }
}

/// Parses pgvector text (`[1,2,3]`) per row, checking the dimension when the column has one.
fn vector_values(
    strings: &StringArray,
    field: &Field,
    dimension: Option<usize>,
) -> Result<Vec<Option<Vec<f32>>>, (usize, String)> {
    (0..strings.len())
        .map(|row| {
            if strings.is_null(row) {
                return Ok(None);
            }
            let single: ArrayRef = Arc::new(StringArray::from(vec![strings.value(row)]));
            let vectors = Vectors::try_new(&single, "COPY").map_err(|e| (row, e.to_string()))?;
            let values = vectors.row(0).map(<[f32]>::to_vec).unwrap_or_default();
            match dimension {
                Some(expected) if values.len() != expected => Err((
                    row,
                    format!(
                        "vector of {} dimensions, but column {} has {expected}",
                        values.len(),
                        field.name()
                    ),
                )),
                _ => Ok(Some(values)),
            }
        })
        .collect()
}

/// The flat values of a vector column, as the item type asks.
fn float_values(
    values: impl Iterator<Item = f32>,
    item: &DataType,
) -> Result<ArrayRef, (usize, String)> {
    match item {
        DataType::Float32 => Ok(Arc::new(values.collect::<Float32Array>())),
        DataType::Float64 => Ok(Arc::new(values.map(f64::from).collect::<Float64Array>())),
        other => Err((0, format!("vectors of {other} cannot be loaded by COPY"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::TimeUnit;

    fn events_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Int64, false),
            Field::new("event_type", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]))
    }

    fn decode(sql: &str, chunks: &[&[u8]]) -> Result<Vec<RecordBatch>, CopyError> {
        let copy = CopyIn::parse(sql).expect("a COPY FROM STDIN")?;
        let mut decoder = RowDecoder::new(&copy, events_schema())?;
        for chunk in chunks {
            decoder.push(chunk)?;
        }
        decoder.finish()
    }

    #[test]
    fn other_statements_are_not_copy_in() {
        assert!(CopyIn::parse("SELECT 1").is_none());
        assert!(CopyIn::parse("COPY t TO STDOUT").is_none());
        assert!(CopyIn::parse("COPY (SELECT 1) TO '/tmp/x.csv'").is_none());
    }

    #[test]
    fn text_format_with_nulls_escapes_and_split_chunks() {
        let batches = decode(
            "COPY events FROM STDIN",
            &[
                b"1\tvi",
                b"ew\t2026-11-01 10:00:00\n2\ta\\tb\\\\c\t\\N\n\\.\nignored\n",
            ],
        )
        .unwrap();
        assert_eq!(batches.len(), 1);
        let batch = &batches[0];
        assert_eq!(batch.num_rows(), 2);
        let users = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(users.values(), &[1, 2]);
        let kinds = batch
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(kinds.value(0), "view");
        assert_eq!(kinds.value(1), "a\tb\\c");
        let ts = batch
            .column(2)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert!(ts.is_valid(0) && ts.is_null(1));
    }

    #[test]
    fn csv_with_header_and_a_column_list() {
        let batches = decode(
            "COPY events (event_type, user_id) FROM STDIN WITH (FORMAT csv, HEADER true)",
            &[b"event_type,user_id\n\"cl", b"ick, quoted\",7\n,8\n"],
        )
        .unwrap();
        let batch = &batches[0];
        assert_eq!(batch.num_rows(), 2);
        let kinds = batch
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(kinds.value(0), "click, quoted");
        assert!(kinds.is_null(1));
        assert!(batch.column(2).is_null(0));
    }

    #[test]
    fn bad_rows_name_their_line_and_column() {
        let error = decode("COPY events FROM STDIN", &[b"1\tview\t\\N\nx\tview\t\\N\n"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("line 2") && error.contains("user_id"),
            "{error}"
        );
        let error = decode("COPY events FROM STDIN", &[b"1\tview\n"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("expected 3 columns, found 2"), "{error}");
        let error = decode("COPY events (event_type) FROM STDIN", &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("user_id is NOT NULL"), "{error}");
        let error = decode("COPY events FROM STDIN (FORMAT binary)", &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("FORMAT binary"), "{error}");
    }

    #[test]
    fn vectors_load_from_pgvector_text() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "v",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), 3),
            true,
        )]));
        let copy = CopyIn::parse("COPY t FROM STDIN").unwrap().unwrap();
        let mut decoder = RowDecoder::new(&copy, schema.clone()).unwrap();
        decoder.push(b"[1,2,3]\n\\N\n").unwrap();
        let batches = decoder.finish().unwrap();
        assert_eq!(batches[0].num_rows(), 2);
        assert!(batches[0].column(0).is_null(1));
        let mut decoder = RowDecoder::new(&copy, schema).unwrap();
        decoder.push(b"[1,2]\n").unwrap();
        let error = decoder.finish().unwrap_err().to_string();
        assert!(error.contains("2 dimensions"), "{error}");
    }
}
