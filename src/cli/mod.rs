//! The `keycard` operator command line (feature `cli`): sessions, keys, migrations and sweeps
//! against the stores a deployment uses, with the config the demo server reads
//! ([`KeycardConfig::from_env`]).
//!
//! The binary (`src/bin/keycard.rs`) only calls [`main`]. Output is a human-readable table by
//! default and JSON with `--json`; errors go to stderr as one line.
//!
//! # Exit codes
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | not found: no such session of that subject (`sessions revoke`) |
//! | 2 | usage error or bad configuration (unreadable or invalid config file or variable, missing keys) |
//! | 3 | a store is unreachable (or slower than `session.store_timeout`) |
//! | 4 | any other failure (an output file that cannot be written, a crypto failure) |
//!
//! # Revocations reach running instances
//! `sessions revoke` and `sessions revoke-all` go through the configured strategy, with the
//! server-session read cache forced on so that every revocation is also published on the store's
//! revocation feed (Redis pub/sub, PostgreSQL `LISTEN/NOTIFY`, polling for SQLite and MySQL):
//! instances running with the read cache refuse the session at their next request.

use clap::{Parser, Subcommand};

use crate::{
    KeycardConfig,
    error::{Error, ErrorKind},
};

mod config_cmd;
mod keys;
mod output;
mod sessions;
mod stores;

/// Runs the `keycard` command line with the process arguments and environment. The binary
/// prints a [`Failure`]'s message and exits with its code (see the [module docs](self)); the
/// library itself prints nothing to stderr.
pub fn main() -> Result<(), Failure> {
    let cli = Cli::try_parse().map_err(|e| {
        // `--help` and `--version` are "errors" with exit code 0 and text for stdout.
        let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
        Failure::new(code, e.render().to_string().trim_end())
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(EXIT_OTHER, format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(run(cli))
}

/// Exit code: no such session.
const EXIT_NOT_FOUND: u8 = 1;
/// Exit code: usage error or bad configuration.
const EXIT_USAGE: u8 = 2;
/// Exit code: a store is unreachable.
const EXIT_STORE: u8 = 3;
/// Exit code: any other failure.
const EXIT_OTHER: u8 = 4;

/// Operate a keycard deployment: sessions, keys, migrations and sweeps.
///
/// Reads the same configuration as the demo server: the TOML file named by KEYCARD_CONFIG, then
/// KEYCARD_STRATEGY, DATABASE_URL, REDIS_URL, REDIS_CLUSTER_URLS and KEYCARD_SESSION_CACHE on top.
#[derive(Debug, Parser)]
#[command(
    name = "keycard",
    version,
    after_help = "Exit codes: 0 success, 1 not found, 2 usage error or bad configuration, \
                  3 store unreachable, 4 other failure."
)]
struct Cli {
    /// Print JSON instead of tables (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List and revoke a subject's sessions (or refresh families for jwt/hybrid).
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Generate signing keys; list the configured key ring.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print the public JWKS of the configured key ring.
    Jwks,
    /// Run the bundled SQL migrations on the configured database.
    Migrate,
    /// Delete expired sessions, refresh tokens and revocations from the configured stores.
    Sweep,
    /// Validate the configuration and print it, secrets redacted.
    CheckConfig {
        /// Also connect to the configured stores.
        #[arg(long)]
        connect: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// List the live sessions of a subject.
    List {
        /// The subject (user ID).
        subject: String,
    },
    /// Revoke one session of a subject by its public ID (exit code 1 when there is none).
    Revoke {
        /// The subject (user ID).
        subject: String,
        /// The session's public ID, as `sessions list` shows it.
        id: String,
    },
    /// Revoke every session of a subject (and, for jwt/hybrid, every access token issued so far).
    RevokeAll {
        /// The subject (user ID).
        subject: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Generate a private key (PKCS#8 PEM; a base64 secret for HS*) for one algorithm.
    Generate {
        /// EdDSA, ES256, ES384, RS256, PS256, HS256, HS384 or HS512.
        #[arg(long, default_value = "EdDSA")]
        alg: String,
        /// RSA modulus size in bits (RS256, PS256): 2048, 3072 or 4096.
        #[arg(long, default_value_t = 2048)]
        bits: u32,
        /// Write the key to this new file (mode 0600) instead of stdout.
        #[arg(long, short)]
        out: Option<std::path::PathBuf>,
    },
    /// List the keys of the configured key ring.
    List,
}

/// How a command ended without success: its exit code and what to print (code 0: the help or
/// version text, for stdout; otherwise one line for stderr).
#[derive(Debug)]
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// The process exit code.
    pub fn code(&self) -> u8 {
        self.code
    }

    /// The text to print.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A bad configuration (exit code 2).
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(EXIT_USAGE, message)
    }

    /// Not found (exit code 1).
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(EXIT_NOT_FOUND, message)
    }

    /// Any other failure (exit code 4).
    pub(crate) fn other(message: impl Into<String>) -> Self {
        Self::new(EXIT_OTHER, message)
    }

    /// A keycard error, its code from its kind, `context` (which names no secret) in front.
    pub(crate) fn from_error(context: &str, error: &Error) -> Self {
        let code = match error.kind() {
            ErrorKind::Config => EXIT_USAGE,
            ErrorKind::StoreUnavailable => EXIT_STORE,
            ErrorKind::NotFound => EXIT_NOT_FOUND,
            _ => EXIT_OTHER,
        };
        let what = if code == EXIT_STORE {
            "store unreachable"
        } else {
            ""
        };
        let detail = one_line(error);
        let message = match (context.is_empty(), what.is_empty()) {
            (true, _) => detail,
            (false, true) => format!("{context}: {detail}"),
            (false, false) => format!("{context}: {what}: {detail}"),
        };
        Self::new(code, message)
    }
}

pub(crate) type CliResult<T = ()> = std::result::Result<T, Failure>;

async fn run(cli: Cli) -> CliResult {
    let out = output::Output { json: cli.json };
    match cli.command {
        Command::Sessions(SessionsCommand::List { subject }) => {
            sessions::list(&out, &load()?, &subject).await
        }
        Command::Sessions(SessionsCommand::Revoke { subject, id }) => {
            sessions::revoke(&out, &load()?, &subject, &id).await
        }
        Command::Sessions(SessionsCommand::RevokeAll { subject }) => {
            sessions::revoke_all(&out, &load()?, &subject).await
        }
        Command::Keys(KeysCommand::Generate {
            alg,
            bits,
            out: path,
        }) => keys::generate(&out, &alg, bits, path.as_deref()),
        Command::Keys(KeysCommand::List) => keys::list(&out, &load()?),
        Command::Jwks => keys::jwks(&out, &load()?),
        Command::Migrate => stores::migrate(&out, &load()?).await,
        Command::Sweep => stores::sweep(&out, &load()?).await,
        Command::CheckConfig { connect } => config_cmd::check(&out, &load()?, connect).await,
    }
}

fn load() -> CliResult<KeycardConfig> {
    KeycardConfig::from_env().map_err(|e| Failure::from_error("bad configuration", &e))
}

/// An error and its sources on one line (the first line of each, skipping repeats).
fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = first_line(&error.to_string());
    let mut source = error.source();
    while let Some(e) = source {
        let text = first_line(&e.to_string());
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = e.source();
    }
    line
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn error_kinds_map_to_exit_codes() {
        let code = |kind| Failure::from_error("x", &Error::new(kind)).code;
        assert_eq!(code(ErrorKind::Config), EXIT_USAGE);
        assert_eq!(code(ErrorKind::StoreUnavailable), EXIT_STORE);
        assert_eq!(code(ErrorKind::NotFound), EXIT_NOT_FOUND);
        assert_eq!(code(ErrorKind::Internal), EXIT_OTHER);
    }
}
