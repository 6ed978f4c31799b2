//! The `keycard` operator CLI (`target/<profile>/keycard`, feature `cli`) against running demo
//! processes on SQLite, PostgreSQL, MySQL, Redis and Redis Cluster: listing and revoking
//! sessions (the demo refuses the revoked cookie), `--json` output, keys and JWKS, migrations,
//! sweeps, `check-config`, and the exit codes for bad usage, bad config and unreachable stores.
//! With the demo's read cache on, a revocation made by the CLI reaches the demo through the
//! revocation feed: on Redis and PostgreSQL the demo refuses the cookie within 100 ms of the CLI
//! exiting.
//!
//! Stores: as in `demo_instances` (`REDIS_URL`, `DATABASE_URL`, `MYSQL_URL`; a database created
//! for each test on PostgreSQL and MySQL, a key prefix of its own on Redis, a throwaway Redis
//! Cluster).
#![cfg(all(unix, feature = "cli"))]

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::{
    demo_bin::{self, Launched, RawResp},
    http_client::COOKIE,
    redis_support::{cluster::Cluster, server::scratch_dir},
};

const ALICE: &str = r#"{"username":"alice","password":"wonderland"}"#;

/// The variables the CLI and the demo read, cleared before each run.
const VARS: [&str; 7] = [
    "KEYCARD_CONFIG",
    "KEYCARD_STRATEGY",
    "KEYCARD_SESSION_CACHE",
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_CLUSTER_URLS",
    "RUST_LOG",
];

/// One deployment's environment: variables, and a config file in a scratch directory.
struct Env {
    dir: PathBuf,
    vars: Vec<(String, String)>,
    /// Variables for the demo only.
    demo_vars: Vec<(String, String)>,
}

impl Env {
    fn new(vars: &[(&str, &str)], config_toml: Option<&str>) -> Self {
        let dir = scratch_dir("cli");
        let mut vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        if let Some(toml) = config_toml {
            let path = dir.join("keycard.toml");
            std::fs::write(&path, toml).expect("write config");
            vars.push(("KEYCARD_CONFIG".into(), path.display().to_string()));
        }
        Self {
            dir,
            vars,
            demo_vars: Vec::new(),
        }
    }

    fn with(mut self, name: &str, value: &str) -> Self {
        self.vars.push((name.into(), value.into()));
        self
    }

    /// `name=value` for the demo, not the CLI.
    fn demo_with(mut self, name: &str, value: &str) -> Self {
        self.demo_vars.push((name.into(), value.into()));
        self
    }

    /// Runs `keycard args...` in this environment.
    fn keycard(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keycard"));
        cmd.current_dir(&self.dir);
        for var in VARS {
            cmd.env_remove(var);
        }
        cmd.envs(self.vars.iter().map(|(k, v)| (k, v)));
        let out = cmd.args(args).output().expect("run keycard");
        Run {
            code: out.status.code().expect("exit code"),
            stdout: String::from_utf8(out.stdout).expect("UTF-8 stdout"),
            stderr: String::from_utf8(out.stderr).expect("UTF-8 stderr"),
            args: args.join(" "),
        }
    }

    /// Starts the demo in this environment.
    fn demo(&self) -> Launched {
        let mut cmd = demo_bin::command(&self.dir);
        cmd.envs(self.vars.iter().chain(&self.demo_vars).map(|(k, v)| (k, v)));
        demo_bin::launch(cmd, &self.dir.join("demo-stderr.log"), |_| {})
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A finished `keycard` run.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    args: String,
}

impl Run {
    fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "keycard {}: {}{}",
            self.args, self.stdout, self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        self.ok();
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("keycard {}: not JSON ({e}): {}", self.args, self.stdout))
    }

    /// Asserts exit code `code` and one line on stderr, and returns that line.
    fn fails(&self, code: i32) -> &str {
        assert_eq!(
            self.code, code,
            "keycard {}: {}{}",
            self.args, self.stdout, self.stderr
        );
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line: {:?}", self.stderr);
        lines[0]
    }
}

async fn http(addr: &str, method: &str, path: &str, cookie: Option<&str>, body: &str) -> RawResp {
    let mut headers = vec![("User-Agent", "keycard-cli-test")];
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    if let Some(c) = cookie {
        headers.push(("Cookie", c));
    }
    demo_bin::exchange(addr, method, path, &headers, body, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Logs alice in; her session cookie and its public ID.
async fn login(addr: &str) -> (String, String) {
    let r = http(addr, "POST", "/login", None, ALICE).await;
    assert_eq!(r.status, 200, "login: {}\n{}", r.head, r.body);
    let cookie = r.cookie_pair(COOKIE).expect("session cookie");
    let me = http(addr, "GET", "/me", Some(&cookie), "").await;
    assert_eq!(me.status, 200, "{}", me.body);
    let id = me.json()["session_id"]
        .as_str()
        .expect("session_id")
        .to_owned();
    (cookie, id)
}

async fn me(addr: &str, cookie: &str) -> u16 {
    http(addr, "GET", "/me", Some(cookie), "").await.status
}

/// A config file giving Redis a key prefix of this test's own.
fn redis_config() -> String {
    format!(
        "strategy = \"redis\"\n[redis]\nkey_prefix = \"kc-cli-{}\"\n",
        crate::common::random_id().expect("random id")
    )
}

/// The session commands against a running demo: list (table and JSON), revoke one (then 1 for
/// the same ID again), revoke-all; the demo refuses each revoked cookie at its next request.
/// Then sweep, migrate and check-config on the same store.
async fn sessions_round_trip(env: &Env, store: &str) {
    let demo = env.demo();
    let (first, first_id) = login(&demo.addr).await;
    let (second, second_id) = login(&demo.addr).await;

    let listed = env.keycard(&["--json", "sessions", "list", "alice"]).json();
    let mut ids: Vec<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    ids.sort_unstable();
    let mut expected = vec![first_id.as_str(), second_id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected, "{store}: {listed}");
    assert_eq!(listed[0]["user_agent"], "keycard-cli-test", "{store}");
    let table = env.keycard(&["sessions", "list", "alice"]);
    let table = &table.ok().stdout;
    assert!(table.starts_with("ID "), "{store}: {table}");
    assert!(
        table.contains(&first_id) && table.contains(&second_id),
        "{table}"
    );

    let revoked = env
        .keycard(&["--json", "sessions", "revoke", "alice", &first_id])
        .json();
    assert_eq!(revoked["revoked"], true, "{store}");
    assert_eq!(me(&demo.addr, &first).await, 401, "{store}: revoked cookie");
    assert_eq!(me(&demo.addr, &second).await, 200, "{store}: the other one");
    let again = env.keycard(&["sessions", "revoke", "alice", &first_id]);
    assert!(
        again.fails(1).contains(&first_id),
        "{store}: {}",
        again.stderr
    );

    let all = env
        .keycard(&["--json", "sessions", "revoke-all", "alice"])
        .json();
    assert_eq!(all["revoked"], 1, "{store}: {all}");
    assert_eq!(
        me(&demo.addr, &second).await,
        401,
        "{store}: after revoke-all"
    );
    let listed = env.keycard(&["--json", "sessions", "list", "alice"]).json();
    assert_eq!(listed, Value::Array(vec![]), "{store}");

    let swept = env.keycard(&["--json", "sweep"]).json();
    assert!(
        swept.as_array().is_some_and(|s| !s.is_empty()
            && s.iter()
                .all(|s| s["sessions"].is_u64() && s["revocations"].is_u64())),
        "{store}: {swept}"
    );
    let migrated = env.keycard(&["--json", "migrate"]).json();
    assert_eq!(
        migrated["migrated"],
        store != "redis",
        "{store}: {migrated}"
    );
    let checked = env.keycard(&["--json", "check-config", "--connect"]).json();
    assert_eq!(checked["valid"], true, "{store}");
    assert_eq!(checked["connected"], true, "{store}");
}

#[tokio::test]
async fn sessions_on_sqlite() {
    let env = Env::new(&[], None);
    let url = format!("sqlite://{}", env.dir.join("cli.db").display());
    let env = env.with("DATABASE_URL", &url);
    sessions_round_trip(&env, "sqlite").await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn sessions_on_postgres() {
    let db = crate::common::pg::TempPg::create("cli").await;
    let env = Env::new(&[("DATABASE_URL", &db.url())], None);
    sessions_round_trip(&env, "postgres").await;
}

#[tokio::test]
async fn sessions_on_mysql() {
    let db = TempMysql::create().await;
    let env = Env::new(&[("DATABASE_URL", &db.url)], None);
    sessions_round_trip(&env, "mysql").await;
}

#[tokio::test]
async fn sessions_on_redis() {
    let env = Env::new(
        &[("REDIS_URL", &crate::common::redis_url())],
        Some(&redis_config()),
    );
    sessions_round_trip(&env, "redis").await;
}

#[tokio::test]
async fn sessions_on_redis_cluster() {
    let urls = Cluster::shared().urls().join(",");
    let env = Env::new(&[("REDIS_CLUSTER_URLS", &urls)], Some(&redis_config()));
    sessions_round_trip(&env, "redis").await;
}

/// The `jwt` strategy on Redis: the CLI lists alice's refresh family and `revoke-all` ends it
/// and voids her access token on the running demo (through the epoch it publishes).
#[tokio::test]
async fn jwt_sessions_on_redis() {
    let config = redis_config().replace("strategy = \"redis\"", "strategy = \"jwt\"");
    let env = Env::new(&[("REDIS_URL", &crate::common::redis_url())], Some(&config));
    let demo = env.demo();
    let login = http(&demo.addr, "POST", "/login", None, ALICE).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let tokens = login.json();
    let bearer = format!(
        "Bearer {}",
        tokens["access_token"].as_str().expect("access token")
    );
    let me = |addr: String, bearer: String| async move {
        demo_bin::exchange(
            &addr,
            "GET",
            "/me",
            &[("Authorization", &bearer)],
            "",
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .status
    };
    assert_eq!(me(demo.addr.clone(), bearer.clone()).await, 200);

    let listed = env.keycard(&["--json", "sessions", "list", "alice"]).json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let all = env
        .keycard(&["--json", "sessions", "revoke-all", "alice"])
        .json();
    assert_eq!(all["revoked"], 1, "{all}");
    let exited = Instant::now();
    while me(demo.addr.clone(), bearer.clone()).await != 401 {
        assert!(
            exited.elapsed() < Duration::from_secs(2),
            "access token still accepted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let body = format!(r#"{{"refresh_token":{}}}"#, tokens["refresh_token"]);
    let refreshed = http(&demo.addr, "POST", "/refresh", None, &body).await;
    assert_eq!(refreshed.status, 401, "{}", refreshed.body);
    let listed = env.keycard(&["--json", "sessions", "list", "alice"]).json();
    assert_eq!(listed, Value::Array(vec![]));
}

/// `keycard sessions revoke-all alice` while the demo serves alice from its read cache: the
/// revocation feed makes the demo refuse her cookie within 100 ms of the CLI exiting. The CLI
/// runs without `KEYCARD_SESSION_CACHE`: it publishes its revocations regardless.
async fn revoke_all_reaches_a_cached_demo(env: &Env, store: &str) {
    let demo = env.demo();
    let (cookie, _) = login(&demo.addr).await;
    for _ in 0..3 {
        assert_eq!(me(&demo.addr, &cookie).await, 200, "{store}: cached");
    }
    env.keycard(&["sessions", "revoke-all", "alice"]).ok();
    let exited = Instant::now();
    let refused = loop {
        let status = me(&demo.addr, &cookie).await;
        if status == 401 {
            break exited.elapsed();
        }
        assert_eq!(status, 200, "{store}: only 200 or 401");
        assert!(
            exited.elapsed() < Duration::from_secs(2),
            "{store}: the demo still serves alice 2 s after the CLI revoked her sessions"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    eprintln!("{store}: the demo refused alice {refused:?} after the CLI exited");
    assert!(
        refused < Duration::from_millis(100),
        "{store}: refused only after {refused:?}"
    );
    // Stays refused (not only the first miss).
    assert_eq!(me(&demo.addr, &cookie).await, 401, "{store}");
}

#[tokio::test]
async fn revocation_reaches_a_cached_demo_on_redis() {
    let env = Env::new(
        &[("REDIS_URL", &crate::common::redis_url())],
        Some(&redis_config()),
    )
    .demo_with("KEYCARD_SESSION_CACHE", "on");
    revoke_all_reaches_a_cached_demo(&env, "redis").await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn revocation_reaches_a_cached_demo_on_postgres() {
    let db = crate::common::pg::TempPg::create("cli_cache").await;
    let env =
        Env::new(&[("DATABASE_URL", &db.url())], None).demo_with("KEYCARD_SESSION_CACHE", "on");
    revoke_all_reaches_a_cached_demo(&env, "postgres").await;
}

/// One key of every algorithm generated by the CLI, configured as a ring: `keys list`, `jwks`
/// (equal to the demo's `/.well-known/jwks.json` on the same config) and a redacting
/// `check-config`.
#[tokio::test]
async fn keys_generate_list_and_jwks() {
    let env = Env::new(&[], None);
    let mut toml =
        String::from("strategy = \"jwt\"\n[jwt]\nissuer = \"cli-test\"\naudience = \"cli-test\"\n");
    let algs = [
        "EdDSA", "ES256", "ES384", "RS256", "PS256", "HS256", "HS384", "HS512",
    ];
    for alg in algs {
        let hmac = alg.starts_with("HS");
        let path = env.dir.join(format!("{alg}.key"));
        let generated = env
            .keycard(&["--json", "keys", "generate", "--alg", alg, "--out"])
            .code;
        assert_eq!(generated, 2, "--out needs a value");
        let r = env
            .keycard(&[
                "--json",
                "keys",
                "generate",
                "--alg",
                alg,
                "--out",
                path.to_str().unwrap(),
            ])
            .json();
        assert_eq!(r["alg"], alg);
        assert_eq!(r["public_jwk"].is_object(), !hmac, "{alg}: {r}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.starts_with("-----BEGIN PRIVATE KEY-----"),
            !hmac,
            "{alg}"
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{alg}");
        let file = if hmac { "secret_file" } else { "pem_file" };
        toml.push_str(&format!(
            "[[jwt.keys]]\nkid = \"k-{alg}\"\nalg = \"{alg}\"\n{file} = \"{}\"\nsigning = {}\n",
            path.display(),
            alg == "ES256"
        ));
    }
    // Stdout by default; an existing file is never overwritten.
    let pem = env.keycard(&["keys", "generate", "--alg", "ES384"]);
    assert!(pem.ok().stdout.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let existing = env.dir.join("EdDSA.key");
    env.keycard(&["keys", "generate", "--out", existing.to_str().unwrap()])
        .fails(4);
    env.keycard(&["keys", "generate", "--alg", "none"]).fails(2);

    let url = format!("sqlite://{}", env.dir.join("jwt.db").display());
    let env = Env::new(&[("DATABASE_URL", &url)], Some(&toml));
    let keys = env.keycard(&["--json", "keys", "list"]).json();
    let keys = keys.as_array().expect("array");
    assert_eq!(keys.len(), algs.len());
    for k in keys {
        let alg = k["alg"].as_str().unwrap();
        assert_eq!(k["kid"], format!("k-{alg}"));
        assert_eq!(k["signing"], alg == "ES256", "{k}");
        assert_eq!(k["private"], true);
        assert_eq!(k["published"], !alg.starts_with("HS"), "{k}");
    }
    let table = env.keycard(&["keys", "list"]);
    assert!(table.ok().stdout.starts_with("KID "), "{}", table.stdout);

    let jwks = env.keycard(&["jwks"]).json();
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(5), "{jwks}");
    let demo = env.demo();
    let served = http(&demo.addr, "GET", "/.well-known/jwks.json", None, "").await;
    assert_eq!(
        served.json(),
        jwks,
        "the CLI prints the JWKS the demo serves"
    );

    let checked = env.keycard(&["check-config"]);
    let text = &checked.ok().stdout;
    assert!(text.contains("strategy = \"jwt\""), "{text}");
    assert!(text.contains("k-HS256"), "{text}");
}

/// Exit codes: 2 for usage errors and bad config, 3 for an unreachable store, with one line on
/// stderr that names the problem and no password.
#[test]
fn usage_bad_config_and_unreachable_stores() {
    let env = Env::new(&[], None);
    let help = env.keycard(&["--help"]);
    for word in [
        "sessions",
        "keys",
        "jwks",
        "migrate",
        "sweep",
        "check-config",
        "Exit codes",
    ] {
        assert!(help.ok().stdout.contains(word), "{word}: {}", help.stdout);
    }
    assert_eq!(env.keycard(&["bogus"]).code, 2);
    assert_eq!(env.keycard(&["sessions", "revoke", "alice"]).code, 2);

    let bad = Env::new(&[("KEYCARD_STRATEGY", "magic")], None);
    let line = bad.keycard(&["sessions", "list", "alice"]);
    let line = line.fails(2);
    assert!(
        line.contains("KEYCARD_STRATEGY") && line.contains("magic"),
        "{line}"
    );
    let bad = Env::new(&[("KEYCARD_CONFIG", "/nonexistent/keycard.toml")], None);
    assert!(
        bad.keycard(&["check-config"])
            .fails(2)
            .contains("KEYCARD_CONFIG")
    );
    let bad = Env::new(
        &[],
        Some("strategy = \"database\"\n[session]\nidle_timeot = \"1m\"\n"),
    );
    assert!(bad.keycard(&["sweep"]).fails(2).contains("idle_timeot"));
    let bad = Env::new(
        &[],
        Some("strategy = \"database\"\n[session]\nidle_timeout = \"0s\"\n"),
    );
    assert!(
        bad.keycard(&["check-config"])
            .fails(2)
            .contains("session.idle_timeout")
    );
    let no_keys = Env::new(&[("KEYCARD_STRATEGY", "jwt")], None);
    assert!(no_keys.keycard(&["jwks"]).fails(2).contains("jwt.keys"));

    let down = Env::new(
        &[("DATABASE_URL", "postgres://kc:hunter2@127.0.0.1:1/kc")],
        None,
    );
    for args in [
        &["sessions", "list", "alice"][..],
        &["sessions", "revoke-all", "alice"],
        &["migrate"],
        &["sweep"],
        &["check-config", "--connect"],
    ] {
        let run = down.keycard(args);
        let line = run.fails(3);
        assert!(!line.contains("hunter2"), "password masked: {line}");
        assert!(
            line.contains("unreachable") || line.contains("cannot"),
            "{line}"
        );
    }
    let down = Env::new(
        &[
            ("KEYCARD_STRATEGY", "redis"),
            ("REDIS_URL", "redis://:pw@127.0.0.1:1"),
        ],
        None,
    );
    let run = down.keycard(&["sessions", "list", "alice"]);
    assert!(!run.fails(3).contains("pw@"), "{}", run.stderr);
    // A bad config is found without connecting: the unreachable store does not matter.
    let checked = down.keycard(&["--json", "check-config"]).json();
    assert_eq!(
        checked["config"]["redis"]["url"],
        "redis://:[redacted]@127.0.0.1:1"
    );
}

/// A MySQL database created for one test, dropped afterwards.
struct TempMysql {
    url: String,
    admin: String,
    name: String,
}

impl TempMysql {
    async fn create() -> Self {
        use sqlx::{Connection, Executor};
        let admin = crate::common::mysql_url();
        let name = format!(
            "keycard_cli_{}",
            crate::common::random_id()
                .expect("random id")
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(12)
                .collect::<String>()
                .to_ascii_lowercase()
        );
        let mut conn = sqlx::MySqlConnection::connect(&admin)
            .await
            .expect("connect to MySQL");
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("CREATE DATABASE");
        let _ = conn.close().await;
        let (base, query) = admin.split_once('?').unwrap_or((&admin, ""));
        let (server, _) = base.rsplit_once('/').expect("a database in MYSQL_URL");
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        Self {
            url: format!("{server}/{name}{query}"),
            admin,
            name,
        }
    }
}

impl Drop for TempMysql {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    use sqlx::{Connection, Executor};
                    if let Ok(mut c) = sqlx::MySqlConnection::connect(&admin).await {
                        let _ = c
                            .execute(format!("DROP DATABASE IF EXISTS {name}").as_str())
                            .await;
                        let _ = c.close().await;
                    }
                });
            }
        })
        .join();
    }
}
