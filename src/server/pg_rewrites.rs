//! PostgreSQL statements that datafusion-postgres would answer wrongly, rewritten as text
//! before it parses them, so that the simple and the extended protocol (Describe
//! included) see the same statement.
//!
//! 1. `SELECT 1` answers `int4`, as PostgreSQL types an integer literal that fits 32
//!    bits. DataFusion types every integer literal as `Int64`, which goes out as `int8`,
//!    and clients see the difference — node-postgres hands an `int8` back as the string
//!    "1", JDBC's `getObject` gives a `Long`, ORMs map the column to a big integer. Only
//!    the literals a client receives as a column matter: those in the outermost `SELECT`
//!    list (of each branch of a `UNION`). Each becomes `CAST(literal AS INTEGER)`, named
//!    `?column?` when it had no name, as PostgreSQL names it. `count(*)` and other
//!    `bigint` results are already `int8`, as in PostgreSQL; a second unnamed literal is
//!    named `?column?_2` (DataFusion wants names to differ).
//!
//!    The rewritten text must still be what datafusion-postgres expects: it replaces some
//!    known catalog queries (psql's `\d`) by simpler ones when their tokens match, so a
//!    rewrite that touched those would break them. Hence only literals are touched
//!    (repeated unnamed `NULL`s are named by [`catalog_rewrites`], which checks first).
//! 2. `'pg_catalog.array_in'::regproc` becomes the function's bare name `'array_in'`.
//!    rankql's `pg_type.typinput` holds function names, and pgjdbc asks
//!    `typinput = 'pg_catalog.array_in'::regproc` for every type it does not know — such
//!    as pgvector's `vector` — before `getObject` can return it; datafusion-postgres
//!    would look the name up in `pg_proc`, find nothing and fail.
//! 3. The constructs of [`catalog_rewrites`]: `generate_subscripts`, `ARRAY(subquery)`,
//!    catalog lookups in scalar subqueries, repeated unnamed `NULL`s.
//! 4. A scalar subquery that is a whole `SELECT` item and reads a user table
//!    (`SELECT u.id, (SELECT count(*) FROM events e WHERE e.user_id = u.id) FROM users u`)
//!    is put in a second pair of parentheses. datafusion-postgres' parser replaces every
//!    such subquery that is correlated by NULL — a silent wrong answer — and gives the
//!    others `LIMIT 1`, hiding PostgreSQL's "more than one row" error; it looks at bare
//!    subqueries only. Catalog subqueries are left to it.

use std::ops::ControlFlow;
use std::sync::LazyLock;

use datafusion::sql::sqlparser::ast::{
    visit_expressions_mut, BinaryOperator, CastKind, DataType, Expr, Ident, SelectItem, SetExpr,
    Statement, TableFactor, UnaryOperator, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use super::catalog_rewrites;

/// The rewritten statements, or `None` when nothing needs rewriting (or the text does not
/// parse), so the caller keeps the original text.
pub fn rewrite(sql: &str) -> Option<String> {
    let literals = starts_like_a_query(sql);
    let regproc = contains_ignoring_case(sql, b"regproc")
        || REGPROC_COLUMNS
            .iter()
            .any(|column| contains_ignoring_case(sql, column.as_bytes()));
    let constructs = catalog_rewrites::may_apply(sql);
    let subqueries =
        contains_ignoring_case(sql, b"(select") || contains_ignoring_case(sql, b"( select");
    if !literals && !regproc && !constructs && !subqueries {
        return None;
    }
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let replaced = match constructs {
        true => replaced_by_datafusion_postgres(sql, &statements),
        false => vec![false; statements.len()],
    };
    let mut changed = false;
    for (statement, replaced) in statements.iter_mut().zip(replaced) {
        if let (true, Statement::Query(query)) = (literals, &mut *statement) {
            changed |= postgres_select_list(&mut query.body);
        }
        if regproc {
            changed |= regproc_names(statement);
        }
        if subqueries {
            let mut kept = KeptSubqueries::default();
            let _ = statement.visit(&mut kept);
            changed |= kept.changed;
        }
        if constructs && !replaced {
            changed |= catalog_rewrites::constructs(statement);
            changed |= catalog_rewrites::set_returning_in_select_lists(statement);
            if let Statement::Query(query) = &mut *statement {
                changed |= catalog_rewrites::name_nulls(&mut query.body);
            }
        }
    }
    let texts: Vec<String> = statements.iter().map(Statement::to_string).collect();
    changed.then(|| texts.join(";\n"))
}

/// Rewrite 4 on every `SELECT` list of a statement.
#[derive(Default)]
struct KeptSubqueries {
    changed: bool,
}

impl VisitorMut for KeptSubqueries {
    type Break = ();

    fn pre_visit_query(
        &mut self,
        query: &mut datafusion::sql::sqlparser::ast::Query,
    ) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            for item in &mut select.projection {
                let (SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. }) = item
                else {
                    continue;
                };
                if matches!(&*expr, Expr::Subquery(q) if !catalog_rewrites::reads_only_catalog(q)) {
                    *expr = Expr::Nested(Box::new(expr.clone()));
                    self.changed = true;
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// datafusion-postgres' parser replaces some catalog queries it knows (psql's `\\d`
/// publications and row policies) by ones DataFusion can run, matching their tokens; such
/// a query must reach it unchanged. Told, for each of `statements` (the text's plain
/// parse), by comparing its full parse with its rewrite rules alone.
fn replaced_by_datafusion_postgres(sql: &str, statements: &[Statement]) -> Vec<bool> {
    match PARSER.parse(sql) {
        Ok(parsed) if parsed.len() == statements.len() => parsed
            .iter()
            .zip(statements)
            .map(|(parsed, plain)| *parsed != PARSER.rewrite(plain.clone()))
            .collect(),
        _ => vec![true; statements.len()],
    }
}

/// datafusion-postgres' parser, with its replacements of known catalog queries.
static PARSER: LazyLock<PostgresCompatibilityParser> =
    LazyLock::new(PostgresCompatibilityParser::new);

fn contains_ignoring_case(text: &str, word: &[u8]) -> bool {
    text.as_bytes()
        .windows(word.len())
        .any(|window| window.eq_ignore_ascii_case(word))
}

/// `pg_type`'s `regproc` columns, which rankql holds as function names (`-` for none).
const REGPROC_COLUMNS: [&str; 4] = ["typinput", "typoutput", "typreceive", "typsend"];

/// Replaces `'schema.name'::regproc` by `'name'`; a comparison of a `regproc` column
/// with `0` (PostgreSQL's "no function", as npgsql and pgAdmin ask `typreceive != 0`) by
/// one with `'-'`; and `pg_proc.oid` compared with one by `pg_proc.proname`.
fn regproc_names(statement: &mut Statement) -> bool {
    let pg_proc_names = pg_proc_names(statement);
    let mut changed = false;
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::Cast {
            expr: operand,
            data_type,
            ..
        } = expr
        {
            let type_name = data_type.to_string().to_lowercase();
            let is_regproc =
                type_name.strip_prefix("pg_catalog.").unwrap_or(&type_name) == "regproc";
            if let (true, Expr::Value(value)) = (is_regproc, operand.as_ref()) {
                if let Value::SingleQuotedString(name) = &value.value {
                    let bare = name.rsplit('.').next().unwrap_or(name).to_string();
                    *expr = Expr::Value(Value::SingleQuotedString(bare).into());
                    changed = true;
                }
            }
        }
        if let Expr::BinaryOp { left, op, right } = expr {
            let compares = matches!(op, BinaryOperator::Eq | BinaryOperator::NotEq);
            if compares && is_regproc_column(left) && is_zero(right) {
                **right = Expr::Value(Value::SingleQuotedString("-".into()).into());
                changed = true;
            }
            if compares && is_regproc_column(right) {
                changed |= pg_proc_oid_as_name(left, &pg_proc_names);
            }
            if compares && is_regproc_column(left) {
                changed |= pg_proc_oid_as_name(right, &pg_proc_names);
            }
        }
        ControlFlow::<()>::Continue(())
    });
    changed
}

/// The column name `expr` refers to (`t.typreceive` is `typreceive`), if it is a column.
pub(crate) fn column_name(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Identifier(ident) => Some(&ident.value),
        Expr::CompoundIdentifier(parts) => parts.last().map(|last| last.value.as_str()),
        _ => None,
    }
}

fn is_regproc_column(expr: &Expr) -> bool {
    let Some(name) = column_name(expr) else {
        return false;
    };
    REGPROC_COLUMNS
        .iter()
        .any(|column| name.eq_ignore_ascii_case(column))
}

/// `pg_proc.oid` compared with a `regproc` column (npgsql joins `pg_proc.oid =
/// typreceive`, or `proc.oid = typ.typreceive` with `pg_proc AS proc`) becomes
/// `pg_proc.proname`, the form rankql's column holds.
fn pg_proc_oid_as_name(expr: &mut Expr, pg_proc_names: &[String]) -> bool {
    let Expr::CompoundIdentifier(parts) = expr else {
        return false;
    };
    let [.., table, column] = parts.as_mut_slice() else {
        return false;
    };
    let is_pg_proc = pg_proc_names
        .iter()
        .any(|name| table.value.eq_ignore_ascii_case(name));
    if !(is_pg_proc && column.value.eq_ignore_ascii_case("oid")) {
        return false;
    }
    *column = Ident::new("proname");
    true
}

/// The names `pg_proc` goes by in `statement`: its own and its aliases.
fn pg_proc_names(statement: &mut Statement) -> Vec<String> {
    let mut names = vec!["pg_proc".to_string()];
    visit_table_factors(statement, |table| {
        if let TableFactor::Table {
            name,
            alias: Some(alias),
            ..
        } = table
        {
            let is_pg_proc = name
                .0
                .last()
                .and_then(|part| part.as_ident())
                .is_some_and(|ident| ident.value.eq_ignore_ascii_case("pg_proc"));
            if is_pg_proc {
                names.push(alias.name.value.clone());
            }
        }
    });
    names
}

/// Calls `visit` on every table in `FROM` clauses of `statement`.
fn visit_table_factors(statement: &mut Statement, visit: impl FnMut(&mut TableFactor)) {
    struct Tables<F>(F);
    impl<F: FnMut(&mut TableFactor)> VisitorMut for Tables<F> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, table: &mut TableFactor) -> ControlFlow<()> {
            (self.0)(table);
            ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Tables(visit));
}

fn is_zero(expr: &Expr) -> bool {
    matches!(expr, Expr::Value(value) if matches!(&value.value, Value::Number(text, _) if text == "0"))
}

/// A cheap test on the text before parsing: only a `SELECT` can project a literal.
fn starts_like_a_query(sql: &str) -> bool {
    let text = sql.trim_start().trim_start_matches('(').trim_start();
    text.get(..6)
        .is_some_and(|start| start.eq_ignore_ascii_case("select"))
        && text.bytes().any(|b| b.is_ascii_digit())
}

fn postgres_select_list(body: &mut SetExpr) -> bool {
    match body {
        SetExpr::Select(select) => {
            let mut names = ColumnNames::new(&select.projection);
            let mut changed = false;
            for item in &mut select.projection {
                match item {
                    SelectItem::UnnamedExpr(expr) if is_int4_literal(expr) => {
                        *item = SelectItem::ExprWithAlias {
                            expr: as_int4(expr.clone()),
                            alias: names.unused(),
                        };
                        changed = true;
                    }
                    SelectItem::ExprWithAlias { expr, .. } if is_int4_literal(expr) => {
                        *expr = as_int4(expr.clone());
                        changed = true;
                    }
                    _ => {}
                }
            }
            changed
        }
        SetExpr::SetOperation { left, right, .. } => {
            let left = postgres_select_list(left);
            postgres_select_list(right) || left
        }
        SetExpr::Query(query) => postgres_select_list(&mut query.body),
        _ => false,
    }
}

/// The column names of one `SELECT` list. PostgreSQL names every unnamed constant
/// `?column?`, twice if need be; DataFusion wants names to differ, so later ones get
/// `?column?_2`, `?column?_3`…
pub(crate) struct ColumnNames {
    taken: std::collections::HashSet<String>,
}

impl ColumnNames {
    pub(crate) fn new(projection: &[SelectItem]) -> Self {
        let taken = projection
            .iter()
            .filter_map(|item| match item {
                SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
                _ => None,
            })
            .collect();
        Self { taken }
    }

    /// `?column?`, or the first `?column?_N` not yet used.
    pub(crate) fn unused(&mut self) -> Ident {
        let mut name = "?column?".to_string();
        let mut n = 1;
        while self.taken.contains(&name) {
            n += 1;
            name = format!("?column?_{n}");
        }
        self.taken.insert(name.clone());
        Ident::with_quote('"', name)
    }
}

/// An integer literal (possibly negated) within `int4`'s range.
fn is_int4_literal(expr: &Expr) -> bool {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::Number(text, _) => text.parse::<i32>().is_ok(),
            _ => false,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(value) => match &value.value {
                Value::Number(text, _) => format!("-{text}").parse::<i32>().is_ok(),
                _ => false,
            },
            _ => false,
        },
        Expr::Nested(inner) => is_int4_literal(inner),
        _ => false,
    }
}

fn as_int4(expr: Expr) -> Expr {
    Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(expr),
        data_type: DataType::Integer(None),
        array: false,
        format: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subqueries_over_user_tables_keep_their_parentheses() {
        assert_eq!(
            rewrite("SELECT u.id, (SELECT count(*) FROM events e WHERE e.user_id = u.id) AS n FROM users u")
                .as_deref(),
            Some("SELECT u.id, ((SELECT count(*) FROM events e WHERE e.user_id = u.id)) AS n FROM users u")
        );
        assert_eq!(
            rewrite("SELECT x FROM t WHERE y IN (SELECT y FROM u)"),
            None
        );
    }

    #[test]
    fn top_level_literals_become_int4() {
        assert_eq!(
            rewrite("SELECT 1").as_deref(),
            Some(r#"SELECT CAST(1 AS INTEGER) AS "?column?""#)
        );
        assert_eq!(
            rewrite("select -5 AS n, 'x', 3000000000 AS big").as_deref(),
            Some("SELECT CAST(-5 AS INTEGER) AS n, 'x', 3000000000 AS big")
        );
        assert_eq!(
            rewrite("SELECT 1, 2, NULL, x FROM t").as_deref(),
            Some(
                r#"SELECT CAST(1 AS INTEGER) AS "?column?", CAST(2 AS INTEGER) AS "?column?_2", NULL, x FROM t"#
            )
        );
        assert_eq!(
            rewrite("SELECT 1; SELECT 'x'").as_deref(),
            Some("SELECT CAST(1 AS INTEGER) AS \"?column?\";\nSELECT 'x'"),
            "each statement of a script"
        );
        assert_eq!(
            rewrite("SELECT 1 AS a UNION ALL SELECT 2").as_deref(),
            Some(
                r#"SELECT CAST(1 AS INTEGER) AS a UNION ALL SELECT CAST(2 AS INTEGER) AS "?column?""#
            )
        );
    }

    #[test]
    fn regproc_names_lose_their_schema() {
        assert_eq!(
            rewrite("SELECT typinput='pg_catalog.array_in'::regproc FROM pg_type WHERE oid = $1")
                .as_deref(),
            Some("SELECT typinput = 'array_in' FROM pg_type WHERE oid = $1")
        );
        assert_eq!(
            rewrite("SELECT oid FROM pg_type WHERE (typreceive != 0 OR t.typsend <> 0) AND typlen = 0")
                .as_deref(),
            Some("SELECT oid FROM pg_type WHERE (typreceive <> '-' OR t.typsend <> '-') AND typlen = 0")
        );
        assert_eq!(
            rewrite("SELECT 'x' FROM pg_type a JOIN pg_proc ON pg_proc.oid = a.typreceive")
                .as_deref(),
            Some("SELECT 'x' FROM pg_type a JOIN pg_proc ON pg_proc.proname = a.typreceive")
        );
    }

    #[test]
    fn everything_else_is_left_alone() {
        for sql in [
            "SELECT count(*) FROM t",
            "SELECT 1.5",
            "SELECT x FROM (SELECT 1 AS x)",
            "INSERT INTO t VALUES (1)",
            "SELECT 'no digits'",
            "SELECT NULL, x FROM t",
            "not sql 1",
        ] {
            assert_eq!(rewrite(sql), None, "{sql}");
        }
    }
}
