//! PostgreSQL's role statements — `CREATE USER|ROLE`, `ALTER USER|ROLE`, `DROP
//! USER|ROLE`, `GRANT`, `REVOKE` — recognised from sqlparser's tokens and applied to the
//! [`RoleCatalog`]. DataFusion plans none of them, and sqlparser's `CREATE USER` follows
//! Snowflake's grammar, so rankql reads PostgreSQL's forms itself; everything else in a
//! script goes to the engine untouched.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Word};

use super::privileges::{PrivilegeError, SessionRole};
use super::roles::{Privilege, RoleCatalog, RoleError, RoleOptions};
use crate::sqlstate::{self, SqlState};

/// One statement of a script: a role statement for rankql, or SQL for the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptPart {
    /// A role statement.
    Admin(AdminStatement),
    /// Any other statement, as text.
    Sql(String),
}

/// A parsed role statement.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminStatement {
    /// `CREATE USER|ROLE name [WITH] options`; `login` is the statement's default.
    CreateRole {
        /// The new role.
        name: String,
        /// Its options.
        options: RoleOptions,
        /// `CREATE USER` logs in by default, `CREATE ROLE` does not.
        login: bool,
    },
    /// `ALTER USER|ROLE name [WITH] options`.
    AlterRole {
        /// The role.
        name: String,
        /// What changes.
        options: RoleOptions,
    },
    /// `DROP USER|ROLE [IF EXISTS] name, …`.
    DropRoles {
        /// The roles.
        names: Vec<String>,
        /// Whether a missing role is fine.
        if_exists: bool,
    },
    /// `GRANT …` (`grant` true) or `REVOKE …`.
    Grant {
        /// GRANT or REVOKE.
        grant: bool,
        /// What is granted.
        privileges: Vec<Grantable>,
        /// On what.
        target: GrantTarget,
        /// To whom (`public`: every role).
        grantees: Vec<String>,
    },
}

/// A privilege named in `GRANT`/`REVOKE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grantable {
    /// A table privilege.
    Table(Privilege),
    /// `CREATE` (on the schema `public`).
    Create,
    /// `ALL [PRIVILEGES]`.
    All,
}

/// The object of `GRANT`/`REVOKE`.
#[derive(Debug, Clone, PartialEq)]
pub enum GrantTarget {
    /// `[TABLE] t, …`.
    Tables(Vec<String>),
    /// `ALL TABLES IN SCHEMA public`.
    AllTables,
    /// `SCHEMA public`.
    Schema,
}

/// Why a role statement failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// It does not parse.
    #[error("syntax error in {statement}: {reason}")]
    Syntax {
        /// Which statement.
        statement: &'static str,
        /// What was expected.
        reason: String,
    },
    /// The catalog refused the change.
    #[error(transparent)]
    Role(#[from] RoleError),
    /// The session's role may not do it.
    #[error(transparent)]
    Privilege(#[from] PrivilegeError),
    /// A table named in GRANT/REVOKE does not exist.
    #[error("relation \"{0}\" does not exist")]
    NoSuchTable(String),
}

impl SqlState for AdminError {
    fn sqlstate(&self) -> &'static str {
        match self {
            AdminError::Syntax { .. } => sqlstate::SYNTAX_ERROR,
            AdminError::Role(error) => error.sqlstate(),
            AdminError::Privilege(error) => error.sqlstate(),
            AdminError::NoSuchTable(_) => "42P01",
        }
    }
}

impl AdminStatement {
    /// The command tag PostgreSQL answers with.
    pub fn tag(&self) -> &'static str {
        match self {
            AdminStatement::CreateRole { .. } => "CREATE ROLE",
            AdminStatement::AlterRole { .. } => "ALTER ROLE",
            AdminStatement::DropRoles { .. } => "DROP ROLE",
            AdminStatement::Grant { grant: true, .. } => "GRANT",
            AdminStatement::Grant { grant: false, .. } => "REVOKE",
        }
    }

    /// Applies the statement for `role`. `tables` lists the tables of `public` (for
    /// `ALL TABLES IN SCHEMA public` and to check that named tables exist).
    pub fn apply(
        &self,
        role: &SessionRole,
        catalog: &RoleCatalog,
        tables: &[String],
    ) -> Result<(), AdminError> {
        let superuser_only = |what: &str| -> Result<(), AdminError> {
            if role.superuser {
                Ok(())
            } else {
                Err(PrivilegeError::Superuser(what.to_string()).into())
            }
        };
        match self {
            AdminStatement::CreateRole {
                name,
                options,
                login,
            } => {
                superuser_only("CREATE ROLE")?;
                catalog.create_role(name, options, *login)?;
            }
            AdminStatement::AlterRole { name, options } => {
                let own_password =
                    *name == role.name && options.superuser.is_none() && options.login.is_none();
                if !own_password {
                    superuser_only("ALTER ROLE (other than one's own password)")?;
                }
                catalog.alter_role(name, options)?;
            }
            AdminStatement::DropRoles { names, if_exists } => {
                superuser_only("DROP ROLE")?;
                if names.contains(&role.name) {
                    return Err(RoleError::CurrentUser(role.name.clone()).into());
                }
                for name in names {
                    catalog.drop_role(name, *if_exists)?;
                }
            }
            AdminStatement::Grant {
                grant,
                privileges,
                target,
                grantees,
            } => self.apply_grant(role, catalog, tables, *grant, privileges, target, grantees)?,
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_grant(
        &self,
        role: &SessionRole,
        catalog: &RoleCatalog,
        tables: &[String],
        grant: bool,
        privileges: &[Grantable],
        target: &GrantTarget,
        grantees: &[String],
    ) -> Result<(), AdminError> {
        if let GrantTarget::Schema = target {
            if !role.superuser {
                return Err(PrivilegeError::Superuser("GRANT ON SCHEMA".into()).into());
            }
            for grantee in grantees {
                catalog.set_create(grantee, grant)?;
            }
            return Ok(());
        }
        let table_privileges: Vec<Privilege> = if privileges.contains(&Grantable::All) {
            vec![Privilege::Select, Privilege::Insert]
        } else {
            privileges
                .iter()
                .filter_map(|p| match p {
                    Grantable::Table(p) => Some(*p),
                    _ => None,
                })
                .collect()
        };
        let names: Vec<String> = match target {
            GrantTarget::Tables(names) => {
                for name in names {
                    if !tables.contains(name) {
                        return Err(AdminError::NoSuchTable(name.clone()));
                    }
                    if !catalog.owns(&role.name, name) {
                        return Err(PrivilegeError::NotOwner(name.clone()).into());
                    }
                }
                names.clone()
            }
            GrantTarget::AllTables => tables
                .iter()
                .filter(|t| catalog.owns(&role.name, t))
                .cloned()
                .collect(),
            GrantTarget::Schema => Vec::new(),
        };
        if grant {
            catalog.grant(&names, &table_privileges, grantees)?;
        } else {
            catalog.revoke(&names, &table_privileges, grantees)?;
        }
        Ok(())
    }
}

/// Splits `sql` into statements if any of them is a role statement; `None` (the common
/// case, decided without tokenising when no keyword could start one) otherwise.
pub fn parse_script(sql: &str) -> Option<Result<Vec<ScriptPart>, AdminError>> {
    let upper = sql.to_ascii_uppercase();
    if !["USER", "ROLE", "GRANT", "REVOKE"]
        .iter()
        .any(|k| upper.contains(k))
    {
        return None;
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let mut parts = Vec::new();
    let mut any_admin = false;
    for statement in tokens.split(|t| *t == Token::SemiColon) {
        let words: Vec<&Token> = statement
            .iter()
            .filter(|t| !matches!(t, Token::Whitespace(_)))
            .collect();
        if words.is_empty() {
            continue;
        }
        match parse_statement(&words) {
            Some(Ok(admin)) => {
                any_admin = true;
                parts.push(ScriptPart::Admin(admin));
            }
            Some(Err(error)) => return Some(Err(error)),
            None => parts.push(ScriptPart::Sql(
                statement.iter().map(|t| t.to_string()).collect(),
            )),
        }
    }
    any_admin.then_some(Ok(parts))
}

/// A role statement from its tokens (whitespace removed); `None` if it is not one.
fn parse_statement(tokens: &[&Token]) -> Option<Result<AdminStatement, AdminError>> {
    let keyword = |i: usize| match tokens.get(i) {
        Some(Token::Word(word)) => word.keyword,
        _ => Keyword::NoKeyword,
    };
    let role_word = matches!(keyword(1), Keyword::USER | Keyword::ROLE);
    let (statement, rest): (&'static str, _) = match keyword(0) {
        Keyword::CREATE if role_word => ("CREATE ROLE", &tokens[1..]),
        Keyword::ALTER if role_word => ("ALTER ROLE", &tokens[1..]),
        Keyword::DROP if role_word => ("DROP ROLE", &tokens[1..]),
        Keyword::GRANT => ("GRANT", &tokens[1..]),
        Keyword::REVOKE => ("REVOKE", &tokens[1..]),
        _ => return None,
    };
    // `CREATE USER MAPPING` is not a role statement.
    let mapping =
        matches!(tokens.get(2), Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("mapping"));
    if role_word && mapping {
        return None;
    }
    let mut parser = Tokens {
        tokens: rest,
        position: 0,
        statement,
    };
    Some(match keyword(0) {
        Keyword::CREATE => parser.create_role(keyword(1) == Keyword::USER),
        Keyword::ALTER => parser.alter_role(),
        Keyword::DROP => parser.drop_roles(),
        Keyword::GRANT => parser.grant(true),
        _ => parser.grant(false),
    })
}

/// A cursor over one statement's tokens.
struct Tokens<'a> {
    tokens: &'a [&'a Token],
    position: usize,
    statement: &'static str,
}

impl Tokens<'_> {
    fn error(&self, expected: &str) -> AdminError {
        let found = self
            .tokens
            .get(self.position)
            .map_or("the end of the statement".to_string(), |t| {
                format!("\"{t}\"")
            });
        AdminError::Syntax {
            statement: self.statement,
            reason: format!("expected {expected}, found {found}"),
        }
    }

    fn peek_keyword(&self) -> Keyword {
        match self.tokens.get(self.position) {
            Some(Token::Word(word)) => word.keyword,
            _ => Keyword::NoKeyword,
        }
    }

    fn eat(&mut self, keyword: Keyword) -> bool {
        let found = self.peek_keyword() == keyword;
        if found {
            self.position += 1;
        }
        found
    }

    fn eat_token(&mut self, token: &Token) -> bool {
        let found = self.tokens.get(self.position) == Some(&token);
        if found {
            self.position += 1;
        }
        found
    }

    fn done(&self) -> bool {
        self.position >= self.tokens.len()
    }

    fn expect_end(&self) -> Result<(), AdminError> {
        if self.done() {
            Ok(())
        } else {
            Err(self.error("the end of the statement"))
        }
    }

    /// A name: unquoted names fold to lower case, as in PostgreSQL.
    fn name(&mut self) -> Result<String, AdminError> {
        match self.tokens.get(self.position) {
            Some(Token::Word(Word {
                value, quote_style, ..
            })) => {
                self.position += 1;
                Ok(match quote_style {
                    Some(_) => value.clone(),
                    None => value.to_lowercase(),
                })
            }
            _ => Err(self.error("a name")),
        }
    }

    fn names(&mut self) -> Result<Vec<String>, AdminError> {
        let mut names = vec![self.name()?];
        while self.eat_token(&Token::Comma) {
            names.push(self.name()?);
        }
        Ok(names)
    }

    /// A table name, optionally qualified by `public.`.
    fn table_name(&mut self) -> Result<String, AdminError> {
        let first = self.name()?;
        if self.eat_token(&Token::Period) {
            if first != "public" {
                return Err(AdminError::Syntax {
                    statement: self.statement,
                    reason: format!(
                        "privileges exist only on tables of schema public, not {first}"
                    ),
                });
            }
            return self.name();
        }
        Ok(first)
    }

    fn string(&mut self) -> Result<Option<String>, AdminError> {
        let value = match self.tokens.get(self.position) {
            Some(Token::SingleQuotedString(s))
            | Some(Token::EscapedStringLiteral(s))
            | Some(Token::NationalStringLiteral(s)) => Some(s.clone()),
            Some(Token::DollarQuotedString(s)) => Some(s.value.clone()),
            Some(Token::Word(word)) if word.keyword == Keyword::NULL => None,
            _ => return Err(self.error("a quoted password or NULL")),
        };
        self.position += 1;
        Ok(value)
    }

    fn options(&mut self) -> Result<RoleOptions, AdminError> {
        self.eat(Keyword::WITH);
        let mut options = RoleOptions::default();
        while !self.done() {
            let word = match self.tokens.get(self.position) {
                Some(Token::Word(word)) => word.value.to_ascii_uppercase(),
                _ => return Err(self.error("a role option")),
            };
            self.position += 1;
            match word.as_str() {
                "LOGIN" => options.login = Some(true),
                "NOLOGIN" => options.login = Some(false),
                "SUPERUSER" => options.superuser = Some(true),
                "NOSUPERUSER" => options.superuser = Some(false),
                "PASSWORD" => options.password = Some(self.string()?),
                "ENCRYPTED" if self.eat(Keyword::PASSWORD) => {
                    options.password = Some(self.string()?)
                }
                // Accepted for compatibility: rankql has no such capabilities to withhold.
                "INHERIT" | "NOINHERIT" | "NOCREATEDB" | "NOCREATEROLE" | "NOREPLICATION"
                | "NOBYPASSRLS" => {}
                other => {
                    return Err(AdminError::Syntax {
                        statement: self.statement,
                        reason: format!(
                            "role option {other} is not supported (rankql has LOGIN, NOLOGIN, \
                             SUPERUSER, NOSUPERUSER and PASSWORD)"
                        ),
                    })
                }
            }
        }
        Ok(options)
    }

    fn create_role(&mut self, user: bool) -> Result<AdminStatement, AdminError> {
        self.position += 1; // USER or ROLE
        let name = self.name()?;
        let options = self.options()?;
        Ok(AdminStatement::CreateRole {
            name,
            options,
            login: user,
        })
    }

    fn alter_role(&mut self) -> Result<AdminStatement, AdminError> {
        self.position += 1;
        let name = self.name()?;
        let options = self.options()?;
        Ok(AdminStatement::AlterRole { name, options })
    }

    fn drop_roles(&mut self) -> Result<AdminStatement, AdminError> {
        self.position += 1;
        let if_exists = self.eat(Keyword::IF) && self.eat(Keyword::EXISTS);
        let names = self.names()?;
        self.expect_end()?;
        Ok(AdminStatement::DropRoles { names, if_exists })
    }

    fn grant(&mut self, grant: bool) -> Result<AdminStatement, AdminError> {
        let mut privileges = Vec::new();
        loop {
            let privilege = match self.peek_keyword() {
                Keyword::SELECT => Grantable::Table(Privilege::Select),
                Keyword::INSERT => Grantable::Table(Privilege::Insert),
                Keyword::CREATE => Grantable::Create,
                Keyword::ALL => Grantable::All,
                _ => return Err(self.error("SELECT, INSERT, CREATE or ALL")),
            };
            self.position += 1;
            if privilege == Grantable::All {
                self.eat(Keyword::PRIVILEGES);
            }
            privileges.push(privilege);
            if !self.eat_token(&Token::Comma) {
                break;
            }
        }
        if !self.eat(Keyword::ON) {
            return Err(self.error("ON"));
        }
        let target = if self.eat(Keyword::SCHEMA) {
            self.schema_public()?;
            GrantTarget::Schema
        } else if self.peek_keyword() == Keyword::ALL {
            self.position += 1;
            if !(self.eat(Keyword::TABLES) && self.eat(Keyword::IN) && self.eat(Keyword::SCHEMA)) {
                return Err(self.error("TABLES IN SCHEMA"));
            }
            self.schema_public()?;
            GrantTarget::AllTables
        } else {
            self.eat(Keyword::TABLE);
            let mut tables = vec![self.table_name()?];
            while self.eat_token(&Token::Comma) {
                tables.push(self.table_name()?);
            }
            GrantTarget::Tables(tables)
        };
        let on_schema = target == GrantTarget::Schema;
        if on_schema
            != privileges
                .iter()
                .all(|p| *p == Grantable::Create || (on_schema && *p == Grantable::All))
        {
            return Err(AdminError::Syntax {
                statement: self.statement,
                reason:
                    "CREATE is a privilege of SCHEMA public; tables have SELECT, INSERT and ALL"
                        .into(),
            });
        }
        let to = if grant { Keyword::TO } else { Keyword::FROM };
        if !self.eat(to) {
            return Err(self.error(if grant { "TO" } else { "FROM" }));
        }
        let grantees = self.names()?;
        self.expect_end()?;
        Ok(AdminStatement::Grant {
            grant,
            privileges,
            target,
            grantees,
        })
    }

    fn schema_public(&mut self) -> Result<(), AdminError> {
        let schema = self.name()?;
        if schema == "public" {
            Ok(())
        } else {
            Err(AdminError::Syntax {
                statement: self.statement,
                reason: format!("rankql has one schema, public, not {schema}"),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> AdminStatement {
        match parse_script(sql)
            .expect("a role statement")
            .expect("parses")
            .as_slice()
        {
            [ScriptPart::Admin(statement)] => statement.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn role_statements() {
        assert_eq!(
            one("CREATE USER Ann WITH SUPERUSER PASSWORD 'it''s'"),
            AdminStatement::CreateRole {
                name: "ann".into(),
                options: RoleOptions {
                    superuser: Some(true),
                    password: Some(Some("it's".into())),
                    ..RoleOptions::default()
                },
                login: true,
            }
        );
        assert_eq!(
            one("create role \"Readers\" nologin"),
            AdminStatement::CreateRole {
                name: "Readers".into(),
                options: RoleOptions {
                    login: Some(false),
                    ..RoleOptions::default()
                },
                login: false,
            }
        );
        assert_eq!(
            one("ALTER USER bob PASSWORD NULL;"),
            AdminStatement::AlterRole {
                name: "bob".into(),
                options: RoleOptions {
                    password: Some(None),
                    ..RoleOptions::default()
                }
            }
        );
        assert_eq!(
            one("DROP ROLE IF EXISTS a, b"),
            AdminStatement::DropRoles {
                names: vec!["a".into(), "b".into()],
                if_exists: true
            }
        );
        assert_eq!(
            one("GRANT SELECT, INSERT ON TABLE public.products, events TO ann, public"),
            AdminStatement::Grant {
                grant: true,
                privileges: vec![
                    Grantable::Table(Privilege::Select),
                    Grantable::Table(Privilege::Insert)
                ],
                target: GrantTarget::Tables(vec!["products".into(), "events".into()]),
                grantees: vec!["ann".into(), "public".into()],
            }
        );
        assert_eq!(
            one("REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA public FROM ann"),
            AdminStatement::Grant {
                grant: false,
                privileges: vec![Grantable::All],
                target: GrantTarget::AllTables,
                grantees: vec!["ann".into()],
            }
        );
        assert_eq!(
            one("GRANT CREATE ON SCHEMA public TO ann"),
            AdminStatement::Grant {
                grant: true,
                privileges: vec![Grantable::Create],
                target: GrantTarget::Schema,
                grantees: vec!["ann".into()],
            }
        );
    }

    #[test]
    fn other_sql_passes_through() {
        assert!(parse_script("SELECT user_id FROM users").is_none());
        assert!(parse_script("SELECT 'GRANT' AS g").is_none());
        let parts = parse_script("SELECT 1; CREATE USER x PASSWORD 'p'")
            .unwrap()
            .unwrap();
        assert!(matches!(&parts[0], ScriptPart::Sql(sql) if sql.trim() == "SELECT 1"));
        assert!(matches!(&parts[1], ScriptPart::Admin(_)));
    }

    #[test]
    fn errors_name_what_was_expected() {
        for sql in [
            "CREATE USER",
            "CREATE USER x CREATEDB",
            "GRANT SELECT products TO x",
            "GRANT UPDATE ON t TO x",
            "GRANT SELECT ON t",
            "GRANT CREATE ON t TO x",
            "GRANT SELECT ON SCHEMA public TO x",
        ] {
            let error = parse_script(sql).unwrap().unwrap_err();
            assert_eq!(error.sqlstate(), "42601", "{sql}: {error}");
        }
    }
}
