//! rankql's roles in `pg_catalog`, so that psql's `\du`, DBeaver and other tools list the
//! users: `pg_roles` (through datafusion-pg-catalog's provider hook) and `pg_user` (a
//! table of ours beside the catalog's own, which has none). While no user exists, the
//! trusted superuser [`TRUSTED_SUPERUSER`] is listed, as PostgreSQL always lists its
//! bootstrap superuser: `\du` is never empty.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::common::Result;
use datafusion::prelude::SessionContext;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::{
    PgCatalogContextProvider, Role,
};

use crate::pg_catalog_tables::add_catalog_table;
use crate::server::roles::{RoleCatalog, RoleInfo, TRUSTED_SUPERUSER};

/// The role catalog as `pg_catalog.pg_roles` shows it.
#[derive(Debug, Clone)]
pub struct RolesView(pub Arc<RoleCatalog>);

#[async_trait]
impl PgCatalogContextProvider for RolesView {
    async fn roles(&self) -> Vec<String> {
        listed_roles(&self.0)
            .into_iter()
            .map(|role| role.name)
            .collect()
    }

    async fn role(&self, name: &str) -> Option<Role> {
        let role = listed_roles(&self.0)
            .into_iter()
            .find(|role| role.name == name)?;
        Some(Role {
            name: role.name,
            is_superuser: role.superuser,
            can_login: role.login,
            can_create_db: false,
            can_create_role: role.superuser,
            can_create_user: role.superuser,
            can_replication: false,
            grants: Vec::new(),
            inherited_roles: Vec::new(),
        })
    }
}

/// The roles of `catalog`, and the trusted superuser while no user can log in.
fn listed_roles(catalog: &RoleCatalog) -> Vec<RoleInfo> {
    let mut roles = catalog.roles();
    if !catalog.has_users() && !roles.iter().any(|role| role.name == TRUSTED_SUPERUSER) {
        roles.insert(
            0,
            RoleInfo {
                name: TRUSTED_SUPERUSER.to_string(),
                superuser: true,
                login: true,
                has_password: false,
            },
        );
    }
    roles
}

/// Adds `pg_catalog.pg_user` (the roles that can log in) to `context`'s catalog.
pub fn register_pg_user(context: &SessionContext, roles: Arc<RoleCatalog>) -> Result<()> {
    add_catalog_table(
        context,
        "pg_user",
        Box::new(move || pg_user(&listed_roles(&roles))),
    )
}

/// PostgreSQL's `pg_user` columns, from the role catalog (the password is masked, as
/// PostgreSQL masks it).
fn pg_user(roles: &[RoleInfo]) -> Result<Arc<dyn TableProvider>> {
    let users: Vec<&RoleInfo> = roles.iter().filter(|r| r.login).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("usename", DataType::Utf8, false),
        Field::new("usesysid", DataType::Int32, false),
        Field::new("usecreatedb", DataType::Boolean, false),
        Field::new("usesuper", DataType::Boolean, false),
        Field::new("userepl", DataType::Boolean, false),
        Field::new("usebypassrls", DataType::Boolean, false),
        Field::new("passwd", DataType::Utf8, true),
        Field::new("valuntil", DataType::Utf8, true),
        Field::new("useconfig", DataType::Utf8, true),
    ]));
    let flags = |f: &dyn Fn(&RoleInfo) -> bool| -> ArrayRef {
        Arc::new(users.iter().map(|u| Some(f(u))).collect::<BooleanArray>())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            users
                .iter()
                .map(|u| Some(u.name.as_str()))
                .collect::<StringArray>(),
        ),
        // pg_roles reports oid 0 for every role; the same here keeps joins consistent.
        Arc::new(Int32Array::from(vec![0; users.len()])),
        flags(&|_| false),
        flags(&|u| u.superuser),
        flags(&|_| false),
        flags(&|u| u.superuser),
        Arc::new(
            users
                .iter()
                .map(|u| u.has_password.then_some("********"))
                .collect::<StringArray>(),
        ),
        Arc::new(StringArray::from(vec![None::<&str>; users.len()])),
        Arc::new(StringArray::from(vec![None::<&str>; users.len()])),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}
