//! The role catalog: users, their password secrets, superuser flags, table owners and
//! grants. It lives in `<data-dir>/roles.json` (mode 0600), rewritten atomically (a new
//! file, fsynced, renamed over the old one) so a `kill -9` leaves either the old or the
//! new catalog, never half of one.
//!
//! Passwords are never stored: a role keeps the SCRAM-SHA-256 salt, iteration count and
//! salted password (RFC 5802's `SaltedPassword`), which is what the SCRAM exchange needs
//! and from which the password cannot be read back.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use parking_lot::RwLock;
use pgwire::api::auth::sasl::scram::gen_salted_password;
use serde::{Deserialize, Serialize};

use crate::sqlstate::{self, SqlState};

/// The role catalog's file in the data directory.
pub const ROLES_FILE: &str = "roles.json";

/// PBKDF2 iterations of a stored password: PostgreSQL's default (`scram_iterations`).
pub const SCRAM_ITERATIONS: usize = 4096;

/// A privilege on a table (or, for `Create`, on the schema `public`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Privilege {
    /// Read the table (`SELECT`, `COPY … TO STDOUT`, a scan inside any statement).
    Select,
    /// Add rows (`INSERT`, `COPY … FROM STDIN`).
    Insert,
}

impl std::fmt::Display for Privilege {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
        })
    }
}

/// Why a change to the role catalog was refused or could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    /// The role does not exist.
    #[error("role \"{0}\" does not exist")]
    UnknownRole(String),
    /// A role of that name exists already.
    #[error("role \"{0}\" already exists")]
    DuplicateRole(String),
    /// A role name must be a plain, non-empty name.
    #[error("invalid role name \"{0}\": use letters, digits and _ (at most 63 characters)")]
    BadName(String),
    /// An empty password would let anyone in.
    #[error("empty password for role \"{0}\": give a non-empty password")]
    EmptyPassword(String),
    /// The last superuser with a password cannot be dropped or demoted: nobody could
    /// manage roles afterwards.
    #[error("role \"{0}\" is the last superuser who can log in; create another first")]
    LastSuperuser(String),
    /// A session cannot drop the role it runs as.
    #[error("current user \"{0}\" cannot be dropped")]
    CurrentUser(String),
    /// The catalog file could not be read or written.
    #[error("role catalog {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The catalog file is not valid.
    #[error("role catalog {path} is damaged: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl SqlState for RoleError {
    fn sqlstate(&self) -> &'static str {
        match self {
            RoleError::UnknownRole(_) => sqlstate::UNDEFINED_OBJECT,
            RoleError::DuplicateRole(_) => sqlstate::DUPLICATE_OBJECT,
            RoleError::BadName(_) => sqlstate::INVALID_NAME,
            RoleError::EmptyPassword(_) => sqlstate::INVALID_PARAMETER_VALUE,
            RoleError::LastSuperuser(_) | RoleError::CurrentUser(_) => sqlstate::OBJECT_IN_USE,
            RoleError::Io { .. } | RoleError::Corrupt { .. } => sqlstate::IO_ERROR,
        }
    }
}

/// A role's SCRAM-SHA-256 secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ScramSecret {
    iterations: usize,
    /// Base64.
    salt: String,
    /// Base64 of `Hi(password, salt, iterations)`.
    salted_password: String,
}

/// One role as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RoleEntry {
    superuser: bool,
    login: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<ScramSecret>,
    /// `CREATE` on the schema `public`: may create tables and views.
    #[serde(default)]
    create: bool,
}

/// A table's owner and grants.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TableAcl {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    #[serde(default)]
    grants: BTreeMap<String, BTreeSet<Privilege>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CatalogFile {
    #[serde(default)]
    roles: BTreeMap<String, RoleEntry>,
    #[serde(default)]
    tables: BTreeMap<String, TableAcl>,
}

/// What `CREATE ROLE` / `ALTER ROLE` set; `None` leaves a setting as it is (or at its
/// default on creation).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoleOptions {
    /// `SUPERUSER` / `NOSUPERUSER`.
    pub superuser: Option<bool>,
    /// `LOGIN` / `NOLOGIN`.
    pub login: Option<bool>,
    /// `PASSWORD '…'` (`Some(Some(_))`) or `PASSWORD NULL` (`Some(None)`).
    pub password: Option<Option<String>>,
}

/// The superuser that `pg_roles` lists while no user exists and loopback clients are
/// trusted as superusers; also the user name of a client that names none.
pub const TRUSTED_SUPERUSER: &str = "rankql";

/// A role as `pg_roles` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleInfo {
    /// Its name.
    pub name: String,
    /// Whether it bypasses every privilege check.
    pub superuser: bool,
    /// Whether it may log in.
    pub login: bool,
    /// Whether it has a password.
    pub has_password: bool,
}

/// The role catalog shared by every connection (and by `rankql user add`).
#[derive(Debug)]
pub struct RoleCatalog {
    path: Option<PathBuf>,
    state: RwLock<CatalogFile>,
}

impl RoleCatalog {
    /// Opens the catalog of `data_dir` (empty if it has none yet); `None` keeps an empty
    /// catalog in memory (`--in-memory`: no users, so only loopback is trusted).
    pub fn open(data_dir: Option<&Path>) -> Result<Self, RoleError> {
        let Some(dir) = data_dir else {
            return Ok(Self {
                path: None,
                state: RwLock::new(CatalogFile::default()),
            });
        };
        let path = dir.join(ROLES_FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| RoleError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => CatalogFile::default(),
            Err(source) => return Err(RoleError::Io { path, source }),
        };
        Ok(Self {
            path: Some(path),
            state: RwLock::new(state),
        })
    }

    /// Whether any role can log in with a password. Until one can, loopback clients are
    /// trusted and others refused; from then on every client authenticates.
    pub fn has_users(&self) -> bool {
        self.state
            .read()
            .roles
            .values()
            .any(|r| r.login && r.password.is_some())
    }

    /// Whether `name` is a superuser (unknown roles are not).
    pub fn is_superuser(&self, name: &str) -> bool {
        self.state
            .read()
            .roles
            .get(name)
            .is_some_and(|r| r.superuser)
    }

    /// The SCRAM salt and salted password of a role that may log in.
    pub fn scram_secret(&self, name: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        let state = self.state.read();
        let role = state.roles.get(name).filter(|r| r.login)?;
        let secret = role.password.as_ref()?;
        Some((
            BASE64.decode(&secret.salt).ok()?,
            BASE64.decode(&secret.salted_password).ok()?,
        ))
    }

    /// Every role, by name.
    pub fn roles(&self) -> Vec<RoleInfo> {
        self.state
            .read()
            .roles
            .iter()
            .map(|(name, role)| RoleInfo {
                name: name.clone(),
                superuser: role.superuser,
                login: role.login,
                has_password: role.password.is_some(),
            })
            .collect()
    }

    /// `CREATE ROLE name …` (`login` is the default of the statement: true for `CREATE
    /// USER`).
    pub fn create_role(
        &self,
        name: &str,
        options: &RoleOptions,
        login: bool,
    ) -> Result<(), RoleError> {
        check_name(name)?;
        self.change(|catalog| {
            if catalog.roles.contains_key(name) {
                return Err(RoleError::DuplicateRole(name.to_string()));
            }
            let mut role = RoleEntry {
                login,
                ..RoleEntry::default()
            };
            apply(name, &mut role, options)?;
            catalog.roles.insert(name.to_string(), role);
            Ok(())
        })
    }

    /// `ALTER ROLE name …`.
    pub fn alter_role(&self, name: &str, options: &RoleOptions) -> Result<(), RoleError> {
        self.change(|catalog| {
            let role = catalog
                .roles
                .get_mut(name)
                .ok_or_else(|| RoleError::UnknownRole(name.to_string()))?;
            apply(name, role, options)?;
            check_a_superuser_remains(catalog, name)
        })
    }

    /// `DROP ROLE name`: also forgets its grants; tables it owned pass to superusers.
    pub fn drop_role(&self, name: &str, if_exists: bool) -> Result<(), RoleError> {
        self.change(|catalog| {
            if catalog.roles.remove(name).is_none() {
                return if if_exists {
                    Ok(())
                } else {
                    Err(RoleError::UnknownRole(name.to_string()))
                };
            }
            check_a_superuser_remains(catalog, name)?;
            for acl in catalog.tables.values_mut() {
                acl.grants.remove(name);
                if acl.owner.as_deref() == Some(name) {
                    acl.owner = None;
                }
            }
            Ok(())
        })
    }

    /// Whether `role` holds `privilege` on `table` (as owner, superuser, by a grant to it
    /// or to `PUBLIC`).
    pub fn has_privilege(&self, role: &str, table: &str, privilege: Privilege) -> bool {
        let state = self.state.read();
        if state.roles.get(role).is_some_and(|r| r.superuser) {
            return true;
        }
        state.tables.get(table).is_some_and(|acl| {
            acl.owner.as_deref() == Some(role)
                || [role, "public"].iter().any(|grantee| {
                    acl.grants
                        .get(*grantee)
                        .is_some_and(|set| set.contains(&privilege))
                })
        })
    }

    /// Whether `role` owns `table` (superusers count as owners of everything).
    pub fn owns(&self, role: &str, table: &str) -> bool {
        let state = self.state.read();
        state.roles.get(role).is_some_and(|r| r.superuser)
            || state
                .tables
                .get(table)
                .is_some_and(|acl| acl.owner.as_deref() == Some(role))
    }

    /// Whether `role` may create tables and views in `public`.
    pub fn may_create(&self, role: &str) -> bool {
        self.state
            .read()
            .roles
            .get(role)
            .is_some_and(|r| r.superuser || r.create)
    }

    /// `GRANT|REVOKE CREATE ON SCHEMA public TO|FROM role`.
    pub fn set_create(&self, role: &str, allowed: bool) -> Result<(), RoleError> {
        self.change(|catalog| {
            let entry = catalog
                .roles
                .get_mut(role)
                .ok_or_else(|| RoleError::UnknownRole(role.to_string()))?;
            entry.create = allowed;
            Ok(())
        })
    }

    /// `GRANT privileges ON tables TO grantees` (`public` is every role).
    pub fn grant(
        &self,
        tables: &[String],
        privileges: &[Privilege],
        grantees: &[String],
    ) -> Result<(), RoleError> {
        self.change_grants(tables, privileges, grantees, true)
    }

    /// `REVOKE privileges ON tables FROM grantees`.
    pub fn revoke(
        &self,
        tables: &[String],
        privileges: &[Privilege],
        grantees: &[String],
    ) -> Result<(), RoleError> {
        self.change_grants(tables, privileges, grantees, false)
    }

    fn change_grants(
        &self,
        tables: &[String],
        privileges: &[Privilege],
        grantees: &[String],
        grant: bool,
    ) -> Result<(), RoleError> {
        self.change(|catalog| {
            known_grantees(catalog, grantees)?;
            for table in tables {
                let acl = catalog.tables.entry(table.clone()).or_default();
                for grantee in grantees {
                    let held = acl.grants.entry(grantee.clone()).or_default();
                    if grant {
                        held.extend(privileges.iter().copied());
                    } else {
                        held.retain(|p| !privileges.contains(p));
                    }
                }
                acl.grants.retain(|_, held| !held.is_empty());
            }
            Ok(())
        })
    }

    /// Records the creator of a new table as its owner, replacing any earlier grants
    /// (a table made again under an old name does not inherit the old one's grants).
    pub fn table_created(&self, table: &str, owner: &str) -> Result<(), RoleError> {
        self.change(|catalog| {
            catalog.tables.insert(
                table.to_string(),
                TableAcl {
                    owner: Some(owner.to_string()),
                    grants: BTreeMap::new(),
                },
            );
            Ok(())
        })
    }

    /// Forgets a dropped table's owner and grants.
    pub fn table_dropped(&self, table: &str) -> Result<(), RoleError> {
        self.change(|catalog| {
            catalog.tables.remove(table);
            Ok(())
        })
    }

    /// Applies `edit` to a copy of the catalog, stores the copy, then publishes it: a
    /// change that fails to be stored is not applied.
    fn change(
        &self,
        edit: impl FnOnce(&mut CatalogFile) -> Result<(), RoleError>,
    ) -> Result<(), RoleError> {
        let mut state = self.state.write();
        let mut next = state.clone();
        edit(&mut next)?;
        if let Some(path) = &self.path {
            store(path, &next)?;
        }
        *state = next;
        Ok(())
    }
}

fn check_name(name: &str) -> Result<(), RoleError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name != "public"
        && name.chars().all(|c| c.is_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(RoleError::BadName(name.to_string()))
    }
}

fn apply(name: &str, role: &mut RoleEntry, options: &RoleOptions) -> Result<(), RoleError> {
    if let Some(superuser) = options.superuser {
        role.superuser = superuser;
    }
    if let Some(login) = options.login {
        role.login = login;
    }
    match &options.password {
        Some(Some(password)) if password.is_empty() => {
            return Err(RoleError::EmptyPassword(name.to_string()))
        }
        Some(Some(password)) => role.password = Some(scram_secret(password)),
        Some(None) => role.password = None,
        None => {}
    }
    Ok(())
}

/// A role change must leave a superuser who can log in, once there was one: otherwise
/// nobody could manage roles again (short of editing the file by hand).
fn check_a_superuser_remains(catalog: &CatalogFile, changed: &str) -> Result<(), RoleError> {
    let any_user = catalog
        .roles
        .values()
        .any(|r| r.login && r.password.is_some());
    let admin = catalog
        .roles
        .values()
        .any(|r| r.superuser && r.login && r.password.is_some());
    if any_user && !admin {
        return Err(RoleError::LastSuperuser(changed.to_string()));
    }
    Ok(())
}

fn known_grantees(catalog: &CatalogFile, grantees: &[String]) -> Result<(), RoleError> {
    match grantees
        .iter()
        .find(|g| g.as_str() != "public" && !catalog.roles.contains_key(g.as_str()))
    {
        Some(unknown) => Err(RoleError::UnknownRole(unknown.clone())),
        None => Ok(()),
    }
}

fn scram_secret(password: &str) -> ScramSecret {
    let salt: [u8; 16] = rand::random();
    ScramSecret {
        iterations: SCRAM_ITERATIONS,
        salt: BASE64.encode(salt),
        salted_password: BASE64.encode(gen_salted_password(password, &salt, SCRAM_ITERATIONS)),
    }
}

/// Writes the catalog to a new file (mode 0600), fsyncs it, renames it over the old one
/// and fsyncs the directory.
fn store(path: &Path, catalog: &CatalogFile) -> Result<(), RoleError> {
    let io = |source| RoleError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(catalog).map_err(|e| RoleError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let temporary = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&temporary).map_err(io)?;
    file.write_all(&bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> RoleOptions {
        RoleOptions {
            superuser: Some(true),
            password: Some(Some("secret".into())),
            ..RoleOptions::default()
        }
    }

    #[test]
    fn users_survive_reopening_and_secrets_are_not_plain_text() {
        let dir = tempfile::tempdir().unwrap();
        let roles = RoleCatalog::open(Some(dir.path())).unwrap();
        assert!(!roles.has_users());
        roles.create_role("admin", &admin(), true).unwrap();
        let reader = RoleOptions {
            password: Some(Some("reader-pw".into())),
            ..RoleOptions::default()
        };
        roles.create_role("reader", &reader, true).unwrap();
        let text = std::fs::read_to_string(dir.path().join(ROLES_FILE)).unwrap();
        assert!(
            !text.contains("secret") && !text.contains("reader-pw"),
            "{text}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(ROLES_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let reopened = RoleCatalog::open(Some(dir.path())).unwrap();
        assert!(reopened.has_users());
        assert!(reopened.is_superuser("admin"));
        assert!(!reopened.is_superuser("reader"));
        let (salt, salted) = reopened.scram_secret("reader").unwrap();
        assert_eq!(
            salted,
            gen_salted_password("reader-pw", &salt, SCRAM_ITERATIONS)
        );
    }

    #[test]
    fn grants_owners_and_public() {
        let roles = RoleCatalog::open(None).unwrap();
        roles.create_role("admin", &admin(), true).unwrap();
        roles
            .create_role("ann", &RoleOptions::default(), true)
            .unwrap();
        roles
            .create_role("bob", &RoleOptions::default(), true)
            .unwrap();
        let t = vec!["products".to_string()];
        assert!(!roles.has_privilege("ann", "products", Privilege::Select));
        roles
            .grant(&t, &[Privilege::Select], &["ann".into()])
            .unwrap();
        assert!(roles.has_privilege("ann", "products", Privilege::Select));
        assert!(!roles.has_privilege("ann", "products", Privilege::Insert));
        assert!(!roles.has_privilege("bob", "products", Privilege::Select));
        roles
            .grant(&t, &[Privilege::Select], &["public".into()])
            .unwrap();
        assert!(roles.has_privilege("bob", "products", Privilege::Select));
        roles
            .revoke(&t, &[Privilege::Select], &["public".into(), "ann".into()])
            .unwrap();
        assert!(!roles.has_privilege("ann", "products", Privilege::Select));
        roles.table_created("mine", "bob").unwrap();
        assert!(roles.owns("bob", "mine") && roles.owns("admin", "mine"));
        assert!(roles.has_privilege("bob", "mine", Privilege::Insert));
        assert!(matches!(
            roles.grant(&t, &[Privilege::Select], &["nobody".into()]),
            Err(RoleError::UnknownRole(_))
        ));
    }

    #[test]
    fn the_last_superuser_stays() {
        let roles = RoleCatalog::open(None).unwrap();
        roles.create_role("admin", &admin(), true).unwrap();
        let reader = RoleOptions {
            password: Some(Some("reader-pw".into())),
            ..RoleOptions::default()
        };
        roles.create_role("reader", &reader, true).unwrap();
        assert!(matches!(
            roles.drop_role("admin", false),
            Err(RoleError::LastSuperuser(_))
        ));
        let demote = RoleOptions {
            superuser: Some(false),
            ..RoleOptions::default()
        };
        assert!(roles.alter_role("admin", &demote).is_err());
        assert!(
            roles.is_superuser("admin"),
            "a refused change is not applied"
        );
        assert!(matches!(
            roles.create_role("admin", &admin(), true),
            Err(RoleError::DuplicateRole(_))
        ));
        assert!(matches!(
            roles.create_role("bad name", &admin(), true),
            Err(RoleError::BadName(_))
        ));
    }
}
