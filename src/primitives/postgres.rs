//! The `postgres` primitive family: roles with passwords, databases with an owner, encoding
//! and collation, parameterised queries, row counts and existence checks.
//!
//! masrun speaks the PostgreSQL protocol itself (tokio-postgres) over a byte stream that the
//! host connection opens ([`Transport::connect_stream`]) to the server's Unix socket on the
//! host, or to a TCP address as the host resolves it. The playbook's `matrix-postgres` container shares
//! its socket directory with the host (`postgres_run_path`), so it is reached the same way,
//! with no client program on the host or in the container.
//!
//! Passwords never appear in a message, a diff, a log line or an argument: a role's password
//! is compared with the server's SCRAM verifier on the controller, and a new one is sent as a
//! SCRAM verifier computed on the controller, never as plain text.
//!
//! [`Transport::connect_stream`]: crate::transport::Transport::connect_stream

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::BytesMut;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, Row};

use super::{Outcome, PrimitiveError, Result};
use crate::run::host::HostContext;
use crate::transport::{StreamTarget, TransportError};

/// How long opening a session (stream, startup and authentication) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach the server and as whom. Every field is optional: a missing one comes from the
/// host's variables (`masrun_postgres_connection_socket_dir`, `postgres_connection_hostname`,
/// `postgres_connection_port`, `postgres_connection_username`, `postgres_connection_password`,
/// `postgres_db_name`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionOptions {
    /// The directory of the server's Unix socket on the host. It wins over `host`.
    #[serde(default)]
    pub socket_dir: Option<PathBuf>,
    /// A TCP address as the host resolves it.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub database: Option<String>,
}

/// A resolved connection: where, as whom, to which database.
#[derive(Clone)]
pub struct Target {
    stream: StreamTarget,
    port: u16,
    user: String,
    password: String,
    database: String,
}

impl Target {
    /// Names the server, database and role for messages; never the password.
    fn describe(&self) -> String {
        let place = match &self.stream {
            StreamTarget::Unix(path) => format!("socket {}", path.display()),
            StreamTarget::Tcp { host, port } => format!("{host}:{port}"),
        };
        format!(
            "PostgreSQL at {place} (port {}, database {}, role {})",
            self.port, self.database, self.user
        )
    }

    fn cache_key(&self) -> String {
        // The password is part of the key, so a changed password opens a new session instead
        // of reusing one that authenticated with the old password.
        let password_hash = hex(&Sha256::digest(self.password.as_bytes()));
        format!(
            "{}|{}|{}|{password_hash}",
            self.stream, self.user, self.database
        )
    }

    fn with_session(&self, user: &str, password: &str) -> Target {
        Target {
            user: user.to_string(),
            password: password.to_string(),
            ..self.clone()
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn variable(ctx: &HostContext, name: &str) -> Result<Option<String>> {
    let value = ctx
        .vars
        .try_get(name)
        .map_err(|error| PrimitiveError::InvalidOption(error.to_string()))?;
    Ok(match value {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text),
        Some(other) => Some(other.to_string()),
    })
}

fn required(ctx: &HostContext, option: Option<&String>, name: &str, what: &str) -> Result<String> {
    if let Some(value) = option {
        return Ok(value.clone());
    }
    match variable(ctx, name)? {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(PrimitiveError::InvalidOption(format!(
            "{name} is not set; masrun needs {what} to connect to PostgreSQL (or pass it in \
             the step's connection map)"
        ))),
    }
}

/// Resolves a connection from the options, falling back to the host's variables.
pub fn resolve(ctx: &HostContext, options: Option<&ConnectionOptions>) -> Result<Target> {
    let empty = ConnectionOptions::default();
    let options = options.unwrap_or(&empty);

    let port = match options.port {
        Some(port) => port,
        None => {
            let text = required(ctx, None, "postgres_connection_port", "the server's port")?;
            text.parse().map_err(|_| {
                PrimitiveError::InvalidOption(format!(
                    "postgres_connection_port must be a port number (got {text:?})"
                ))
            })?
        }
    };

    // An explicit host in the options means TCP, even if the variables name a socket.
    let socket_dir = match (&options.socket_dir, &options.host) {
        (Some(dir), _) => Some(dir.clone()),
        (None, Some(_)) => None,
        (None, None) => variable(ctx, "masrun_postgres_connection_socket_dir")?
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from),
    };
    let stream = match socket_dir {
        Some(dir) => StreamTarget::Unix(dir.join(format!(".s.PGSQL.{port}"))),
        None => StreamTarget::Tcp {
            host: required(
                ctx,
                options.host.as_ref(),
                "postgres_connection_hostname",
                "the server's address",
            )?,
            port,
        },
    };

    let password = required(
        ctx,
        options.password.as_ref(),
        "postgres_connection_password",
        "the superuser's password",
    )?;
    ctx.reporter.add_secret(&password);
    Ok(Target {
        stream,
        port,
        user: required(
            ctx,
            options.user.as_ref(),
            "postgres_connection_username",
            "the superuser's name",
        )?,
        password,
        database: required(
            ctx,
            options.database.as_ref(),
            "postgres_db_name",
            "a database to connect to",
        )?,
    })
}

/// Formats the server's error in its own words, with SQLSTATE, detail and hint.
fn describe_error(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(detail) = db.detail() {
            text.push_str(&format!("; detail: {detail}"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!("; hint: {hint}"));
        }
        return text;
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn failure(ctx: &HostContext, target: &Target, action: &str, detail: &str) -> PrimitiveError {
    PrimitiveError::Failed(format!(
        "{action} failed on {}, {}: {detail}",
        ctx.name,
        target.describe()
    ))
}

/// Why talking to the server failed.
enum SessionError {
    /// The host connection failed, or the operator interrupted the step.
    Transport(TransportError),
    Server(tokio_postgres::Error),
    Timeout,
}

impl From<TransportError> for SessionError {
    fn from(error: TransportError) -> SessionError {
        SessionError::Transport(error)
    }
}

impl SessionError {
    /// Turns the error into the step's failure. An interrupt or an unreachable host keeps its
    /// meaning for the run; anything else names the target and the server's words.
    fn into_failure(self, ctx: &HostContext, target: &Target, action: &str) -> PrimitiveError {
        match self {
            SessionError::Transport(error)
                if error.is_unreachable() || matches!(error, TransportError::Interrupted) =>
            {
                PrimitiveError::Transport(error)
            }
            SessionError::Transport(error) => failure(ctx, target, action, &error.to_string()),
            SessionError::Server(error) => failure(ctx, target, action, &describe_error(&error)),
            SessionError::Timeout => failure(
                ctx,
                target,
                action,
                &format!("no answer within {} seconds", CONNECT_TIMEOUT.as_secs()),
            ),
        }
    }
}

/// Waits for a request to the server from the script's thread.
fn wait<T>(
    ctx: &HostContext,
    request: impl std::future::Future<Output = std::result::Result<T, tokio_postgres::Error>>,
) -> std::result::Result<T, SessionError> {
    ctx.block_on(async { request.await.map_err(SessionError::Server) })
}

/// Opens a session, or returns why it could not.
async fn open(ctx: &HostContext, target: &Target) -> std::result::Result<Client, SessionError> {
    let stream = ctx.transport.connect_stream(&target.stream).await?;
    let mut config = tokio_postgres::Config::new();
    config
        .user(&target.user)
        .password(&target.password)
        .dbname(&target.database)
        .application_name("masrun");
    let (client, connection) = config
        .connect_raw(stream, NoTls)
        .await
        .map_err(SessionError::Server)?;
    let host = ctx.name.clone();
    ctx.runtime.spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(host = %host, error = %describe_error(&error), "PostgreSQL session ended");
        }
    });
    Ok(client)
}

fn open_with_timeout(
    ctx: &HostContext,
    target: &Target,
) -> std::result::Result<Client, SessionError> {
    ctx.block_on(async {
        tokio::time::timeout(CONNECT_TIMEOUT, open(ctx, target))
            .await
            .unwrap_or(Err(SessionError::Timeout))
    })
}

/// Returns a session for `target`, reusing one this host opened earlier in the run.
fn connect(ctx: &HostContext, target: &Target) -> Result<Arc<Client>> {
    let key = target.cache_key();
    if let Some(client) = ctx.postgres_client(&key) {
        return Ok(client);
    }
    let client = open_with_timeout(ctx, target)
        .map_err(|error| error.into_failure(ctx, target, "connecting"))?;
    let client = Arc::new(client);
    ctx.keep_postgres_client(&key, client.clone());
    Ok(client)
}

/// Runs statements whose text masrun built (quoted names, no parameters).
fn simple(
    ctx: &HostContext,
    client: &Client,
    target: &Target,
    action: &str,
    sql: &str,
) -> Result<()> {
    wait(ctx, client.batch_execute(sql)).map_err(|error| error.into_failure(ctx, target, action))
}

fn query_rows(
    ctx: &HostContext,
    client: &Client,
    target: &Target,
    action: &str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>> {
    wait(ctx, client.query(sql, params)).map_err(|error| error.into_failure(ctx, target, action))
}

/// Quotes an identifier (a role or database name) for SQL text.
pub fn quote_identifier(name: &str) -> Result<String> {
    if name.is_empty() || name.contains('\0') {
        return Err(PrimitiveError::InvalidOption(format!(
            "invalid PostgreSQL name {name:?}"
        )));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// Quotes a string literal for SQL text (standard_conforming_strings, on since PostgreSQL 9.1).
fn quote_literal(text: &str) -> Result<String> {
    if text.contains('\0') {
        return Err(PrimitiveError::InvalidOption(
            "PostgreSQL strings cannot contain NUL characters".into(),
        ));
    }
    Ok(format!("'{}'", text.replace('\'', "''")))
}

/// Normalises the password as SCRAM-SHA-256 does before hashing (SASLprep, RFC 4013), the way
/// the server and libpq do. A password that SASLprep rejects is used as it is.
fn normalize_password(password: &str) -> Vec<u8> {
    match stringprep::saslprep(password) {
        Ok(prepared) => prepared.into_owned().into_bytes(),
        Err(_) => password.as_bytes().to_vec(),
    }
}

/// Returns whether `password` matches a stored SCRAM-SHA-256 verifier
/// (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, RFC 5803). Any other stored
/// form (MD5, none) does not match, so the password is set again as SCRAM.
pub fn scram_matches(verifier: &str, password: &str) -> bool {
    let parsed = (|| {
        let rest = verifier.strip_prefix("SCRAM-SHA-256$")?;
        let (parameters, keys) = rest.split_once('$')?;
        let (iterations, salt) = parameters.split_once(':')?;
        let (stored_key, server_key) = keys.split_once(':')?;
        let base64 = base64::engine::general_purpose::STANDARD;
        Some((
            iterations.parse::<u32>().ok()?,
            base64.decode(salt).ok()?,
            base64.decode(stored_key).ok()?,
            base64.decode(server_key).ok()?,
        ))
    })();
    let Some((iterations, salt, stored_key, server_key)) = parsed else {
        return false;
    };

    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(
        &normalize_password(password),
        &salt,
        iterations,
        &mut salted,
    );
    let hmac = |key: &[u8], message: &[u8]| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(message);
        mac.finalize().into_bytes()
    };
    let client_key = hmac(&salted, b"Client Key");
    let computed_stored = Sha256::digest(client_key);
    let computed_server = hmac(&salted, b"Server Key");
    computed_stored.as_slice() == stored_key.as_slice()
        && computed_server.as_slice() == server_key.as_slice()
}

/// Builds the statement fragment that sets a password to a SCRAM verifier made on the
/// controller, so the plain password never reaches the server's logs.
fn password_clause(password: &str) -> Result<String> {
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    Ok(format!("PASSWORD {}", quote_literal(&verifier)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleOptions {
    pub role: String,
    /// The role's password; set only when the server's verifier does not match it.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default = "default_true")]
    pub login: bool,
    #[serde(default)]
    pub connection: Option<ConnectionOptions>,
    #[serde(default)]
    pub name: Option<String>,
}

fn default_true() -> bool {
    true
}

/// A role's login flag and password verifier, as far as the session may read them.
struct RoleRow {
    can_login: bool,
    /// `None` when the session may not read `pg_authid` (not a superuser).
    verifier: Option<Option<String>>,
}

fn read_role(
    ctx: &HostContext,
    client: &Client,
    target: &Target,
    role: &str,
) -> Result<Option<RoleRow>> {
    let authid = wait(
        ctx,
        client.query(
            "SELECT rolcanlogin, rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1",
            &[&role],
        ),
    );
    match authid {
        Ok(rows) => Ok(rows.first().map(|row| RoleRow {
            can_login: row.get(0),
            verifier: Some(row.get(1)),
        })),
        Err(SessionError::Server(error))
            if error.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
        {
            let rows = query_rows(
                ctx,
                client,
                target,
                "reading roles",
                "SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = $1",
                &[&role],
            )?;
            Ok(rows.first().map(|row| RoleRow {
                can_login: row.get(0),
                verifier: None,
            }))
        }
        Err(error) => Err(error.into_failure(ctx, target, "reading roles")),
    }
}

/// Returns whether the role's current password is `password`, from the verifier when the
/// session can read it, otherwise by authenticating as the role.
fn password_matches(ctx: &HostContext, target: &Target, role: &RoleOptions, row: &RoleRow) -> bool {
    let Some(password) = &role.password else {
        return true;
    };
    match &row.verifier {
        Some(Some(verifier)) => scram_matches(verifier, password),
        Some(None) => false,
        None => open_with_timeout(ctx, &target.with_session(&role.role, password)).is_ok(),
    }
}

/// Ensures a role exists with LOGIN (or NOLOGIN) and the given password, changing only what
/// differs. The password is compared and never shown, and messages state only whether it
/// changed.
pub fn ensure_role(ctx: &HostContext, options: &RoleOptions) -> Result<Outcome> {
    let target = resolve(ctx, options.connection.as_ref())?;
    if let Some(password) = &options.password {
        ctx.reporter.add_secret(password);
    }
    let role = quote_identifier(&options.role)?;
    let login = if options.login { "LOGIN" } else { "NOLOGIN" };
    let client = connect(ctx, &target)?;

    let Some(row) = read_role(ctx, &client, &target, &options.role)? else {
        if !ctx.check_mode() {
            let mut sql = format!("CREATE ROLE {role} WITH {login}");
            if let Some(password) = &options.password {
                sql.push_str(&format!(" {}", password_clause(password)?));
            }
            simple(
                ctx,
                &client,
                &target,
                &format!("creating role {}", options.role),
                &sql,
            )?;
        }
        return Ok(Outcome::changed().with_message("created role"));
    };

    let mut changes = Vec::new();
    let mut clauses = Vec::new();
    if row.can_login != options.login {
        changes.push(format!("set {login}"));
        clauses.push(login.to_string());
    }
    if !password_matches(ctx, &target, options, &row) {
        changes.push("changed the password".to_string());
        let password = options.password.as_deref().unwrap_or_default();
        clauses.push(password_clause(password)?);
    }
    if changes.is_empty() {
        return Ok(Outcome::unchanged());
    }
    if !ctx.check_mode() {
        let sql = format!("ALTER ROLE {role} WITH {}", clauses.join(" "));
        simple(
            ctx,
            &client,
            &target,
            &format!("altering role {}", options.role),
            &sql,
        )?;
    }
    Ok(Outcome::changed().with_message(changes.join(", ")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseOptions {
    pub database: String,
    pub owner: String,
    #[serde(default = "default_encoding")]
    pub encoding: String,
    #[serde(default = "default_locale")]
    pub lc_collate: String,
    #[serde(default = "default_locale")]
    pub lc_ctype: String,
    #[serde(default)]
    pub connection: Option<ConnectionOptions>,
    #[serde(default)]
    pub name: Option<String>,
}

fn default_encoding() -> String {
    "UTF8".into()
}

fn default_locale() -> String {
    "C".into()
}

/// Ensures a database exists with the owner, encoding and collation given (by default UTF8
/// and C, created from template0, as Synapse and MAS want). An existing database gets its
/// owner fixed; a different encoding or collation is an error, since only recreating the
/// database changes them.
pub fn ensure_database(ctx: &HostContext, options: &DatabaseOptions) -> Result<Outcome> {
    let target = resolve(ctx, options.connection.as_ref())?;
    let database = quote_identifier(&options.database)?;
    let owner = quote_identifier(&options.owner)?;
    let client = connect(ctx, &target)?;

    let rows = query_rows(
        ctx,
        &client,
        &target,
        "reading databases",
        "SELECT pg_catalog.pg_get_userbyid(datdba)::text, \
         pg_catalog.pg_encoding_to_char(encoding)::text, datcollate::text, datctype::text \
         FROM pg_catalog.pg_database WHERE datname = $1",
        &[&options.database],
    )?;
    let Some(row) = rows.first() else {
        if !ctx.check_mode() {
            let sql = format!(
                "CREATE DATABASE {database} WITH OWNER {owner} ENCODING {} LC_COLLATE {} \
                 LC_CTYPE {} TEMPLATE template0",
                quote_literal(&options.encoding)?,
                quote_literal(&options.lc_collate)?,
                quote_literal(&options.lc_ctype)?
            );
            simple(
                ctx,
                &client,
                &target,
                &format!("creating database {}", options.database),
                &sql,
            )?;
        }
        return Ok(Outcome::changed().with_message(format!(
            "created database (owner {}, {}, collation {})",
            options.owner, options.encoding, options.lc_collate
        )));
    };

    let current_owner: String = row.get(0);
    let encoding: String = row.get(1);
    let collate: String = row.get(2);
    let ctype: String = row.get(3);
    let mut mismatches = Vec::new();
    if !encoding.eq_ignore_ascii_case(&options.encoding) {
        mismatches.push(format!(
            "encoding {encoding} (expected {})",
            options.encoding
        ));
    }
    if collate != options.lc_collate {
        mismatches.push(format!(
            "LC_COLLATE {collate} (expected {})",
            options.lc_collate
        ));
    }
    if ctype != options.lc_ctype {
        mismatches.push(format!("LC_CTYPE {ctype} (expected {})", options.lc_ctype));
    }
    if !mismatches.is_empty() {
        return Err(failure(
            ctx,
            &target,
            &format!("checking database {}", options.database),
            &format!(
                "the database exists with {}; only recreating it changes that (dump it, drop \
                 it, run again, restore), or set the step's encoding and lc_* options to match",
                mismatches.join(", ")
            ),
        ));
    }

    if current_owner == options.owner {
        return Ok(Outcome::unchanged());
    }
    if !ctx.check_mode() {
        let sql = format!("ALTER DATABASE {database} OWNER TO {owner}");
        simple(
            ctx,
            &client,
            &target,
            &format!("changing the owner of database {}", options.database),
            &sql,
        )?;
    }
    Ok(Outcome::changed().with_message(format!("owner {current_owner} -> {}", options.owner)))
}

/// A query parameter converted to the type the server inferred for it.
#[derive(Debug)]
enum Param {
    Null,
    Bool(bool),
    Int2(i16),
    Int4(i32),
    Int8(i64),
    Oid(u32),
    Float4(f32),
    Float8(f64),
    Text(String),
    Json(Value),
    TextArray(Vec<String>),
}

impl ToSql for Param {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Param::Null => Ok(IsNull::Yes),
            Param::Bool(value) => value.to_sql(ty, out),
            Param::Int2(value) => value.to_sql(ty, out),
            Param::Int4(value) => value.to_sql(ty, out),
            Param::Int8(value) => value.to_sql(ty, out),
            Param::Oid(value) => value.to_sql(ty, out),
            Param::Float4(value) => value.to_sql(ty, out),
            Param::Float8(value) => value.to_sql(ty, out),
            Param::Text(value) => value.to_sql(ty, out),
            Param::Json(value) => value.to_sql(ty, out),
            Param::TextArray(value) => value.to_sql(ty, out),
        }
    }

    // Each value was converted for the parameter's own type in `to_param`.
    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn is_text_type(ty: &Type) -> bool {
    [
        Type::TEXT,
        Type::VARCHAR,
        Type::BPCHAR,
        Type::NAME,
        Type::UNKNOWN,
    ]
    .contains(ty)
}

fn to_param(index: usize, ty: &Type, value: &Value) -> Result<Param> {
    let position = index + 1;
    let mismatch = || {
        PrimitiveError::InvalidOption(format!(
            "parameter ${position} has type {ty}, which {value} does not fit"
        ))
    };
    let integer = || value.as_i64().ok_or_else(mismatch);
    if value.is_null() {
        return Ok(Param::Null);
    }
    let param = match *ty {
        Type::BOOL => Param::Bool(value.as_bool().ok_or_else(mismatch)?),
        Type::INT2 => Param::Int2(i16::try_from(integer()?).map_err(|_| mismatch())?),
        Type::INT4 => Param::Int4(i32::try_from(integer()?).map_err(|_| mismatch())?),
        Type::INT8 => Param::Int8(integer()?),
        Type::OID => Param::Oid(u32::try_from(integer()?).map_err(|_| mismatch())?),
        Type::FLOAT4 => Param::Float4(value.as_f64().ok_or_else(mismatch)? as f32),
        Type::FLOAT8 => Param::Float8(value.as_f64().ok_or_else(mismatch)?),
        Type::JSON | Type::JSONB => Param::Json(value.clone()),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::NAME_ARRAY => {
            let items = value.as_array().ok_or_else(mismatch)?;
            let texts = items
                .iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text.clone()),
                    other => Ok(other.to_string()),
                })
                .collect::<Result<Vec<String>>>()?;
            Param::TextArray(texts)
        }
        ref other if is_text_type(other) => match value {
            Value::String(text) => Param::Text(text.clone()),
            other => Param::Text(other.to_string()),
        },
        _ => {
            return Err(PrimitiveError::InvalidOption(format!(
                "parameter ${position} has type {ty}, which masrun cannot send; cast it in the \
                 query (${position}::text::{ty})"
            )));
        }
    };
    Ok(param)
}

/// Converts one column of a row to JSON, for the types task files need.
fn column_value(row: &Row, index: usize) -> std::result::Result<Value, String> {
    let column = &row.columns()[index];
    let ty = column.type_();
    let unsupported = || {
        format!(
            "column {} has type {ty}, which masrun cannot convert; cast it in the query ({}::text)",
            column.name(),
            column.name()
        )
    };
    let read_error = |error: tokio_postgres::Error| format!("column {}: {error}", column.name());
    let value = match *ty {
        Type::BOOL => json!(row.try_get::<_, Option<bool>>(index).map_err(read_error)?),
        Type::INT2 => json!(row.try_get::<_, Option<i16>>(index).map_err(read_error)?),
        Type::INT4 => json!(row.try_get::<_, Option<i32>>(index).map_err(read_error)?),
        Type::INT8 => json!(row.try_get::<_, Option<i64>>(index).map_err(read_error)?),
        Type::OID => json!(row.try_get::<_, Option<u32>>(index).map_err(read_error)?),
        Type::FLOAT4 => json!(row.try_get::<_, Option<f32>>(index).map_err(read_error)?),
        Type::FLOAT8 => json!(row.try_get::<_, Option<f64>>(index).map_err(read_error)?),
        Type::JSON | Type::JSONB => row
            .try_get::<_, Option<Value>>(index)
            .map_err(read_error)?
            .unwrap_or(Value::Null),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::NAME_ARRAY => json!(
            row.try_get::<_, Option<Vec<Option<String>>>>(index)
                .map_err(read_error)?
        ),
        ref other if is_text_type(other) => {
            json!(
                row.try_get::<_, Option<String>>(index)
                    .map_err(read_error)?
            )
        }
        _ => return Err(unsupported()),
    };
    Ok(value)
}

fn row_to_map(row: &Row) -> std::result::Result<Value, String> {
    let mut map = Map::new();
    for (index, column) in row.columns().iter().enumerate() {
        map.insert(column.name().to_string(), column_value(row, index)?);
    }
    Ok(Value::Object(map))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryOptions {
    pub sql: String,
    /// Values for `$1`, `$2`, …, converted to the types the server infers for them.
    #[serde(default)]
    pub params: Vec<Value>,
    /// The query only reads: it runs in a read-only transaction, in check mode too, and never
    /// counts as a change.
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub connection: Option<ConnectionOptions>,
    #[serde(default)]
    pub name: Option<String>,
}

/// Runs one parameterised statement. Returns `rows` (a list of maps by column name) and, for
/// a statement without result columns, `rows_affected`.
pub fn query(ctx: &HostContext, options: &QueryOptions) -> Result<Outcome> {
    let target = resolve(ctx, options.connection.as_ref())?;
    if ctx.check_mode() && !options.read_only {
        return Ok(Outcome::changed().with_message("would run (check mode)"));
    }
    let client = connect(ctx, &target)?;
    let action = "running the query";

    if options.read_only {
        simple(ctx, &client, &target, action, "BEGIN READ ONLY")?;
    }
    let result = run_statement(ctx, &client, &target, options);
    if options.read_only {
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        simple(ctx, &client, &target, action, end)?;
    }
    let (rows, affected) = result?;

    let outcome = if options.read_only {
        Outcome::unchanged()
    } else {
        Outcome::changed()
    };
    let outcome = outcome.with_data("rows", Value::Array(rows));
    Ok(match affected {
        Some(count) => outcome.with_data("rows_affected", count),
        None => outcome,
    })
}

fn run_statement(
    ctx: &HostContext,
    client: &Client,
    target: &Target,
    options: &QueryOptions,
) -> Result<(Vec<Value>, Option<u64>)> {
    let action = "running the query";
    let statement = wait(ctx, client.prepare(&options.sql))
        .map_err(|error| error.into_failure(ctx, target, action))?;
    if statement.params().len() != options.params.len() {
        return Err(PrimitiveError::InvalidOption(format!(
            "the query takes {} parameter(s) but params has {}",
            statement.params().len(),
            options.params.len()
        )));
    }
    let params = statement
        .params()
        .iter()
        .zip(&options.params)
        .enumerate()
        .map(|(index, (ty, value))| to_param(index, ty, value))
        .collect::<Result<Vec<Param>>>()?;
    let references: Vec<&(dyn ToSql + Sync)> =
        params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();

    if statement.columns().is_empty() {
        let affected = wait(ctx, client.execute(&statement, &references))
            .map_err(|error| error.into_failure(ctx, target, action))?;
        return Ok((Vec::new(), Some(affected)));
    }
    let rows = wait(ctx, client.query(&statement, &references))
        .map_err(|error| error.into_failure(ctx, target, action))?;
    let rows = rows
        .iter()
        .map(row_to_map)
        .collect::<std::result::Result<Vec<Value>, String>>()
        .map_err(PrimitiveError::InvalidOption)?;
    Ok((rows, None))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountRowsOptions {
    /// Table names as SQL writes them: `users`, `public.users`, `"Odd Name"`.
    pub tables: Vec<String>,
    #[serde(default)]
    pub connection: Option<ConnectionOptions>,
    #[serde(default)]
    pub name: Option<String>,
}

/// Counts the rows of each table. Returns `counts`, a map from each name as given to its row
/// count, or `()` when the table does not exist; and `total`, the sum.
pub fn count_rows(ctx: &HostContext, options: &CountRowsOptions) -> Result<Outcome> {
    let target = resolve(ctx, options.connection.as_ref())?;
    let client = connect(ctx, &target)?;

    // The server resolves each name (search_path, quoting) and returns it quoted, so the
    // count statement below is built only from names the server produced.
    let resolved = query_rows(
        ctx,
        &client,
        &target,
        "resolving table names",
        "SELECT pg_catalog.to_regclass(name)::text FROM unnest($1::text[]) WITH ORDINALITY AS t(name, position) ORDER BY position",
        &[&options.tables],
    )?;
    let names: Vec<Option<String>> = resolved.iter().map(|row| row.get(0)).collect();

    let existing: Vec<&String> = names.iter().flatten().collect();
    let mut counts_by_name = std::collections::HashMap::new();
    if !existing.is_empty() {
        let selects: Vec<String> = existing
            .iter()
            .map(|name| format!("(SELECT count(*) FROM {name})"))
            .collect();
        let sql = format!("SELECT {}", selects.join(", "));
        let rows = query_rows(ctx, &client, &target, "counting rows", &sql, &[])?;
        let row = rows
            .first()
            .ok_or_else(|| failure(ctx, &target, "counting rows", "the server returned no row"))?;
        for (index, name) in existing.iter().enumerate() {
            counts_by_name.insert((*name).clone(), row.get::<_, i64>(index));
        }
    }

    let mut counts = Map::new();
    let mut total = 0;
    for (given, resolved) in options.tables.iter().zip(&names) {
        let count = resolved
            .as_ref()
            .and_then(|name| counts_by_name.get(name))
            .copied();
        total += count.unwrap_or(0);
        counts.insert(given.clone(), json!(count));
    }
    Ok(Outcome::unchanged()
        .with_data("counts", Value::Object(counts))
        .with_data("total", total))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExistsOptions {
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub database: Option<String>,
    /// A table name as SQL writes it (`users`, `public.users`).
    #[serde(default)]
    pub table: Option<String>,
    #[serde(default)]
    pub connection: Option<ConnectionOptions>,
    #[serde(default)]
    pub name: Option<String>,
}

impl ExistsOptions {
    pub fn subject(&self) -> String {
        match (&self.role, &self.database, &self.table) {
            (Some(role), _, _) => format!("role {role}"),
            (_, Some(database), _) => format!("database {database}"),
            (_, _, Some(table)) => format!("table {table}"),
            _ => String::new(),
        }
    }
}

/// Returns `exists`: whether the one role, database or table named exists.
pub fn exists(ctx: &HostContext, options: &ExistsOptions) -> Result<Outcome> {
    let (sql, value) = match (&options.role, &options.database, &options.table) {
        (Some(role), None, None) => (
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)",
            role,
        ),
        (None, Some(database), None) => (
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1)",
            database,
        ),
        (None, None, Some(table)) => ("SELECT pg_catalog.to_regclass($1) IS NOT NULL", table),
        _ => {
            return Err(PrimitiveError::InvalidOption(
                "postgres::exists takes exactly one of role, database and table".into(),
            ));
        }
    };
    let target = resolve(ctx, options.connection.as_ref())?;
    let client = connect(ctx, &target)?;
    let rows = query_rows(
        ctx,
        &client,
        &target,
        &format!("checking whether {} exists", options.subject()),
        sql,
        &[value],
    )?;
    let exists = rows.first().is_some_and(|row| row.get::<_, bool>(0));
    Ok(Outcome::unchanged().with_data("exists", exists))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_verifier_matches_its_password() {
        let verifier = postgres_protocol::password::scram_sha_256(b"correct horse");
        assert!(scram_matches(&verifier, "correct horse"));
        assert!(!scram_matches(&verifier, "correct horse "));
    }

    #[test]
    fn scram_rejects_md5_and_garbage() {
        assert!(!scram_matches("md5a3556571e93b0d20722ba62be61e8c2d", "x"));
        assert!(!scram_matches("SCRAM-SHA-256$x", "x"));
        assert!(!scram_matches("", "x"));
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_identifier("a\"b").unwrap(), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's").unwrap(), "'it''s'");
        assert!(quote_identifier("").is_err());
    }
}
