//! Privilege checks on planned statements, PostgreSQL's way: a statement runs only if its
//! role may do every part of it — read each table it scans (in joins, subqueries, CTEs,
//! views' definitions, `EXPLAIN`, the source of `INSERT … SELECT`), write its target,
//! create or drop what it creates or drops, and touch server files.
//!
//! Checking the logical plan rather than the SQL text means a table cannot hide from the
//! check behind syntax: whatever the statement reads is a `TableScan` in its plan.

use std::path::{Component, Path, PathBuf};

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::TableReference;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{DdlStatement, LogicalPlan, Statement, WriteOp};

use super::roles::{Privilege, RoleCatalog};
use crate::engine::CATALOG;
use crate::sqlstate::{self, SqlState};

/// The schema whose tables carry privileges; `pg_catalog` and `information_schema` are
/// readable by every role, as in PostgreSQL.
pub const PUBLIC_SCHEMA: &str = "public";

/// Why a statement was refused.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// The role lacks a privilege on a table.
    #[error(
        "permission denied for table {table}: {privilege} needs the table's owner or a \
         superuser to GRANT {privilege} ON {table} TO {role}"
    )]
    Table {
        /// The table.
        table: String,
        /// What was needed.
        privilege: Privilege,
        /// Who asked.
        role: String,
    },
    /// The role may not create tables or views.
    #[error(
        "permission denied to create {0} in schema public: needs a superuser to GRANT CREATE \
         ON SCHEMA public TO the role"
    )]
    Create(String),
    /// Dropping or replacing needs ownership.
    #[error("must be owner of table {0}")]
    NotOwner(String),
    /// Server files are for superusers, or inside `--file-access` directories.
    #[error(
        "permission denied to access server file {0}: only superusers may, or a directory \
         the server names with --file-access"
    )]
    File(String),
    /// Something only a superuser may do.
    #[error("permission denied: {0} requires a superuser")]
    Superuser(String),
}

impl SqlState for PrivilegeError {
    fn sqlstate(&self) -> &'static str {
        sqlstate::INSUFFICIENT_PRIVILEGE
    }
}

impl From<PrivilegeError> for DataFusionError {
    fn from(error: PrivilegeError) -> Self {
        DataFusionError::External(Box::new(error))
    }
}

/// Directories of server files that every role may read and write (`--file-access`).
#[derive(Debug, Clone, Default)]
pub struct FileAccess {
    directories: Vec<PathBuf>,
}

impl FileAccess {
    /// Allows the given directories (made absolute and resolved once, at start).
    pub fn new(directories: &[PathBuf]) -> std::io::Result<Self> {
        let directories = directories
            .iter()
            .map(std::fs::canonicalize)
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self { directories })
    }

    /// Whether `location` (a path or `file://` URL) lies inside an allowed directory.
    /// Symbolic links and `..` are resolved first, so they cannot lead outside.
    pub fn allows(&self, location: &str) -> bool {
        let path = match location.strip_prefix("file://") {
            Some(path) => path,
            None if location.contains("://") => return false,
            None => location,
        };
        match resolve(Path::new(path)) {
            Some(path) => self.directories.iter().any(|dir| path.starts_with(dir)),
            None => false,
        }
    }
}

/// The absolute, symlink-free form of `path`, which may not exist yet: its longest
/// existing ancestor is canonicalised and the rest appended; `None` if a `..` remains.
fn resolve(path: &Path) -> Option<PathBuf> {
    let absolute = std::env::current_dir().ok()?.join(path);
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(canonical) = std::fs::canonicalize(existing) {
            let mut resolved = canonical;
            for component in rest.iter().rev() {
                match component {
                    Component::Normal(name) => resolved.push(name),
                    Component::CurDir => {}
                    _ => return None,
                }
            }
            return Some(resolved);
        }
        rest.push(existing.components().next_back()?);
        existing = existing.parent()?;
    }
}

/// Who runs a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRole {
    /// The role's name.
    pub name: String,
    /// Superusers pass every check (and every client is one while no users exist).
    pub superuser: bool,
}

/// What a check needs besides the plan.
pub struct Checker<'a> {
    /// Owners and grants.
    pub roles: &'a RoleCatalog,
    /// Server directories open to every role.
    pub files: &'a FileAccess,
    /// Whether a table exists in `public` (to tell a `CREATE OR REPLACE` from a create).
    pub table_exists: Box<dyn Fn(&str) -> bool + Send + Sync + 'a>,
}

impl Checker<'_> {
    /// Checks that `role` may run `plan`.
    pub fn check(&self, role: &SessionRole, plan: &LogicalPlan) -> Result<(), PrivilegeError> {
        if role.superuser {
            return Ok(());
        }
        let mut outcome = Ok(());
        let walked = plan.apply_with_subqueries(|node| {
            outcome = self.check_node(role, node);
            Ok(if outcome.is_ok() {
                TreeNodeRecursion::Continue
            } else {
                TreeNodeRecursion::Stop
            })
        });
        if let Err(error) = walked {
            return Err(PrivilegeError::Superuser(format!(
                "a statement whose plan cannot be inspected ({error})"
            )));
        }
        outcome
    }

    /// Records what a permitted plan creates or drops: its creator owns a new table or
    /// view, a dropped one's grants are forgotten. Called just before the plan runs.
    pub fn record_ownership(&self, role: &SessionRole, plan: &LogicalPlan) {
        let recorded = match plan {
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) => {
                self.created(role, &create.name, create.or_replace)
            }
            LogicalPlan::Ddl(DdlStatement::CreateView(create)) => {
                self.created(role, &create.name, create.or_replace)
            }
            LogicalPlan::Ddl(DdlStatement::CreateExternalTable(create)) => {
                self.created(role, &create.name, create.or_replace)
            }
            LogicalPlan::Ddl(DdlStatement::DropTable(drop)) => {
                public_name(&drop.name).map_or(Ok(()), |name| self.roles.table_dropped(&name))
            }
            LogicalPlan::Ddl(DdlStatement::DropView(drop)) => {
                public_name(&drop.name).map_or(Ok(()), |name| self.roles.table_dropped(&name))
            }
            _ => Ok(()),
        };
        if let Err(error) = recorded {
            tracing::warn!("could not record a table's owner: {error}");
        }
    }

    /// A create takes ownership only where it really makes the table: the name is free,
    /// or `OR REPLACE` (which only the owner passes) replaces it.
    fn created(
        &self,
        role: &SessionRole,
        name: &TableReference,
        or_replace: bool,
    ) -> Result<(), super::roles::RoleError> {
        match public_name(name) {
            Some(table) if or_replace || !(self.table_exists)(&table) => {
                self.roles.table_created(&table, &role.name)
            }
            _ => Ok(()),
        }
    }

    fn check_node(&self, role: &SessionRole, node: &LogicalPlan) -> Result<(), PrivilegeError> {
        match node {
            LogicalPlan::TableScan(scan) => self.need(role, &scan.table_name, Privilege::Select),
            LogicalPlan::Dml(dml) => match &dml.op {
                WriteOp::Insert(InsertOp::Append) => {
                    self.need(role, &dml.table_name, Privilege::Insert)
                }
                WriteOp::Ctas => self.need_create(role, &dml.table_name, false, false),
                _ => self.need_owner(role, &dml.table_name),
            },
            LogicalPlan::Copy(copy) => self.need_file(&copy.output_url),
            LogicalPlan::Ddl(ddl) => self.check_ddl(role, ddl),
            LogicalPlan::Statement(Statement::SetVariable(set))
                if set.variable.to_ascii_lowercase().starts_with("datafusion.") =>
            {
                Err(PrivilegeError::Superuser(format!("SET {}", set.variable)))
            }
            _ => Ok(()),
        }
    }

    fn check_ddl(&self, role: &SessionRole, ddl: &DdlStatement) -> Result<(), PrivilegeError> {
        match ddl {
            DdlStatement::CreateMemoryTable(create) => {
                self.need_create(role, &create.name, create.or_replace, create.if_not_exists)
            }
            DdlStatement::CreateView(create) => {
                self.need_create(role, &create.name, create.or_replace, false)
            }
            DdlStatement::CreateExternalTable(create) => {
                create
                    .locations
                    .iter()
                    .try_for_each(|location| self.need_file(location))?;
                self.need_create(role, &create.name, create.or_replace, create.if_not_exists)
            }
            DdlStatement::DropTable(drop) => self.need_owner(role, &drop.name),
            DdlStatement::DropView(drop) => self.need_owner(role, &drop.name),
            other => Err(PrivilegeError::Superuser(
                other.display().to_string().to_ascii_uppercase(),
            )),
        }
    }

    fn need(
        &self,
        role: &SessionRole,
        table: &TableReference,
        privilege: Privilege,
    ) -> Result<(), PrivilegeError> {
        match public_name(table) {
            Some(name) if !self.roles.has_privilege(&role.name, &name, privilege) => {
                Err(PrivilegeError::Table {
                    table: name,
                    privilege,
                    role: role.name.clone(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Checks that `role` owns `table` (changing a table is its owner's right).
    pub(crate) fn need_owner(
        &self,
        role: &SessionRole,
        table: &TableReference,
    ) -> Result<(), PrivilegeError> {
        match public_name(table) {
            Some(name) if !self.roles.owns(&role.name, &name) => {
                Err(PrivilegeError::NotOwner(name))
            }
            Some(_) => Ok(()),
            None => Err(PrivilegeError::Superuser(format!(
                "changing the system table {table}"
            ))),
        }
    }

    fn need_create(
        &self,
        role: &SessionRole,
        table: &TableReference,
        or_replace: bool,
        if_not_exists: bool,
    ) -> Result<(), PrivilegeError> {
        let Some(name) = public_name(table) else {
            return Err(PrivilegeError::Superuser(format!("creating {table}")));
        };
        if !self.roles.may_create(&role.name) {
            return Err(PrivilegeError::Create(name));
        }
        // Replacing a table is dropping it: only its owner may. (Creating over an existing
        // name without OR REPLACE is left to the engine, which reports "already exists".)
        let replaces = or_replace && !if_not_exists && (self.table_exists)(&name);
        if replaces && !self.roles.owns(&role.name, &name) {
            return Err(PrivilegeError::NotOwner(name));
        }
        Ok(())
    }

    fn need_file(&self, location: &str) -> Result<(), PrivilegeError> {
        if self.files.allows(location) {
            Ok(())
        } else {
            Err(PrivilegeError::File(location.to_string()))
        }
    }
}

/// The name of a table in `public` (the schema privileges apply to); `None` for tables
/// of `pg_catalog`, `information_schema` and other catalogs.
pub fn public_name(table: &TableReference) -> Option<String> {
    let resolved = table.clone().resolve(CATALOG, PUBLIC_SCHEMA);
    (resolved.catalog.as_ref() == CATALOG && resolved.schema.as_ref() == PUBLIC_SCHEMA)
        .then(|| resolved.table.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_access_resolves_dot_dot_and_links() {
        let allowed = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let access = FileAccess::new(&[allowed.path().to_path_buf()]).unwrap();
        let inside = allowed.path().join("new").join("out.parquet");
        assert!(access.allows(inside.to_str().unwrap()));
        assert!(access.allows(&format!("file://{}", inside.display())));
        let escape = allowed.path().join("..").join("etc").join("passwd");
        assert!(!access.allows(escape.to_str().unwrap()));
        assert!(!access.allows("/etc/passwd"));
        assert!(!access.allows("s3://bucket/key"));
        #[cfg(unix)]
        {
            let link = allowed.path().join("link");
            std::os::unix::fs::symlink(outside.path(), &link).unwrap();
            assert!(!access.allows(link.join("f.csv").to_str().unwrap()));
        }
        assert!(!FileAccess::default().allows(inside.to_str().unwrap()));
    }

    #[test]
    fn public_names() {
        assert_eq!(
            public_name(&TableReference::bare("products")),
            Some("products".to_string())
        );
        assert_eq!(
            public_name(&TableReference::partial("public", "products")),
            Some("products".to_string())
        );
        assert_eq!(
            public_name(&TableReference::partial("pg_catalog", "pg_class")),
            None
        );
    }
}
