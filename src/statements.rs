//! Splitting a SQL script into statements, remembering the line each starts on.
//!
//! Why: `rankql run job.sql` must say *which* statement failed and where. The splitter
//! knows enough SQL lexing to not split inside strings, quoted identifiers, comments or
//! dollar-quoted bodies.

/// One statement of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptStatement {
    /// The statement's text, without the terminating `;`.
    pub sql: String,
    /// The 1-based line its first non-blank character is on.
    pub line: usize,
}

/// Splits `script` at top-level semicolons; blank and comment-only pieces are dropped.
pub fn split_statements(script: &str) -> Vec<ScriptStatement> {
    let bytes = script.as_bytes();
    let mut statements = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => i = skip_quoted(bytes, i, bytes[i]),
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = script[i..].find('\n').map_or(bytes.len(), |n| i + n);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = script[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |n| i + 2 + n + 2);
            }
            b'$' => i = skip_dollar_quoted(script, i),
            b';' => {
                push_statement(script, start, i, &mut statements);
                start = i + 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    push_statement(script, start, bytes.len(), &mut statements);
    statements
}

fn skip_quoted(bytes: &[u8], open: usize, quote: u8) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// Skips `$tag$ … $tag$` if one starts at `open`; otherwise steps over the `$`.
fn skip_dollar_quoted(script: &str, open: usize) -> usize {
    let rest = &script[open + 1..];
    let Some(tag_end) = rest.find('$') else {
        return open + 1;
    };
    let tag = &rest[..tag_end];
    if !tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        || tag.starts_with(|c: char| c.is_ascii_digit())
    {
        return open + 1;
    }
    let delimiter = format!("${tag}$");
    let body_start = open + delimiter.len();
    script[body_start..]
        .find(&delimiter)
        .map_or(script.len(), |n| body_start + n + delimiter.len())
}

fn push_statement(script: &str, start: usize, end: usize, statements: &mut Vec<ScriptStatement>) {
    let piece = &script[start..end];
    if !has_code(piece) {
        return;
    }
    let leading = piece.len() - piece.trim_start().len();
    let line = script[..start + leading].matches('\n').count() + 1;
    statements.push(ScriptStatement {
        sql: piece.trim().to_string(),
        line,
    });
}

/// Whether `piece` holds anything besides white space and comments.
fn has_code(piece: &str) -> bool {
    let mut rest = piece.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.find('\n').map_or("", |n| &after[n..]).trim_start();
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after
                .find("*/")
                .map_or("", |n| &after[n + 2..])
                .trim_start();
        } else {
            return !rest.is_empty();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_with_lines_and_respects_quotes() {
        let script = "-- header\nSELECT 'a;b';\n\n/* c; */ SELECT \"x;\" FROM t;\nSELECT $$ ; $$;\n-- only a comment;\n";
        let statements = split_statements(script);
        assert_eq!(statements.len(), 3, "{statements:?}");
        assert_eq!(statements[0].line, 1);
        assert_eq!(statements[0].sql, "-- header\nSELECT 'a;b'");
        assert_eq!(statements[1].line, 4);
        assert_eq!(statements[2].sql, "SELECT $$ ; $$");
    }

    #[test]
    fn escaped_quotes_and_no_trailing_semicolon() {
        let statements = split_statements("SELECT 'it''s; fine'\n");
        assert_eq!(statements.len(), 1);
        assert_eq!(statements[0].sql, "SELECT 'it''s; fine'");
    }
}
