//! PostgreSQL constructs that clients' catalog queries use and DataFusion lacks, rewritten
//! into ones it has (a pass of [`super::pg_rewrites`]). Each keeps PostgreSQL's answer:
//!
//! 1. `generate_subscripts(a, d)` (SQLAlchemy's and Superset's index reflection) becomes
//!    `unnest(generate_series(1, array_length(a, d)))`, the same positions.
//! 2. `ARRAY(SELECT x FROM … [ORDER BY …])` (psql's `\du`, `\dp`, `\d`) becomes
//!    `(SELECT array_agg(x [ORDER BY …]) FROM …)`. One difference: no rows gives NULL
//!    where PostgreSQL gives an empty array.
//! 3. A scalar subquery over catalog tables whose one column is not an aggregate —
//!    `(SELECT c.relkind = 'c' FROM pg_class c WHERE c.oid = t.typrelid)` in psql, pgcli,
//!    pgjdbc, SQLAlchemy and Npgsql — has its column wrapped in `max(…)`: DataFusion only
//!    runs correlated scalar subqueries that aggregate. These look a row up by its oid,
//!    so there is one row or none, and `max` of one row is that row (of none, NULL, as
//!    the subquery gives). User tables' subqueries are left alone: there a second row
//!    must stay an error.
//!    A condition of such a subquery that names only the outer query's columns moves
//!    outside it, into a `CASE WHEN` ([`outer_conditions_out`]); outer columns in its
//!    `SELECT` list stay outside while its own are looked up ([`outer_columns_out`]).
//! 4. Two or more unnamed `NULL`s in a `SELECT` list (psqlODBC's `select NULL, NULL,
//!    NULL`, pgjdbc's procedure list) are named `?column?`, `?column?_2`…, as PostgreSQL
//!    names each `?column?` and DataFusion wants names to differ.
//!
//! 5. PostgreSQL's implicit conversions DataFusion does not make: `'t'`/`'f'` compared
//!    with a catalog boolean column (`indisprimary = 't'`, psqlODBC and Superset) or
//!    passed as the pretty-print flag of `pg_get_constraintdef` (SQLAlchemy) become
//!    `true`/`false`; `::name` becomes `::text`; `LIKE … ESCAPE '/'` (SQLAlchemy) uses
//!    DataFusion's backslash escape.
//!    An integer array written as text (`polroles = '{0}'`, psql) becomes an array.
//! 6. Set-returning functions as PostgreSQL places them: `generate_series(a, b)` in a
//!    `SELECT` list yields rows (`unnest(generate_series(a, b))`), and a function in
//!    `FROM` with an alias but no column names (`unnest(conkey) AS k`) names its column
//!    after the alias. `(information_schema._pg_expandarray(a)).x` and `.n` (pgjdbc,
//!    Metabase) become the `unnest`s of `a` and of its positions; the table function
//!    `pg_show_all_settings()` (pgAdmin) is the `pg_settings` view it underlies; a bare
//!    `_pg_expandarray(a)` in a `SELECT` list yields its `(x, n)` rows, and a field of a
//!    composite, `(keys).x`, is read with `get_field`.
//!    A text array in `coalesce` (`coalesce(names, '{}')`, psycopg) becomes an array.
//!    `format('%I.%I', schema, table)::regclass` (Metabase) becomes a lookup of the oid;
//!    `EXISTS (catalog subquery)` in a `SELECT` list becomes a count (psql's `\d index`),
//!    and `ARRAY(SELECT 'p' || x FROM unnest(a) x)` a function call (psql's `\d+`).
//! 7. `information_schema.table_constraints`, `referential_constraints`,
//!    `key_column_usage` and `character_sets`, which DataFusion's `information_schema`
//!    lacks, and `columns`, which it has in a shape clients cannot use, are read from
//!    rankql's copies in `pg_catalog` (`information_schema_…`, see [`crate::pg_columns`]
//!    and [`crate::information_schema_columns`]).
//!
//! The caller skips all of this for the statements datafusion-postgres replaces by token
//! match (psql's `\d` publications and policies), which it would otherwise break.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    visit_expressions, visit_expressions_mut, visit_relations, visit_relations_mut, AccessExpr,
    BinaryOperator, DataType as SqlType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    Ident, ObjectName, OrderByKind, Query, SelectItem, SetExpr, Statement, TableAliasColumnDef,
    TableFactor, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::pg_rewrites::{column_name, ColumnNames};

/// A cheap test on the text: whether any of the rewrites could apply.
pub fn may_apply(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    lower.contains("generate_subscripts")
        || lower.contains("generate_series")
        || lower.contains("::name")
        || lower.contains("escape")
        || lower.contains("information_schema")
        || lower.contains("unnest")
        || lower.contains("'t'")
        || lower.contains("'f'")
        || lower.contains("array(")
        || lower.contains("'{")
        || lower.contains(").")
        || lower.contains("pg_show_all_settings")
        || lower.contains("array (")
        || (lower.contains("(select") || lower.contains("( select")) && lower.contains("pg_")
        || lower.matches("null").count() >= 2
}

/// Rewrites 1–3 and 5–7 in `statement`; whether anything changed.
pub fn constructs(statement: &mut Statement) -> bool {
    let mut changed = false;
    let _ = visit_expressions_mut(statement, |expr| {
        let rewritten = generate_subscripts(expr)
            .or_else(|| array_of_subquery(expr))
            .or_else(|| regclass_of_qualified_name(expr))
            .or_else(|| implicit_conversion(expr));
        if let Some(rewritten) = rewritten {
            *expr = rewritten;
            changed = true;
        }
        changed |= decorrelate_catalog_lookup(expr);
        ControlFlow::<()>::Continue(())
    });
    let mut tables = TableFunctions::default();
    let _ = statement.visit(&mut tables);
    let _ = visit_relations_mut(statement, |name| {
        tables.changed |= missing_information_schema_table(name);
        ControlFlow::<()>::Continue(())
    });
    changed || tables.changed
}

/// Rewrite 6 on the `SELECT` lists of `body` and the queries nested in it.
pub fn set_returning_in_select_lists(statement: &mut Statement) -> bool {
    let mut lists = SelectLists::default();
    let _ = statement.visit(&mut lists);
    lists.changed
}

/// Catalog boolean columns, by prefix (`contype`, a `char`, must not match).
const BOOLEAN_COLUMNS: [&str; 14] = [
    "indis",
    "attis",
    "atthas",
    "attnotnull",
    "relis",
    "relhas",
    "typnotnull",
    "typisdefined",
    "rolsuper",
    "rolinherit",
    "rolcan",
    "condeferr",
    "convalidated",
    "datistemplate",
];

fn is_boolean_column(expr: &Expr) -> bool {
    let Some(name) = column_name(expr) else {
        return false;
    };
    let name = name.to_ascii_lowercase();
    BOOLEAN_COLUMNS
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// `'t'`, `'f'`, `'true'`, `'false'` as a boolean literal.
fn as_boolean(expr: &Expr) -> Option<Expr> {
    let Expr::Value(value) = expr else {
        return None;
    };
    let Value::SingleQuotedString(text) = &value.value else {
        return None;
    };
    let flag = match text.to_ascii_lowercase().as_str() {
        "t" | "true" => true,
        "f" | "false" => false,
        _ => return None,
    };
    Some(Expr::Value(Value::Boolean(flag).into()))
}

/// `'{1,2}'` as `make_array(1, 2)`.
fn as_integer_array(expr: &Expr) -> Option<Expr> {
    let Expr::Value(value) = expr else {
        return None;
    };
    let Value::SingleQuotedString(text) = &value.value else {
        return None;
    };
    let inner = text.strip_prefix('{')?.strip_suffix('}')?;
    let numbers = inner
        .split(',')
        .map(|part| part.trim().parse::<i64>().ok())
        .collect::<Option<Vec<_>>>()?;
    let list: Vec<String> = numbers.iter().map(i64::to_string).collect();
    parse_expr(&format!("make_array({})", list.join(", ")))
}

/// `'{a,b}'` as a text array (`coalesce(names, '{}')`, psycopg's type lookup).
fn as_text_array(expr: &Expr) -> Option<Expr> {
    let Expr::Value(value) = expr else {
        return None;
    };
    let Value::SingleQuotedString(text) = &value.value else {
        return None;
    };
    let inner = text.strip_prefix('{')?.strip_suffix('}')?;
    let items: Vec<String> = inner
        .split(',')
        .filter(|item| !item.is_empty())
        .map(|item| format!("'{}'", item.trim().trim_matches('"').replace('\'', "''")))
        .collect();
    parse_expr(&format!(
        "CAST(make_array({}) AS VARCHAR[])",
        items.join(", ")
    ))
}

/// `(information_schema._pg_expandarray(a)).x` and `.n` (pgjdbc's and Metabase's key
/// columns): the elements and their positions, as `unnest`s that zip in one `SELECT`.
fn expandarray_field(expr: &Expr) -> Option<Expr> {
    let Expr::CompoundFieldAccess { root, access_chain } = expr else {
        return None;
    };
    let Expr::Nested(inner) = root.as_ref() else {
        return None;
    };
    let Expr::Function(function) = inner.as_ref() else {
        return None;
    };
    if function_name(&function.name) != "_pg_expandarray" {
        return None;
    }
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    let [array] = list.args.as_slice() else {
        return None;
    };
    let [AccessExpr::Dot(Expr::Identifier(field))] = access_chain.as_slice() else {
        return None;
    };
    match field.value.to_ascii_lowercase().as_str() {
        "x" => parse_expr(&format!("unnest({array})")),
        "n" => parse_expr(&format!(
            "unnest(generate_series(1, array_length({array}, 1)))"
        )),
        _ => None,
    }
}

/// `(composite).field` (pgjdbc's `(i.keys).x`) as `get_field(composite, 'field')`:
/// DataFusion reads a struct's field so, not with a dot.
fn composite_field(expr: &Expr) -> Option<Expr> {
    let Expr::CompoundFieldAccess { root, access_chain } = expr else {
        return None;
    };
    if !matches!(root.as_ref(), Expr::Nested(_)) {
        return None;
    }
    let [AccessExpr::Dot(Expr::Identifier(field))] = access_chain.as_slice() else {
        return None;
    };
    parse_expr(&format!(
        "get_field({root}, '{}')",
        field.value.replace('\'', "''")
    ))
}

/// Rewrite 5.
/// `CAST(format('%I.%I', schema, table) AS regclass)` (Metabase's field sync, for
/// `col_description`) as a lookup of the table's oid by its two names. datafusion-postgres
/// resolves `::regclass` of a literal only; this one is built from columns.
fn regclass_of_qualified_name(expr: &Expr) -> Option<Expr> {
    let Expr::Cast {
        expr: operand,
        data_type,
        ..
    } = expr
    else {
        return None;
    };
    let type_name = data_type.to_string().to_ascii_lowercase();
    if type_name.strip_prefix("pg_catalog.").unwrap_or(&type_name) != "regclass" {
        return None;
    }
    let Expr::Function(format) = operand.as_ref() else {
        return None;
    };
    if function_name(&format.name) != "format" {
        return None;
    }
    let FunctionArguments::List(list) = &format.args else {
        return None;
    };
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(template)), FunctionArg::Unnamed(FunctionArgExpr::Expr(schema)), FunctionArg::Unnamed(FunctionArgExpr::Expr(table))] =
        list.args.as_slice()
    else {
        return None;
    };
    if !matches!(template, Expr::Value(v) if matches!(&v.value, Value::SingleQuotedString(t) if t == "%I.%I"))
    {
        return None;
    }
    parse_expr(&format!(
        "(SELECT max(rankql_class.oid) FROM pg_catalog.pg_class rankql_class \
         JOIN pg_catalog.pg_namespace rankql_schema ON rankql_class.relnamespace = rankql_schema.oid \
         WHERE rankql_schema.nspname = {schema} AND rankql_class.relname = {table})"
    ))
}

fn implicit_conversion(expr: &Expr) -> Option<Expr> {
    if let Some(rows) = expandarray_field(expr) {
        return Some(rows);
    }
    if let Some(field) = composite_field(expr) {
        return Some(field);
    }
    match expr {
        Expr::BinaryOp { left, op, right }
            if matches!(op, BinaryOperator::Eq | BinaryOperator::NotEq)
                && (as_integer_array(left).is_some() || as_integer_array(right).is_some()) =>
        {
            Some(Expr::BinaryOp {
                left: Box::new(as_integer_array(left).unwrap_or_else(|| left.as_ref().clone())),
                op: op.clone(),
                right: Box::new(as_integer_array(right).unwrap_or_else(|| right.as_ref().clone())),
            })
        }
        Expr::BinaryOp { left, op, right }
            if matches!(op, BinaryOperator::Eq | BinaryOperator::NotEq) =>
        {
            let (left, right) = match (is_boolean_column(left), is_boolean_column(right)) {
                (true, _) => (left.as_ref().clone(), as_boolean(right)?),
                (_, true) => (as_boolean(left)?, right.as_ref().clone()),
                _ => return None,
            };
            Some(Expr::BinaryOp {
                left: Box::new(left),
                op: op.clone(),
                right: Box::new(right),
            })
        }
        Expr::Function(function) if function_name(&function.name) == "coalesce" => {
            let FunctionArguments::List(list) = &function.args else {
                return None;
            };
            let mut changed = false;
            let mut list = list.clone();
            for arg in &mut list.args {
                if let FunctionArg::Unnamed(FunctionArgExpr::Expr(value)) = arg {
                    if let Some(array) = as_text_array(value) {
                        *value = array;
                        changed = true;
                    }
                }
            }
            let mut function = function.clone();
            function.args = FunctionArguments::List(list);
            changed.then_some(Expr::Function(function))
        }
        Expr::Function(function) if function_name(&function.name) == "pg_get_constraintdef" => {
            let FunctionArguments::List(list) = &function.args else {
                return None;
            };
            let [first, FunctionArg::Unnamed(FunctionArgExpr::Expr(flag))] = list.args.as_slice()
            else {
                return None;
            };
            let mut function = function.clone();
            let mut list = list.clone();
            list.args = vec![
                first.clone(),
                FunctionArg::Unnamed(FunctionArgExpr::Expr(as_boolean(flag)?)),
            ];
            function.args = FunctionArguments::List(list);
            Some(Expr::Function(function))
        }
        Expr::Cast {
            kind,
            expr: operand,
            data_type: SqlType::Custom(name, modifiers),
            format,
            array,
        } if modifiers.is_empty() && function_name(name) == "name" => Some(Expr::Cast {
            kind: kind.clone(),
            expr: operand.clone(),
            data_type: SqlType::Text,
            format: format.clone(),
            array: *array,
        }),
        Expr::Like {
            negated,
            any,
            expr: operand,
            pattern,
            escape_char: Some(escape),
        } => {
            let Value::SingleQuotedString(escape) = &escape.value else {
                return None;
            };
            if escape == "\\" || escape.chars().count() != 1 {
                return None;
            }
            let pattern = parse_expr(&format!(
                "replace(replace({pattern}, '\\', '\\\\'), '{}', '\\')",
                escape.replace('\'', "''")
            ))?;
            Some(Expr::Like {
                negated: *negated,
                any: *any,
                expr: operand.clone(),
                pattern: Box::new(pattern),
                escape_char: None,
            })
        }
        _ => None,
    }
}

/// Postgres functions that return one column, which `FROM f(…) AS a` names `a`. Other
/// table functions (rankql's `nearest`, `models`) keep their own column names.
const SINGLE_COLUMN_FUNCTIONS: &[&str] = &[
    "unnest",
    "generate_series",
    "generate_subscripts",
    "regexp_split_to_table",
    "string_to_table",
    "json_array_elements",
    "json_array_elements_text",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "json_object_keys",
    "jsonb_object_keys",
];

/// Rewrite 6 in `FROM`: a one-column function with an alias and no column names gets a
/// column named after the alias.
#[derive(Default)]
struct TableFunctions {
    changed: bool,
}

impl VisitorMut for TableFunctions {
    type Break = ();

    fn pre_visit_table_factor(&mut self, table: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, args, .. } = table {
            let no_arguments = args.as_ref().is_some_and(|args| args.args.is_empty());
            if no_arguments && function_name(name) == "pg_show_all_settings" {
                *name = ObjectName::from(vec![Ident::new("pg_catalog"), Ident::new("pg_settings")]);
                *args = None;
                self.changed = true;
                return ControlFlow::Continue(());
            }
        }
        let one_column =
            |name: &ObjectName| SINGLE_COLUMN_FUNCTIONS.contains(&function_name(name).as_str());
        let alias = match table {
            TableFactor::UNNEST { alias, .. } => alias,
            TableFactor::Function { alias, name, .. } if one_column(name) => alias,
            TableFactor::Table {
                alias,
                name,
                args: Some(_),
                ..
            } if one_column(name) => alias,
            _ => return ControlFlow::Continue(()),
        };
        if let Some(alias) = alias {
            if alias.columns.is_empty() {
                alias.columns.push(TableAliasColumnDef {
                    name: alias.name.clone(),
                    data_type: None,
                });
                self.changed = true;
            }
        }
        ControlFlow::Continue(())
    }
}

/// Rewrite 6 in `SELECT` lists.
#[derive(Default)]
struct SelectLists {
    changed: bool,
}

impl VisitorMut for SelectLists {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            for item in &mut select.projection {
                let expr = match item {
                    SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => expr,
                    _ => continue,
                };
                let is_set_returning = matches!(
                    &*expr,
                    Expr::Function(f)
                        if matches!(function_name(&f.name).as_str(), "generate_series" | "_pg_expandarray")
                );
                if is_set_returning {
                    if let Some(rows) = parse_expr(&format!("unnest({expr})")) {
                        *expr = rows;
                        self.changed = true;
                    }
                }
                let _ = visit_expressions_mut(expr, |inner| {
                    if let Some(counted) = counted_exists(inner) {
                        *inner = counted;
                        self.changed = true;
                    }
                    ControlFlow::<()>::Continue(())
                });
            }
        }
        ControlFlow::Continue(())
    }
}

/// `EXISTS (SELECT … FROM catalog WHERE …)` in a `SELECT` list (psql's `\d index`) as
/// `coalesce((SELECT count(*) FROM … WHERE …), 0) > 0`: DataFusion runs `EXISTS` only
/// in `WHERE`, and a correlated count it can.
fn counted_exists(expr: &Expr) -> Option<Expr> {
    let Expr::Exists { subquery, negated } = expr else {
        return None;
    };
    if subquery.limit_clause.is_some() || !reads_only_catalog(subquery) {
        return None;
    }
    let SetExpr::Select(select) = subquery.body.as_ref() else {
        return None;
    };
    if grouped(select) {
        return None;
    }
    let mut counting = select.as_ref().clone();
    counting.distinct = None;
    counting.projection = vec![SelectItem::UnnamedExpr(parse_expr("count(*)")?)];
    let not = if *negated { "NOT " } else { "" };
    parse_expr(&format!("{not}(coalesce(({counting}), 0) > 0)"))
}

/// Whether `select` groups its rows (`GROUP BY` or `HAVING`).
fn grouped(select: &datafusion::sql::sqlparser::ast::Select) -> bool {
    let ungrouped = matches!(
        &select.group_by,
        datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(list, _) if list.is_empty()
    );
    !ungrouped || select.having.is_some()
}

/// `information_schema` views DataFusion lacks, or has in a shape clients cannot use
/// (`columns`: Arrow type names, positions from 0, no `udt_name`).
const MISSING_INFORMATION_SCHEMA: [&str; 5] = [
    "columns",
    "table_constraints",
    "referential_constraints",
    "key_column_usage",
    "character_sets",
];

/// Rewrite 7 on one table name; whether it applied.
fn missing_information_schema_table(name: &mut ObjectName) -> bool {
    let parts = name_parts(name);
    let [schema, table] = parts.as_slice() else {
        return false;
    };
    if schema != "information_schema" || !MISSING_INFORMATION_SCHEMA.contains(&table.as_str()) {
        return false;
    }
    *name = ObjectName::from(vec![
        Ident::new("pg_catalog"),
        Ident::new(format!("information_schema_{table}")),
    ]);
    true
}

/// Rewrite 4 on the outermost `SELECT` lists (each branch of a set operation).
pub fn name_nulls(body: &mut SetExpr) -> bool {
    match body {
        SetExpr::Select(select) => {
            let unnamed_nulls = select.projection.iter().filter(|i| is_bare_null(i)).count();
            if unnamed_nulls < 2 {
                return false;
            }
            let mut names = ColumnNames::new(&select.projection);
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(expr) = item {
                    if is_null(expr) {
                        *item = SelectItem::ExprWithAlias {
                            expr: expr.clone(),
                            alias: names.unused(),
                        };
                    }
                }
            }
            true
        }
        SetExpr::SetOperation { left, right, .. } => {
            let left = name_nulls(left);
            name_nulls(right) || left
        }
        SetExpr::Query(query) => name_nulls(&mut query.body),
        _ => false,
    }
}

fn is_bare_null(item: &SelectItem) -> bool {
    matches!(item, SelectItem::UnnamedExpr(expr) if is_null(expr))
}

fn is_null(expr: &Expr) -> bool {
    matches!(expr, Expr::Value(value) if value.value == Value::Null)
}

fn parse_expr(text: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(text)
        .ok()?
        .parse_expr()
        .ok()
}

/// The last part of a function's name, lowercased (`pg_catalog.x` is `x`).
fn function_name(name: &ObjectName) -> String {
    name_parts(name).pop().unwrap_or_default()
}

/// A name's parts as written, lowercased, without their quotes.
fn name_parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|part| match part.as_ident() {
            Some(ident) => ident.value.to_ascii_lowercase(),
            None => part.to_string().to_ascii_lowercase(),
        })
        .collect()
}

fn generate_subscripts(expr: &Expr) -> Option<Expr> {
    let Expr::Function(function) = expr else {
        return None;
    };
    if function_name(&function.name) != "generate_subscripts" {
        return None;
    }
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    let [array, dimension] = list.args.as_slice() else {
        return None;
    };
    parse_expr(&format!(
        "unnest(generate_series(1, array_length({array}, {dimension})))"
    ))
}

/// `ARRAY(SELECT 'toast.' || x FROM unnest(a) x)` (psql's `\d+`) as
/// `rankql_prefix_elements('toast.', a)`: `a` is usually an outer column, and DataFusion
/// cannot run a subquery over it.
fn prefixed_elements(query: &Query) -> Option<Expr> {
    if query.order_by.is_some() || query.limit_clause.is_some() {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    if select.selection.is_some() || select.distinct.is_some() || select.having.is_some() {
        return None;
    }
    let [SelectItem::UnnamedExpr(Expr::BinaryOp {
        left,
        op: BinaryOperator::StringConcat,
        right,
    })] = select.projection.as_slice()
    else {
        return None;
    };
    let (Expr::Value(prefix), Expr::Identifier(element)) = (left.as_ref(), right.as_ref()) else {
        return None;
    };
    if !matches!(prefix.value, Value::SingleQuotedString(_)) {
        return None;
    }
    let [from] = select.from.as_slice() else {
        return None;
    };
    let TableFactor::Table {
        name,
        args: Some(args),
        alias: Some(alias),
        ..
    } = &from.relation
    else {
        return None;
    };
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(array))] = args.args.as_slice() else {
        return None;
    };
    let named_element = alias.name.value == element.value && alias.columns.is_empty();
    if !from.joins.is_empty() || function_name(name) != "unnest" || !named_element {
        return None;
    }
    parse_expr(&format!("rankql_prefix_elements({prefix}, {array})"))
}

fn array_of_subquery(expr: &Expr) -> Option<Expr> {
    let Expr::Function(function) = expr else {
        return None;
    };
    let FunctionArguments::Subquery(query) = &function.args else {
        return None;
    };
    if function_name(&function.name) != "array" {
        return None;
    }
    if let Some(prefixed) = prefixed_elements(query) {
        return Some(prefixed);
    }
    let mut query = query.as_ref().clone();
    let order_by = query.order_by.take();
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    if select.distinct.is_some() || query.limit_clause.is_some() {
        return None;
    }
    let [item] = select.projection.as_mut_slice() else {
        return None;
    };
    let element = match item {
        SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => expr.clone(),
        _ => return None,
    };
    let ordering = match order_by.map(|order_by| order_by.kind) {
        None => String::new(),
        Some(OrderByKind::Expressions(items)) => {
            let items: Vec<String> = items
                .into_iter()
                .map(|mut item| {
                    if matches!(&item.expr, Expr::Value(v) if matches!(&v.value, Value::Number(n, _) if n == "1"))
                    {
                        item.expr = element.clone();
                    }
                    item.to_string()
                })
                .collect();
            format!(" ORDER BY {}", items.join(", "))
        }
        Some(OrderByKind::All(_)) => return None,
    };
    *item = SelectItem::UnnamedExpr(parse_expr(&format!("array_agg({element}{ordering})"))?);
    Some(Expr::Subquery(Box::new(query)))
}

/// Aggregate functions: a subquery whose column is one already returns one row.
const AGGREGATES: [&str; 10] = [
    "count",
    "max",
    "min",
    "sum",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
];

/// Wraps the column of a catalog lookup subquery in `max(…)`; whether it did.
fn aggregate_catalog_lookup(query: &mut Query) -> bool {
    if query.limit_clause.is_some() || query.order_by.is_some() || !reads_only_catalog(query) {
        return false;
    }
    let SetExpr::Select(select) = query.body.as_mut() else {
        return false;
    };
    if select.distinct.is_some() || grouped(select) {
        return false;
    }
    let [item] = select.projection.as_mut_slice() else {
        return false;
    };
    let expr = match item {
        SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => expr,
        _ => return false,
    };
    let aggregated = matches!(&*expr, Expr::Function(f) if AGGREGATES.contains(&function_name(&f.name).as_str()));
    if aggregated {
        return false;
    }
    let Some(wrapped) = parse_expr(&format!("max({expr})")) else {
        return false;
    };
    *expr = wrapped;
    true
}

/// Rewrite 3 on a scalar subquery `expr`: the `max` wrapping, and what else DataFusion
/// needs to decorrelate a catalog lookup (see [`outer_conditions_out`] and
/// [`outer_columns_out`]). Whether anything changed.
fn decorrelate_catalog_lookup(expr: &mut Expr) -> bool {
    let Expr::Subquery(query) = expr else {
        return false;
    };
    let guard = outer_conditions_out(query);
    let value = match (outer_columns_out(query), &guard) {
        (Some(value), _) => value,
        (None, None) => return aggregate_catalog_lookup(query),
        (None, Some(_)) => {
            aggregate_catalog_lookup(query);
            Expr::Subquery(query.clone())
        }
    };
    let rewritten = match &guard {
        Some(guard) => parse_expr(&format!("CASE WHEN {guard} THEN {value} END")),
        None => Some(value),
    };
    match (rewritten, guard, expr) {
        (Some(rewritten), _, expr) => {
            *expr = rewritten;
            true
        }
        // The guard's conditions go back where they were: the subquery must not lose them.
        (None, Some(guard), Expr::Subquery(query)) => {
            if let SetExpr::Select(select) = query.body.as_mut() {
                select.selection =
                    and_all(select.selection.take().into_iter().chain([guard]).collect());
            }
            false
        }
        (None, _, _) => false,
    }
}

/// Rewrite 3b: the conditions of a catalog subquery that name only outer columns
/// (SQLAlchemy's column reflection: `WHERE pg_attribute.atthasdef AND pg_attrdef.adrelid
/// = …`) are taken out of its `WHERE` and returned, to guard it as `CASE WHEN guard THEN
/// (subquery) END`. DataFusion cannot decorrelate such a condition; outside, it means the
/// same: when it does not hold, the subquery has no row and gives NULL, as the `CASE`
/// does. The subquery is left as it is unless it has both kinds of condition.
fn outer_conditions_out(query: &mut Query) -> Option<Expr> {
    if !reads_only_catalog(query) {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    let inner = relation_names(&select.from)?;
    let conditions = conjuncts(select.selection.clone()?);
    let outer_only = |condition: &Expr| names_only_outer_columns(condition, &inner);
    if conditions.iter().all(outer_only) || !conditions.iter().any(outer_only) {
        return None;
    }
    let (outer, own): (Vec<Expr>, Vec<Expr>) = conditions.into_iter().partition(outer_only);
    select.selection = and_all(own);
    and_all(outer)
}

/// Rewrite 3c: a catalog lookup whose one column reads outer columns too —
/// `(SELECT json_build_object('always', a.attidentity = 'a', 'start', s.seqstart) FROM
/// pg_sequence s WHERE …)` in SQLAlchemy — which DataFusion cannot decorrelate, becomes
/// `CASE WHEN (SELECT count(*) FROM … WHERE …) > 0 THEN json_build_object('always',
/// a.attidentity = 'a', 'start', (SELECT max(s.seqstart) FROM … WHERE …)) END`: each
/// inner column is looked up on its own, and no row still gives NULL. Like rewrite 3, this
/// relies on a catalog lookup finding one row or none.
fn outer_columns_out(query: &Query) -> Option<Expr> {
    if query.limit_clause.is_some() || query.order_by.is_some() || !reads_only_catalog(query) {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    if select.distinct.is_some() || grouped(select) {
        return None;
    }
    let [SelectItem::UnnamedExpr(column) | SelectItem::ExprWithAlias { expr: column, .. }] =
        select.projection.as_slice()
    else {
        return None;
    };
    let inner = relation_names(&select.from)?;
    let mut reads_outer = false;
    let qualified = visit_expressions(column, |expr| match expr {
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
            reads_outer |= !inner.contains(&qualifier(parts));
            ControlFlow::Continue(())
        }
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Subquery(_) => {
            ControlFlow::Break(())
        }
        Expr::Function(f) if AGGREGATES.contains(&function_name(&f.name).as_str()) => {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    });
    if !reads_outer || qualified.is_break() {
        return None;
    }
    let from = select
        .from
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let filter = select
        .selection
        .as_ref()
        .map(|condition| format!(" WHERE {condition}"))
        .unwrap_or_default();
    let mut value = column.clone();
    let mut failed = false;
    let _ = visit_expressions_mut(&mut value, |expr| {
        if let Expr::CompoundIdentifier(parts) = expr {
            if inner.contains(&qualifier(parts)) {
                match parse_expr(&format!("(SELECT max({expr}) FROM {from}{filter})")) {
                    Some(lookup) => *expr = lookup,
                    None => failed = true,
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    if failed {
        return None;
    }
    parse_expr(&format!(
        "CASE WHEN (SELECT count(*) FROM {from}{filter}) > 0 THEN {value} END"
    ))
}

/// `[a, b, c]` as `a AND b AND c` (`None` if empty).
fn and_all(conditions: Vec<Expr>) -> Option<Expr> {
    conditions.into_iter().reduce(|left, right| Expr::BinaryOp {
        left: Box::new(left),
        op: BinaryOperator::And,
        right: Box::new(right),
    })
}

/// The table part of a qualified column name, lowercased (`pg_catalog.pg_class` of
/// `pg_catalog.pg_class.oid`).
fn qualifier(parts: &[Ident]) -> String {
    parts[..parts.len().saturating_sub(1)]
        .iter()
        .map(|part| part.value.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(".")
}

/// `a AND b AND c` as `[a, b, c]`.
fn conjuncts(expr: Expr) -> Vec<Expr> {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut all = conjuncts(*left);
            all.extend(conjuncts(*right));
            all
        }
        Expr::Nested(inner)
            if matches!(
                *inner,
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(*inner)
        }
        other => vec![other],
    }
}

/// The names a `FROM` list's columns can be qualified with (lowercased): each table's
/// alias, or its name as written and its last part. `None` for anything but plain tables.
fn relation_names(from: &[datafusion::sql::sqlparser::ast::TableWithJoins]) -> Option<Vec<String>> {
    let mut names = Vec::new();
    let factors = from.iter().flat_map(|table| {
        std::iter::once(&table.relation).chain(table.joins.iter().map(|j| &j.relation))
    });
    for factor in factors {
        let TableFactor::Table { name, alias, .. } = factor else {
            return None;
        };
        match alias {
            Some(alias) => names.push(alias.name.value.to_ascii_lowercase()),
            None => {
                let parts = name_parts(name);
                names.push(parts.join("."));
                names.extend(parts.last().cloned());
            }
        }
    }
    Some(names)
}

/// Whether `condition` names columns, all of them qualified by a table outside `inner`,
/// and holds no subquery.
fn names_only_outer_columns(condition: &Expr, inner: &[String]) -> bool {
    let mut outer_columns = 0;
    let verdict = visit_expressions(condition, |expr| match expr {
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
            if inner.contains(&qualifier(parts)) {
                return ControlFlow::Break(());
            }
            outer_columns += 1;
            ControlFlow::Continue(())
        }
        Expr::Identifier(_)
        | Expr::CompoundIdentifier(_)
        | Expr::Subquery(_)
        | Expr::Exists { .. }
        | Expr::InSubquery { .. } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    });
    verdict.is_continue() && outer_columns > 0
}

/// Whether every table `query` reads is a catalog table (`pg_…`, `pg_catalog.…`,
/// `information_schema.…`).
pub fn reads_only_catalog(query: &Query) -> bool {
    let mut catalog_only = true;
    let mut any = false;
    let _ = visit_relations(query, |name| {
        any = true;
        let parts = name_parts(name);
        let catalog = match parts.as_slice() {
            [schema, _] => schema == "pg_catalog" || schema == "information_schema",
            [table] => table.starts_with("pg_"),
            _ => false,
        };
        if !catalog {
            catalog_only = false;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    any && catalog_only
}

#[cfg(test)]
mod tests {
    use super::super::pg_rewrites::rewrite;

    #[test]
    fn generate_subscripts_becomes_a_series_of_positions() {
        assert_eq!(
            rewrite(
                "SELECT unnest(indkey) AS k, generate_subscripts(indkey, 1) AS i FROM pg_index"
            )
            .as_deref(),
            Some(
                "SELECT unnest(indkey) AS k, unnest(generate_series(1, array_length(indkey, 1))) \
                 AS i FROM pg_index"
            )
        );
    }

    #[test]
    fn array_of_a_subquery_becomes_an_aggregate() {
        assert_eq!(
            rewrite("SELECT ARRAY(SELECT rolname FROM pg_roles r WHERE r.oid = m.roleid ORDER BY 1) FROM pg_auth_members m")
                .as_deref(),
            Some(
                "SELECT (SELECT array_agg(rolname ORDER BY rolname) FROM pg_roles r \
                 WHERE r.oid = m.roleid) FROM pg_auth_members m"
            )
        );
    }

    #[test]
    fn catalog_lookups_are_aggregated_and_user_subqueries_are_not() {
        assert_eq!(
            rewrite("SELECT t.typname FROM pg_type t WHERE (SELECT c.relkind = 'c' FROM pg_class c WHERE c.oid = t.typrelid)")
                .as_deref(),
            Some(
                "SELECT t.typname FROM pg_type t WHERE (SELECT max(c.relkind = 'c') \
                 FROM pg_class c WHERE c.oid = t.typrelid)"
            )
        );
        for left in [
            "SELECT x FROM t WHERE (SELECT y FROM u WHERE u.id = t.id) > 0",
            "SELECT (SELECT count(*) FROM pg_class) AS n",
            "SELECT typname FROM pg_type WHERE oid IN (SELECT reltype FROM pg_class)",
        ] {
            assert_eq!(rewrite(left), None, "{left}");
        }
    }

    #[test]
    fn conditions_on_outer_columns_only_move_out_of_catalog_subqueries() {
        assert_eq!(
            rewrite(
                "SELECT CASE WHEN pg_catalog.pg_attribute.atthasdef THEN \
                 (SELECT pg_get_expr(pg_catalog.pg_attrdef.adbin, 1) FROM pg_catalog.pg_attrdef \
                 WHERE pg_catalog.pg_attribute.atthasdef \
                 AND pg_catalog.pg_attrdef.adrelid = pg_catalog.pg_attribute.attrelid) END \
                 FROM pg_catalog.pg_attribute"
            )
            .as_deref(),
            Some(
                "SELECT CASE WHEN pg_catalog.pg_attribute.atthasdef THEN \
                 CASE WHEN pg_catalog.pg_attribute.atthasdef THEN \
                 (SELECT max(pg_get_expr(pg_catalog.pg_attrdef.adbin, 1)) FROM pg_catalog.pg_attrdef \
                 WHERE pg_catalog.pg_attrdef.adrelid = pg_catalog.pg_attribute.attrelid) END END \
                 FROM pg_catalog.pg_attribute"
            )
        );
        for left in [
            "SELECT (SELECT max(d.x) FROM pg_attrdef d WHERE d.k = a.k AND d.flag) FROM pg_attribute a",
            "SELECT (SELECT max(d.x) FROM pg_attrdef d WHERE d.k = a.k AND flag) FROM pg_attribute a",
            "SELECT (SELECT max(d.x) FROM pg_attrdef d WHERE a.flag) FROM pg_attribute a",
        ] {
            assert_eq!(rewrite(left), None, "{left}");
        }
    }

    #[test]
    fn outer_columns_in_a_catalog_lookups_select_list_stay_outside() {
        assert_eq!(
            rewrite(
                "SELECT (SELECT json_build_object('always', a.attidentity = 'a', 'start', s.seqstart) \
                 FROM pg_sequence s WHERE s.seqrelid = a.attrelid) FROM pg_attribute a"
            )
            .as_deref(),
            Some(
                "SELECT CASE WHEN (SELECT count(*) FROM pg_sequence s WHERE s.seqrelid = a.attrelid) > 0 \
                 THEN json_build_object('always', a.attidentity = 'a', 'start', \
                 (SELECT max(s.seqstart) FROM pg_sequence s WHERE s.seqrelid = a.attrelid)) END \
                 FROM pg_attribute a"
            )
        );
    }

    #[test]
    fn prefixed_elements_of_an_array_need_no_subquery() {
        assert_eq!(
            rewrite(
                "SELECT array_to_string(c.reloptions || array(select 'toast.' || x \
                 from pg_catalog.unnest(tc.reloptions) x), ', ') FROM pg_class c, pg_class tc"
            )
            .as_deref(),
            Some(
                "SELECT array_to_string(c.reloptions || rankql_prefix_elements('toast.', \
                 tc.reloptions), ', ') FROM pg_class c, pg_class tc"
            )
        );
    }

    #[test]
    fn exists_in_a_select_list_is_a_count() {
        assert_eq!(
            rewrite(
                "SELECT (NOT i.indimmediate) AND EXISTS (SELECT 1 FROM pg_catalog.pg_constraint \
                 WHERE conindid = i.indexrelid) AS d FROM pg_catalog.pg_index i"
            )
            .as_deref(),
            Some(
                "SELECT (NOT i.indimmediate) AND (coalesce((SELECT count(*) FROM \
                 pg_catalog.pg_constraint WHERE conindid = i.indexrelid), 0) > 0) AS d \
                 FROM pg_catalog.pg_index i"
            )
        );
        assert_eq!(
            rewrite("SELECT x FROM t WHERE EXISTS (SELECT 1 FROM pg_class)"),
            None
        );
    }

    #[test]
    fn a_regclass_of_a_formatted_name_is_a_lookup() {
        assert_eq!(
            rewrite("SELECT col_description(CAST(CAST(format('%I.%I', c.s, c.t) AS REGCLASS) AS OID), 1) FROM information_schema.columns c")
                .as_deref(),
            Some(
                "SELECT col_description(CAST((SELECT max(rankql_class.oid) FROM pg_catalog.pg_class rankql_class \
                 JOIN pg_catalog.pg_namespace rankql_schema ON rankql_class.relnamespace = rankql_schema.oid \
                 WHERE rankql_schema.nspname = c.s AND rankql_class.relname = c.t) AS OID), 1) \
                 FROM pg_catalog.information_schema_columns c"
            )
        );
    }

    #[test]
    fn repeated_nulls_are_named_as_postgresql_names_them() {
        assert_eq!(
            rewrite("select NULL, nspname, NULL from pg_namespace").as_deref(),
            Some(r#"SELECT NULL AS "?column?", nspname, NULL AS "?column?_2" FROM pg_namespace"#)
        );
        assert_eq!(
            rewrite("SELECT NULL, x FROM t"),
            None,
            "one NULL is not renamed"
        );
        // datafusion-postgres replaces psql's `\d` publications query by token match.
        let psql_publications = "SELECT pubname\n             , NULL\n             , NULL\n        FROM pg_catalog.pg_publication p\n             JOIN pg_catalog.pg_publication_namespace pn ON p.oid = pn.pnpubid\n             JOIN pg_catalog.pg_class pc ON pc.relnamespace = pn.pnnspid\n        WHERE pc.oid ='16384' and pg_catalog.pg_relation_is_publishable('16384')\n        UNION\n        SELECT pubname\n             , pg_get_expr(pr.prqual, c.oid)\n             , (CASE WHEN pr.prattrs IS NOT NULL THEN\n                 (SELECT string_agg(attname, ', ')\n                   FROM pg_catalog.generate_series(0, pg_catalog.array_upper(pr.prattrs::pg_catalog.int2[], 1)) s,\n                        pg_catalog.pg_attribute\n                  WHERE attrelid = pr.prrelid AND attnum = prattrs[s])\n                ELSE NULL END) FROM pg_catalog.pg_publication p\n             JOIN pg_catalog.pg_publication_rel pr ON p.oid = pr.prpubid\n             JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid\n        WHERE pr.prrelid = '16384'\n        UNION\n        SELECT pubname\n             , NULL\n             , NULL\n        FROM pg_catalog.pg_publication p\n        WHERE p.puballtables AND pg_catalog.pg_relation_is_publishable('16384')\n        ORDER BY 1;";
        assert_eq!(rewrite(psql_publications), None);
    }
}
