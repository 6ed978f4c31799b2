//! JWT hot path through the real router: keycard's layer (cache off and cache hit) against a bare
//! axum router, against the raw aws-lc-rs signature check (the floor), and against the
//! `jsonwebtoken::decode` middleware users write by hand.
//!
//! Run: `cargo bench --bench jwt --all-features` (no external services).
//! Group `jwt`; function ids are stable: `bare_router`, and for each alg in `hs256`, `es256`,
//! `eddsa`, `rs256`: `floor_<alg>`, `jsonwebtoken_<alg>`, `cold_<alg>`, `warm_<alg>`, and `warm_<alg>_recorded` (`warm_<alg>` with a
//! Prometheus recorder installed; the others run without one).
//!
//! Every function sends the same request (`GET /me`, `Authorization: Bearer <token>`, the header
//! value built once and cloned) to a router whose handler answers a string of the same size: the
//! subject for keycard and jsonwebtoken, a constant for the bare and floor routers. Each function
//! gets a freshly issued token (60-minute lifetime), so no run is long enough to see it expire.

#[path = "../tests/jwt_support/mod.rs"]
mod jwt_support;

use std::sync::Arc;

use aws_lc_rs::{
    hmac,
    signature::{self, ParsedPublicKey},
};
use axum::{
    Extension, Router,
    body::Body,
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use jwt_support::{AUDIENCE, ISSUER, Signer, pem_der, public_pem, secret_for};
use keycard::{
    Keycard, Principal, SessionStrategy,
    jwt::{Algorithm, JwtConfig, JwtStrategy, KeyRing},
    strategy::ClientMeta,
};
use tokio::runtime::Runtime;
use tower::ServiceExt;

/// The subject of every token; the bare and floor routes answer a constant of the same length.
const SUBJECT: &str = "bench-user-0001";
const KID: &str = "bench-key";

fn request(auth: &HeaderValue) -> Request {
    let mut req = Request::get("/me").body(Body::empty()).unwrap();
    req.headers_mut()
        .insert(header::AUTHORIZATION, auth.clone());
    req
}

fn bench_app(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    id: &str,
    app: Router,
    token: &str,
) {
    let auth = HeaderValue::try_from(format!("Bearer {token}")).unwrap();
    // As `axum::serve` does: turn every route into its service once, so that each request does
    // not rebuild the route (and re-apply the layers) of a router that was never given its state.
    let app: Router = app.with_state(());
    // Sanity: the route answers 200 with a body of the subject's size before it is measured.
    let response = rt.block_on(app.clone().oneshot(request(&auth))).unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{id} does not authenticate"
    );
    let body = rt
        .block_on(axum::body::to_bytes(response.into_body(), 1024))
        .unwrap();
    assert_eq!(
        body.len(),
        SUBJECT.len(),
        "{id} answers a body of another size"
    );
    g.bench_function(id, |b| {
        b.to_async(rt)
            .iter(|| async { app.clone().oneshot(request(&auth)).await.unwrap() })
    });
}

fn bare_router() -> Router {
    Router::new().route("/me", get(|| async { SUBJECT.to_owned() }))
}

fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn unauthorized() -> Response {
    StatusCode::UNAUTHORIZED.into_response()
}

/// The floor: the bare router plus one raw signature check of the token's signing input
/// (`header.payload`) against its base64url-decoded signature, with a key parsed beforehand.
fn floor(verify: impl Fn(&[u8], &[u8]) -> bool + Clone + Send + Sync + 'static) -> Router {
    bare_router().layer(middleware::from_fn(move |req: Request, next: Next| {
        let ok = bearer(&req).is_some_and(|token| {
            let Some((input, sig_b64)) = token.rsplit_once('.') else {
                return false;
            };
            let mut sig = [0u8; 512];
            URL_SAFE_NO_PAD
                .decode_slice(sig_b64, &mut sig)
                .is_ok_and(|n| verify(input.as_bytes(), &sig[..n]))
        });
        async move {
            if ok {
                next.run(req).await
            } else {
                unauthorized()
            }
        }
    }))
}

fn floor_app(alg: Algorithm) -> Router {
    if alg == Algorithm::HS256 {
        let key = Arc::new(hmac::Key::new(hmac::HMAC_SHA256, &secret_for(alg)));
        return floor(move |input, sig| hmac::verify(&key, input, sig).is_ok());
    }
    let algorithm: &'static dyn signature::VerificationAlgorithm = match alg {
        Algorithm::EdDSA => &signature::ED25519,
        Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        other => panic!("no floor for {other}"),
    };
    let key = Arc::new(ParsedPublicKey::new(algorithm, pem_der(&public_pem(alg))).unwrap());
    floor(move |input, sig| key.verify_sig(input, sig).is_ok())
}

/// The claims a hand-written jsonwebtoken middleware reads.
#[derive(Clone, serde::Deserialize)]
#[allow(dead_code)]
struct Claims {
    sub: String,
    iss: String,
    aud: String,
    exp: u64,
    iat: u64,
    jti: String,
    sid: String,
    #[serde(default)]
    roles: Vec<String>,
}

/// What users write today: a `from_fn` middleware calling `jsonwebtoken::decode` (exp, iss and
/// aud validated) with a `DecodingKey` and `Validation` built once, handing the claims to the
/// handler through an extension.
fn jsonwebtoken_app(alg: Algorithm) -> Router {
    use jsonwebtoken::{Algorithm as J, DecodingKey, Validation};
    let (key, jalg) = match alg {
        Algorithm::HS256 => (DecodingKey::from_secret(&secret_for(alg)), J::HS256),
        Algorithm::ES256 => (
            DecodingKey::from_ec_pem(public_pem(alg).as_bytes()).unwrap(),
            J::ES256,
        ),
        Algorithm::EdDSA => (
            DecodingKey::from_ed_pem(public_pem(alg).as_bytes()).unwrap(),
            J::EdDSA,
        ),
        Algorithm::RS256 => (
            DecodingKey::from_rsa_pem(public_pem(alg).as_bytes()).unwrap(),
            J::RS256,
        ),
        other => panic!("no jsonwebtoken bench for {other}"),
    };
    let mut validation = Validation::new(jalg);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let key = Arc::new(key);
    let validation = Arc::new(validation);
    Router::new()
        .route(
            "/me",
            get(|Extension(claims): Extension<Claims>| async move { claims.sub }),
        )
        .layer(middleware::from_fn(move |mut req: Request, next: Next| {
            let claims = bearer(&req)
                .and_then(|t| jsonwebtoken::decode::<Claims>(t, &key, &validation).ok());
            async move {
                match claims {
                    Some(data) => {
                        req.extensions_mut().insert(data.claims);
                        next.run(req).await
                    }
                    None => unauthorized(),
                }
            }
        }))
}

async fn me(user: Principal) -> String {
    user.subject().to_owned()
}

/// A strategy on the fixture key of `alg`; `cache_size = 0` turns the verified-token cache off.
async fn strategy(alg: Algorithm, cache_size: usize) -> JwtStrategy {
    let (_, key) = Signer::for_alg(alg, KID);
    let ring = Arc::new(KeyRing::new([key], Some(KID)).unwrap());
    let mut config = JwtConfig::new(ISSUER, AUDIENCE);
    config.access_ttl = std::time::Duration::from_secs(60 * 60);
    config.cache_size = cache_size;
    let strategy = JwtStrategy::builder(config).key_ring(ring).build().unwrap();
    strategy.ready().await.unwrap();
    strategy
}

/// A fresh access token (60 minutes) for [`SUBJECT`].
async fn token(strategy: &JwtStrategy) -> String {
    let issued = strategy
        .login(
            Principal::builder(SUBJECT).role("user").build(),
            &ClientMeta::default(),
            Default::default(),
        )
        .await
        .unwrap();
    issued.access_token.unwrap().token
}

fn keycard_app(strategy: &JwtStrategy) -> Router {
    let keycard = Keycard::builder().jwt(strategy.clone()).build().unwrap();
    Router::new().route("/me", get(me)).layer(keycard.layer())
}

fn jwt(c: &mut Criterion) {
    // One thread: the request, the store connections' I/O and keycard's background tasks all run
    // on the measuring thread, so no result includes a hand-off between threads (the noisiest
    // part of a 2-core machine), and every function is measured alike.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("jwt");
    let issuer = rt.block_on(strategy(Algorithm::EdDSA, 0));
    bench_app(
        &mut g,
        &rt,
        "bare_router",
        bare_router(),
        &rt.block_on(token(&issuer)),
    );
    for (name, alg) in [
        ("hs256", Algorithm::HS256),
        ("es256", Algorithm::ES256),
        ("eddsa", Algorithm::EdDSA),
        ("rs256", Algorithm::RS256),
    ] {
        let cold = rt.block_on(strategy(alg, 0));
        let warm = rt.block_on(strategy(alg, keycard::jwt::DEFAULT_CACHE_SIZE));

        // The floor and keycard's cold path are measured back to back: their ratio has the
        // tightest limits, and the machine's load drifts less between neighbours.
        let t = rt.block_on(token(&cold));
        bench_app(&mut g, &rt, &format!("floor_{name}"), floor_app(alg), &t);

        let t = rt.block_on(token(&cold));
        bench_app(&mut g, &rt, &format!("cold_{name}"), keycard_app(&cold), &t);
        assert_eq!(cold.cached_tokens(), 0, "cold_{name} caches");

        let t = rt.block_on(token(&cold));
        bench_app(
            &mut g,
            &rt,
            &format!("jsonwebtoken_{name}"),
            jsonwebtoken_app(alg),
            &t,
        );

        let t = rt.block_on(token(&warm));
        let app = keycard_app(&warm);
        bench_app(&mut g, &rt, &format!("warm_{name}"), app.clone(), &t);
        {
            // The same app with a Prometheus recorder installed on the measuring thread.
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
            let _installed = metrics::set_default_local_recorder(&recorder);
            bench_app(&mut g, &rt, &format!("warm_{name}_recorded"), app, &t);
            assert!(
                recorder
                    .handle()
                    .render()
                    .contains("keycard_authentications_total"),
                "warm_{name}_recorded recorded nothing"
            );
        }
        assert_eq!(
            warm.cached_tokens(),
            1,
            "warm_{name} does not hit the cache"
        );
    }
    g.finish();
}

criterion_group!(benches, jwt);
criterion_main!(benches);
