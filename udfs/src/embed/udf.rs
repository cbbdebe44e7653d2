//! The `embed([model,] text)` and `embed_query([model,] text)` scalar functions.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{plan_err, Result, ScalarValue};
use datafusion::logical_expr::{
    scalar_doc_sections::DOC_SECTION_OTHER, ColumnarValue, Documentation, DocumentationBuilder,
    ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::config::TextRole;
use super::error::EmbedCallError;
use super::registry::ModelRegistry;
use crate::blocking::run_blocking;
use crate::columnar::scalar_if_all_scalar;
use crate::interrupt::StatementInterrupt;
use crate::vector::args::{vector_field, vector_type};

/// `embed(text)` with the default model, `embed('model', text)` with a named one:
/// a `vector(d)` (`FixedSizeList<Float32, d>`), NULL for a NULL text. `embed` embeds
/// what is searched (a passage) and `embed_query` what is searched for: models such as e5
/// put a different prefix before each (`passage: ` / `query: `); for others they agree.
#[derive(Debug)]
pub struct Embed {
    signature: Signature,
    registry: Arc<ModelRegistry>,
    role: TextRole,
}

impl Embed {
    /// `embed` (passages) backed by the models of `registry`.
    pub fn new(registry: Arc<ModelRegistry>) -> Self {
        Self::for_role(registry, TextRole::Passage)
    }

    /// `embed_query` (queries) backed by the models of `registry`.
    pub fn query(registry: Arc<ModelRegistry>) -> Self {
        Self::for_role(registry, TextRole::Query)
    }

    fn for_role(registry: Arc<ModelRegistry>, role: TextRole) -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            registry,
            role,
        }
    }

    /// The model named by a call's arguments: the literal first argument, or the default.
    fn model_name<'a>(
        &'a self,
        scalar_arguments: &'a [Option<&'a ScalarValue>],
    ) -> Result<&'a str> {
        if scalar_arguments.len() < 2 {
            return Ok(self.registry.resolve(None));
        }
        match scalar_arguments[0] {
            Some(
                ScalarValue::Utf8(Some(name))
                | ScalarValue::Utf8View(Some(name))
                | ScalarValue::LargeUtf8(Some(name)),
            ) => Ok(name),
            _ => plan_err!(
                "{}: the model name must be a constant string, as in {}('minilm', text)",
                self.name(),
                self.name()
            ),
        }
    }
}

impl PartialEq for Embed {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.registry, &other.registry) && self.role == other.role
    }
}
impl Eq for Embed {}
impl std::hash::Hash for Embed {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl ScalarUDFImpl for Embed {
    fn name(&self) -> &str {
        match self.role {
            TextRole::Passage => "embed",
            TextRole::Query => "embed_query",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.is_empty() || arg_types.len() > 2 {
            return plan_err!(
                "{} takes ([model,] text), got {} arguments",
                self.name(),
                arg_types.len()
            );
        }
        for data_type in arg_types {
            let is_text = matches!(
                data_type,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
            );
            if !is_text {
                return plan_err!(
                    "{}: text must be a string, got {data_type}; cast it with ::text",
                    self.name()
                );
            }
        }
        Ok(vec![DataType::Utf8; arg_types.len()])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        unreachable!("return_field_from_args is implemented")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let name = self.model_name(args.scalar_arguments)?;
        let config = self.registry.config(name).map_err(EmbedCallError::from)?;
        Ok(Arc::new(vector_field(
            self.name(),
            vector_type(config.dimension),
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let DataType::FixedSizeList(item, dimension) = args.return_field.data_type() else {
            return plan_err!(
                "embed: unexpected return type {}",
                args.return_field.data_type()
            );
        };
        let model = match args.args.first().filter(|_| args.args.len() == 2) {
            Some(ColumnarValue::Scalar(ScalarValue::Utf8(Some(name)))) => Some(name.clone()),
            Some(_) => {
                return plan_err!("{}: the model name must be a constant string", self.name())
            }
            None => None,
        };
        let embedder = self
            .registry
            .embedder(self.registry.resolve(model.as_deref()))
            .map_err(EmbedCallError::from)?;
        let texts = cast(
            &args.args[args.args.len() - 1].to_array(args.number_rows)?,
            &DataType::Utf8,
        )?;
        let texts = texts.as_string::<i32>();
        let prefix = embedder.config().prefix(self.role);
        // The prefix is part of the text the model sees, so the cache keeps a text's
        // query and passage vectors apart.
        let prefixed: Vec<String> = match prefix.is_empty() {
            true => Vec::new(),
            false => texts
                .iter()
                .flatten()
                .map(|t| format!("{prefix}{t}"))
                .collect(),
        };
        let present: Vec<&str> = match prefix.is_empty() {
            true => texts.iter().flatten().collect(),
            false => prefixed.iter().map(String::as_str).collect(),
        };
        let interrupt = StatementInterrupt::of(&args.config_options).cloned();
        let stop = || {
            interrupt
                .as_ref()
                .is_some_and(StatementInterrupt::is_interrupted)
        };
        let vectors =
            run_blocking(|| embedder.embed_until(&present, &stop)).map_err(EmbedCallError::from)?;

        let dimension_usize = *dimension as usize;
        let mut values = Vec::with_capacity(texts.len() * dimension_usize);
        let mut vectors = vectors.into_iter();
        for i in 0..texts.len() {
            match texts.is_valid(i).then(|| vectors.next()).flatten() {
                Some(vector) => values.extend_from_slice(&vector),
                None => values.extend(std::iter::repeat_n(0.0, dimension_usize)),
            }
        }
        let nulls = texts
            .nulls()
            .cloned()
            .or_else(|| Some(NullBuffer::new_valid(texts.len())));
        let list = FixedSizeListArray::try_new(
            Arc::new(Field::clone(item)),
            *dimension,
            Arc::new(Float32Array::from(values)),
            nulls,
        )?;
        scalar_if_all_scalar(&args.args, Arc::new(list) as ArrayRef)
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            DocumentationBuilder::new_with_details(
                DOC_SECTION_OTHER,
                "Sentence embedding of a text (mean pooling, L2-normalised by default). \
                 Texts longer than the model's max_tokens are truncated. embed() embeds \
                 what is searched, embed_query() what is searched for (e5 prefixes them \
                 with 'passage: ' and 'query: ').",
                "embed([model,] text)",
            )
            .with_sql_example(
                "SELECT id FROM products \
                 ORDER BY cosine(embed('e5', title), embed_query('e5', '无线话筒')) DESC LIMIT 10",
            )
            .build()
        }))
    }
}
