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
//! 4. Two or more unnamed `NULL`s in a `SELECT` list (psqlODBC's `select NULL, NULL,
//!    NULL`, pgjdbc's procedure list) are named `?column?`, `?column?_2`…, as PostgreSQL
//!    names each `?column?` and DataFusion wants names to differ.
//!
//! The caller skips all of this for the statements datafusion-postgres replaces by token
//! match (psql's `\d` publications and policies), which it would otherwise break.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    visit_expressions_mut, visit_relations, Expr, FunctionArguments, ObjectName, OrderByKind,
    Query, SelectItem, SetExpr, Statement, Value,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::pg_rewrites::ColumnNames;

/// A cheap test on the text: whether any of the rewrites could apply.
pub fn may_apply(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    lower.contains("generate_subscripts")
        || lower.contains("array(")
        || lower.contains("array (")
        || (lower.contains("(select") || lower.contains("( select")) && lower.contains("pg_")
        || lower.matches("null").count() >= 2
}

/// Rewrites 1–3 in `statement`; whether anything changed.
pub fn constructs(statement: &mut Statement) -> bool {
    let mut changed = false;
    let _ = visit_expressions_mut(statement, |expr| {
        if let Some(rewritten) = generate_subscripts(expr).or_else(|| array_of_subquery(expr)) {
            *expr = rewritten;
            changed = true;
        }
        if let Expr::Subquery(query) = expr {
            changed |= aggregate_catalog_lookup(query);
        }
        ControlFlow::<()>::Continue(())
    });
    changed
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
    name.0
        .last()
        .map(|part| part.to_string().to_ascii_lowercase())
        .unwrap_or_default()
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
    let grouped = !matches!(
        &select.group_by,
        datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(list, _) if list.is_empty()
    );
    if select.distinct.is_some() || grouped || select.having.is_some() {
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

/// Whether every table `query` reads is a catalog table (`pg_…`, `pg_catalog.…`,
/// `information_schema.…`).
fn reads_only_catalog(query: &Query) -> bool {
    let mut catalog_only = true;
    let mut any = false;
    let _ = visit_relations(query, |name| {
        any = true;
        let parts: Vec<String> = name
            .0
            .iter()
            .map(|part| part.to_string().to_ascii_lowercase())
            .collect();
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
