//! rankql's own SQL functions in `pg_catalog.pg_proc`, so psql's `\df` lists `embed`,
//! `cosine`, `softmax_rank` and the rest (in schema `public`, where PostgreSQL lists an
//! extension's functions), `\df+ embed` shows what it does, and BI tools' function
//! browsers find them.
//!
//! Why: the catalog is PostgreSQL's own built-in list, so a user exploring rankql with
//! the tools they know found none of the functions the product is for. Each function's
//! arguments and description come from its DataFusion documentation
//! (`pg_get_function_arguments`, `obj_description`); its result type depends on its
//! arguments, so `pg_get_function_result` stays NULL.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, Float32Array, Int16Array, Int32Array,
    RecordBatch, StringArray,
};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Int32Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::pg_catalog_tables::{rewrite_catalog_table, CatalogReader, RowRewrite};

/// The first oid given to rankql's functions (PostgreSQL's own stay below 20,000).
const FIRST_OID: i32 = 70_000;

/// One of rankql's functions as `pg_proc` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Function {
    oid: i32,
    name: String,
    /// `f` scalar, `a` aggregate, `w` window.
    kind: &'static str,
    /// `i` immutable, `s` stable, `v` volatile.
    volatility: &'static str,
    /// The argument list of its documented syntax (`[model,] text`).
    arguments: Option<String>,
    description: Option<String>,
}

/// Adds rankql's functions (those of `rankql_udfs` registered in `context`) to
/// `pg_proc`, and answers `pg_get_function_arguments` and `obj_description` for them.
/// Call after the functions are registered.
pub fn register(context: &SessionContext) -> Result<()> {
    let functions = Arc::new(rankql_functions(context));
    rewrite_catalog_table(
        context,
        "pg_proc",
        Arc::new(WithFunctions {
            functions: functions.clone(),
        }),
    )?;
    for (name, text, argument_counts) in [
        ("pg_get_function_arguments", Text::Arguments, vec![1]),
        ("obj_description", Text::Description, vec![1, 2]),
    ] {
        context.register_udf(ScalarUDF::new_from_impl(FunctionText {
            name,
            text,
            by_oid: functions.iter().map(|f| (f.oid, f.clone())).collect(),
            signature: Signature::one_of(
                argument_counts
                    .into_iter()
                    .map(TypeSignature::Any)
                    .collect(),
                Volatility::Stable,
            ),
        }));
    }
    Ok(())
}

fn rankql_functions(context: &SessionContext) -> Vec<Function> {
    let state = context.state();
    let mut found: Vec<(String, &'static str, Volatility, Option<&Documentation>)> = Vec::new();
    let scalar_names = rankql_udfs::scalar_functions()
        .iter()
        .map(|f| f.name().to_string())
        .chain(["embed".to_string(), "embed_query".to_string()])
        .collect::<Vec<_>>();
    for name in scalar_names {
        if let Some(udf) = state.scalar_functions().get(&name) {
            found.push((name, "f", udf.signature().volatility, udf.documentation()));
        }
    }
    for name in rankql_udfs::aggregate_functions()
        .iter()
        .map(|f| f.name().to_string())
    {
        if let Some(udaf) = state.aggregate_functions().get(&name) {
            found.push((name, "a", udaf.signature().volatility, udaf.documentation()));
        }
    }
    for name in rankql_udfs::window_functions()
        .iter()
        .map(|f| f.name().to_string())
    {
        if let Some(udwf) = state.window_functions().get(&name) {
            found.push((name, "w", udwf.signature().volatility, udwf.documentation()));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
        .into_iter()
        .enumerate()
        .map(|(i, (name, kind, volatility, doc))| Function {
            oid: FIRST_OID + i as i32,
            kind,
            volatility: match volatility {
                Volatility::Immutable => "i",
                Volatility::Stable => "s",
                Volatility::Volatile => "v",
            },
            arguments: doc.and_then(|d| argument_list(&d.syntax_example)),
            description: doc.map(|d| d.description.clone()),
            name,
        })
        .collect()
}

/// `a, b` of a documented syntax `cosine(a, b)`.
fn argument_list(syntax: &str) -> Option<String> {
    let open = syntax.find('(')?;
    let mut depth = 0;
    for (at, character) in syntax[open..].char_indices() {
        match character {
            '(' => depth += 1,
            ')' if depth == 1 => return Some(syntax[open + 1..open + at].trim().to_string()),
            ')' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// `pg_proc` with rankql's functions after PostgreSQL's.
struct WithFunctions {
    functions: Arc<Vec<Function>>,
}

#[async_trait]
impl RowRewrite for WithFunctions {
    async fn rewrite(&self, rows: RecordBatch, catalog: &CatalogReader<'_>) -> Result<RecordBatch> {
        let namespaces = catalog.read("pg_namespace").await?;
        let public = namespaces
            .column_by_name("nspname")
            .and_then(|names| names.as_string_opt::<i32>())
            .and_then(|names| names.iter().position(|n| n == Some("public")));
        let oids = namespaces
            .column_by_name("oid")
            .and_then(|oids| datafusion::arrow::compute::cast(oids, &DataType::Int32).ok());
        let (Some(public), Some(oids)) = (public, oids) else {
            return Ok(rows);
        };
        let public_oid = oids.as_primitive::<Int32Type>().value(public);
        let added = self.rows(&rows, public_oid)?;
        Ok(concat_batches(&rows.schema(), [&rows, &added])?)
    }
}

impl WithFunctions {
    /// rankql's functions as rows of `like`'s schema: the columns `\df` and tools read
    /// are filled in; the others are NULL, or PostgreSQL's value for a plain function
    /// where the column cannot be NULL.
    fn rows(&self, like: &RecordBatch, namespace: i32) -> Result<RecordBatch> {
        let functions = &self.functions;
        let count = functions.len();
        let text = |values: Vec<Option<String>>| Arc::new(StringArray::from(values)) as ArrayRef;
        let columns = like
            .schema()
            .fields()
            .iter()
            .map(|field| {
                let column: ArrayRef = match field.name().as_str() {
                    "oid" => Arc::new(Int32Array::from_iter_values(
                        functions.iter().map(|f| f.oid),
                    )),
                    "proname" => text(functions.iter().map(|f| Some(f.name.clone())).collect()),
                    "pronamespace" => Arc::new(Int32Array::from(vec![namespace; count])),
                    "prokind" => text(functions.iter().map(|f| Some(f.kind.into())).collect()),
                    "provolatile" => text(
                        functions
                            .iter()
                            .map(|f| Some(f.volatility.into()))
                            .collect(),
                    ),
                    "prosrc" => text(functions.iter().map(|f| Some(f.name.clone())).collect()),
                    "proparallel" => text(vec![Some("s".into()); count]),
                    "prolang" => Arc::new(Int32Array::from(vec![12; count])),
                    "procost" => Arc::new(Float32Array::from(vec![1.0; count])),
                    _ if field.is_nullable() => new_null_array(field.data_type(), count),
                    _ => match field.data_type() {
                        DataType::Boolean => Arc::new(BooleanArray::from(vec![false; count])),
                        DataType::Int16 => Arc::new(Int16Array::from(vec![0; count])),
                        DataType::Int32 => Arc::new(Int32Array::from(vec![0; count])),
                        DataType::Float32 => Arc::new(Float32Array::from(vec![0.0; count])),
                        DataType::Utf8 => text(vec![Some(String::new()); count]),
                        other => ScalarValue::try_from(other)?.to_array_of_size(count)?,
                    },
                };
                datafusion::arrow::compute::cast(&column, field.data_type())
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(like.schema(), columns)?)
    }
}

/// Which text of a function a [`FunctionText`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Text {
    Arguments,
    Description,
}

/// `pg_get_function_arguments(oid)` / `obj_description(oid[, catalog])`: the text of
/// rankql's function `oid`; NULL for every other object (rankql has no SQL-defined
/// functions and no `COMMENT`).
#[derive(Debug, PartialEq, Eq)]
struct FunctionText {
    name: &'static str,
    text: Text,
    by_oid: HashMap<i32, Function>,
    signature: Signature,
}

impl std::hash::Hash for FunctionText {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.text.hash(state);
    }
}

impl ScalarUDFImpl for FunctionText {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let oids = args.args[0].to_array(rows)?;
        let Ok(oids) = datafusion::arrow::compute::cast(&oids, &DataType::Int32) else {
            return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)));
        };
        let oids = oids.as_primitive::<Int32Type>();
        let texts: StringArray = (0..rows)
            .map(|row| {
                let function = oids
                    .is_valid(row)
                    .then(|| self.by_oid.get(&oids.value(row)))
                    .flatten()?;
                match self.text {
                    Text::Arguments => function.arguments.clone(),
                    Text::Description => function.description.clone(),
                }
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(texts)))
    }
}

#[cfg(test)]
mod tests {
    use super::argument_list;

    #[test]
    fn arguments_come_from_the_documented_syntax() {
        assert_eq!(
            argument_list("embed([model,] text)").as_deref(),
            Some("[model,] text")
        );
        assert_eq!(
            argument_list("softmax_rank(score [, t]) OVER (PARTITION BY q)").as_deref(),
            Some("score [, t]")
        );
        assert_eq!(argument_list("f(g(x), y)").as_deref(), Some("g(x), y"));
        assert_eq!(argument_list("no parentheses"), None);
    }
}
