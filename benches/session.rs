//! Server-session hot path through the real router: keycard against a bare axum router, against
//! tower-sessions, and against one raw store read (the floor) per backend.
//!
//! Run: `cargo bench --bench session --all-features` (needs PostgreSQL and Redis; see README).
//! Group `session`; function ids are stable: `bare_router`, `memory`, `tower_sessions_memory`,
//! and for each store in `redis`, `postgres`, `sqlite`: `floor_<store>`, `<store>`,
//! `<store>_cached`; `memory_recorded` and `<store>_cached_recorded` are `memory` and
//! `<store>_cached` with a Prometheus recorder installed (the others run without one).

use std::{sync::Arc, time::SystemTime};

use axum::{
    Router,
    body::Body,
    extract::Request,
    http::{StatusCode, header},
    middleware::{self, Next},
    response::Response,
    routing::get,
};
use criterion::{Criterion, criterion_group, criterion_main};
use keycard::{
    Keycard, Principal, Rejection, SessionData,
    store::{MemoryStore, RevocationStore, SessionRecord, SessionStore},
    strategy::{CacheSettings, ServerSessions, ServerSettings},
    token::OpaqueToken,
};
use tokio::runtime::Runtime;
use tower::ServiceExt;

const SUBJECT: &str = "bench-user-0001";

fn record(token: &OpaqueToken) -> SessionRecord {
    // Whole milliseconds, the precision every store keeps.
    let now = SystemTime::UNIX_EPOCH
        + std::time::Duration::from_millis(
            u64::try_from(
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_millis(),
            )
            .unwrap(),
        );
    let hour = std::time::Duration::from_secs(3600);
    SessionRecord {
        id: token.hash(),
        subject: SUBJECT.into(),
        roles: vec!["user".into()],
        attributes: serde_json::Map::new(),
        created_at: now,
        last_seen_at: now,
        authenticated_at: now,
        expires_at: now + hour,
        absolute_expires_at: now + hour,
        user_agent: Some("criterion".into()),
        ip: Some("127.0.0.1".into()),
        data: Some(r#"{"theme":"dark"}"#.into()),
        idle_timeout: None,
        persistent: true,
    }
}

async fn me(user: Principal) -> String {
    user.subject().to_owned()
}

/// A session-data read: the value came with the principal (no round trip of its own).
async fn read_data(data: SessionData) -> Result<String, Rejection> {
    data.get::<String>("theme")
        .await
        .map(Option::unwrap_or_default)
}

/// A session-data write: one per-key patch saved after the handler, a new value each time (so
/// that every request really changes the stored data).
async fn write_data(data: SessionData) -> Result<&'static str, Rejection> {
    static VISITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let visit = VISITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    data.insert("visits", &visit).await?;
    Ok("ok")
}

fn request_to(path: &str, cookie: &str) -> Request {
    Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap()
}

fn bench_app(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    id: &str,
    app: Router,
    cookie: &str,
) {
    bench_path(c, rt, id, app, "/me", cookie);
}

/// `id`, `id_data_read` and `id_data_write`: the principal alone, then with a session-data read
/// and with a write.
fn bench_with_data(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    id: &str,
    app: Router,
    cookie: &str,
) {
    bench_path(c, rt, id, app.clone(), "/me", cookie);
    bench_path(
        c,
        rt,
        &format!("{id}_data_read"),
        app.clone(),
        "/read",
        cookie,
    );
    bench_path(c, rt, &format!("{id}_data_write"), app, "/write", cookie);
}

fn bench_path(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    id: &str,
    app: Router,
    path: &str,
    cookie: &str,
) {
    // As `axum::serve` does: turn every route into its service once, so that each request does
    // not rebuild the route (and re-apply the layers) of a router that was never given its state.
    let app: Router = app.with_state(());
    // Sanity: the route answers 200 before it is measured.
    let status = rt
        .block_on(app.clone().oneshot(request_to(path, cookie)))
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK, "{id} does not authenticate");
    c.bench_function(id, |b| {
        b.to_async(rt)
            .iter(|| async { app.clone().oneshot(request_to(path, cookie)).await.unwrap() })
    });
}

/// `bench_app` under `<id>_recorded`, with a Prometheus recorder (`metrics-exporter-prometheus`)
/// installed on the measuring thread for the duration: what keycard's metrics cost when they are
/// collected, against the same app measured without a recorder.
fn bench_recorded(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    id: &str,
    app: Router,
    cookie: &str,
) {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let _installed = metrics::set_default_local_recorder(&recorder);
    bench_app(c, rt, &format!("{id}_recorded"), app, cookie);
    assert!(
        recorder
            .handle()
            .render()
            .contains("keycard_authentications_total"),
        "{id}_recorded recorded nothing"
    );
}

/// keycard's layer over `store`; with `cache`, the local read cache is on and invalidated through
/// that revocation store.
async fn keycard_app(
    store: Arc<dyn SessionStore>,
    cache: Option<Arc<dyn RevocationStore>>,
) -> (Router, String) {
    let token = OpaqueToken::generate().unwrap();
    store.create(&record(&token), None).await.unwrap();
    let mut strategy = ServerSessions::new(store, ServerSettings::default());
    if let Some(revocations) = cache {
        strategy = strategy.with_cache(CacheSettings::default(), revocations);
        strategy.ready().await.unwrap();
    }
    let keycard = Keycard::builder().strategy(strategy).build().unwrap();
    let app = Router::new()
        .route("/me", get(me))
        .route("/read", get(read_data))
        .route("/write", get(write_data))
        .layer(keycard.layer());
    (app, format!("__Host-keycard={}", token.expose_secret()))
}

async fn tower_sessions_app() -> (Router, String) {
    use tower_sessions::{MemoryStore as TsStore, Session, SessionManagerLayer};
    async fn login(session: Session) -> &'static str {
        session.insert("subject", SUBJECT).await.unwrap();
        "ok"
    }
    async fn me(session: Session) -> Result<String, StatusCode> {
        session
            .get::<String>("subject")
            .await
            .ok()
            .flatten()
            .ok_or(StatusCode::UNAUTHORIZED)
    }
    let app = Router::new()
        .route("/login", get(login))
        .route("/me", get(me))
        .layer(SessionManagerLayer::new(TsStore::default()).with_secure(true));
    let resp = app
        .clone()
        .oneshot(Request::get("/login").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let cookie = resp.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    (app, cookie)
}

fn bare_router() -> Router {
    Router::new().route("/me", get(|| async { SUBJECT.to_owned() }))
}

/// A `from_fn` floor: the bare router plus exactly one store read of `key`, done by `read`.
fn floor<F, Fut>(read: F) -> Router
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    bare_router().layer(middleware::from_fn(move |req: Request, next: Next| {
        let read = read.clone();
        async move {
            if read().await {
                next.run(req).await
            } else {
                Response::builder().status(401).body(Body::empty()).unwrap()
            }
        }
    }))
}

fn session(c: &mut Criterion) {
    // One thread: the request, the store connections' I/O and keycard's background tasks all run
    // on the measuring thread, so no result includes a hand-off between threads (the noisiest
    // part of a 2-core machine), and every function is measured alike.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("session");
    bench_app(
        &mut g,
        &rt,
        "bare_router",
        bare_router(),
        "__Host-keycard=x",
    );
    let (app, cookie) = rt.block_on(keycard_app(Arc::new(MemoryStore::new()), None));
    bench_with_data(&mut g, &rt, "memory", app.clone(), &cookie);
    bench_recorded(&mut g, &rt, "memory", app, &cookie);
    let (app, cookie) = rt.block_on(tower_sessions_app());
    bench_app(&mut g, &rt, "tower_sessions_memory", app, &cookie);
    stores::bench(&mut g, &rt);
    g.finish();
}

#[cfg(all(feature = "redis", feature = "postgres", feature = "sqlite"))]
mod stores {
    use super::*;
    use keycard::store::{
        redis::RedisStore,
        sql::{SqlOptions, SqlStore},
    };

    pub fn bench(
        g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        rt: &Runtime,
    ) {
        // Redis: the floor GETs a value as large as keycard's encoded record.
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let store = Arc::new(rt.block_on(RedisStore::connect(&url)).expect("redis"));
        let (app, cookie) = rt.block_on(keycard_app(store.clone(), None));
        let (cached_app, cached_cookie) = rt.block_on(keycard_app(store.clone(), Some(store)));
        let client = redis::Client::open(url.as_str()).unwrap();
        let conn = rt
            .block_on(redis::aio::ConnectionManager::new(client))
            .unwrap();
        let value = serde_json::to_vec(&serde_json::json!({
            "subject": SUBJECT, "roles": ["user"], "attributes": {}, "created_at": 1,
            "last_seen_at": 1, "authenticated_at": 1, "expires_at": 1, "absolute_expires_at": 1,
            "user_agent": "criterion", "ip": "127.0.0.1"
        }))
        .unwrap();
        rt.block_on(async {
            let mut c = conn.clone();
            redis::cmd("SET")
                .arg("keycard-bench-floor")
                .arg(&value)
                .query_async::<()>(&mut c)
                .await
                .unwrap();
        });
        let floor_app = floor(move || {
            let mut c = conn.clone();
            async move {
                redis::cmd("GET")
                    .arg("keycard-bench-floor")
                    .query_async::<Option<Vec<u8>>>(&mut c)
                    .await
                    .ok()
                    .flatten()
                    .is_some()
            }
        });
        bench_app(g, rt, "floor_redis", floor_app, &cookie);
        bench_with_data(g, rt, "redis", app, &cookie);
        bench_app(g, rt, "redis_cached", cached_app.clone(), &cached_cookie);
        bench_recorded(g, rt, "redis_cached", cached_app, &cached_cookie);

        for (name, url) in [
            (
                "postgres",
                std::env::var("DATABASE_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
            ),
            (
                "sqlite",
                format!(
                    "sqlite://{}/keycard-bench.db",
                    std::env::temp_dir().display()
                ),
            ),
        ] {
            let store = Arc::new(
                rt.block_on(SqlStore::connect(&url, SqlOptions::default()))
                    .expect("sql store"),
            );
            let (app, cookie) = rt.block_on(keycard_app(store.clone(), None));
            let (cached_app, cached_cookie) = rt.block_on(keycard_app(store.clone(), Some(store)));
            let token = cookie.split_once('=').unwrap().1.to_owned();
            let id = keycard::token::TokenHash::of_encoded(&token).unwrap();
            let floor_app = sql_floor(rt, &url, id);
            bench_app(g, rt, &format!("floor_{name}"), floor_app, &cookie);
            bench_with_data(g, rt, name, app, &cookie);
            let id = format!("{name}_cached");
            bench_app(g, rt, &id, cached_app.clone(), &cached_cookie);
            bench_recorded(g, rt, &id, cached_app, &cached_cookie);
        }
    }

    /// A pool that does not ping a connection before each use (sqlx's default would add a
    /// round trip of its own), as keycard's pool does.
    fn one_trip_pool<DB: sqlx::Database>(rt: &Runtime, url: &str) -> sqlx::Pool<DB> {
        rt.block_on(
            sqlx::pool::PoolOptions::<DB>::new()
                .test_before_acquire(false)
                .connect(url),
        )
        .unwrap()
    }

    /// One prepared primary-key `SELECT` through a [`one_trip_pool`].
    fn sql_floor(rt: &Runtime, url: &str, id: keycard::token::TokenHash) -> Router {
        const SELECT: &str = "SELECT id, subject, roles, attributes, created_at, last_seen_at, \
            authenticated_at, expires_at, absolute_expires_at, user_agent, ip \
            FROM keycard_sessions WHERE id = ";
        let bytes = id.as_bytes().to_vec();
        if url.starts_with("postgres") {
            let pool: sqlx::PgPool = one_trip_pool(rt, url);
            floor(move || {
                let pool = pool.clone();
                let bytes = bytes.clone();
                async move {
                    sqlx::query(&format!("{SELECT}$1"))
                        .bind(bytes)
                        .fetch_optional(&pool)
                        .await
                        .ok()
                        .flatten()
                        .is_some()
                }
            })
        } else {
            let pool: sqlx::SqlitePool = one_trip_pool(rt, url);
            floor(move || {
                let pool = pool.clone();
                let bytes = bytes.clone();
                async move {
                    sqlx::query(&format!("{SELECT}?"))
                        .bind(bytes)
                        .fetch_optional(&pool)
                        .await
                        .ok()
                        .flatten()
                        .is_some()
                }
            })
        }
    }
}

#[cfg(not(all(feature = "redis", feature = "postgres", feature = "sqlite")))]
mod stores {
    use super::*;
    pub fn bench(
        _: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        _: &Runtime,
    ) {
        eprintln!("store benches need --features redis,postgres,sqlite");
    }
}

criterion_group!(benches, session);
criterion_main!(benches);
