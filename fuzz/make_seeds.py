#!/usr/bin/env python3
"""Writes the small seed corpus in fuzz/corpus/ (run from anywhere; needs `cryptography`).

Seeds for token_decode are signed with the fuzz-only keys in fuzz/keys/ and the HS256 secret of
fuzz_targets/token_decode.rs, with claims valid at its fixed clock (NOW = 1_900_000_000).
"""
import base64, hashlib, hmac, json, os
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

HERE = os.path.dirname(os.path.abspath(__file__))
NOW = 1_900_000_000
ISS, AUD = "https://auth.fuzz.test", "https://api.fuzz.test"
HS_SECRET = b"keycard-fuzz-hs256-secret-32byte"


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def key(name):
    with open(os.path.join(HERE, "keys", name), "rb") as f:
        return serialization.load_pem_private_key(f.read(), None)


CLAIMS = {"iss": ISS, "aud": AUD, "sub": "alice", "exp": NOW + 300, "iat": NOW,
          "jti": "seed-jti", "sid": "seed-family", "roles": ["user"]}


def token(alg, kid, claims=CLAIMS):
    header = {"alg": alg, "typ": "at+jwt", "kid": kid}
    signing_input = (b64(json.dumps(header, separators=(",", ":")).encode()) + "." +
                     b64(json.dumps(claims, separators=(",", ":")).encode())).encode()
    if alg == "HS256":
        sig = hmac.new(HS_SECRET, signing_input, hashlib.sha256).digest()
    elif alg == "EdDSA":
        sig = key("ed25519.pem").sign(signing_input)
    elif alg == "ES256":
        r, s = decode_dss_signature(key("es256.pem").sign(signing_input, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        sig = key("rsa2048.pem").sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return signing_input.decode() + "." + b64(sig)


# authorization_header
for i, v in enumerate([b"Bearer abc.def-ghi", b"bearer   tok==", b"Basic dXNlcjpwYXNz",
                       b"Bearer", b"Bearer a b", b"BEARER " + token("HS256", "hs").encode()]):
    write("authorization_header", f"seed-{i}", v)

# cookie_header: first byte = settings selector (1 refresh cookie, 2 small limits, 4 name "sid")
tok = b64(os.urandom(32)).encode()
for i, v in enumerate([b"\x00__Host-keycard=" + tok,
                       b"\x01a=1; __Host-keycard=" + tok + b"; __Secure-keycard-refresh=" + tok,
                       b"\x00__Host-keycard=a; __Host-keycard=b",
                       b"\x00a=1\n__Host-keycard=" + tok + b"\nb=2",
                       b"\x02" + b"; ".join(b"c%d=v" % i for i in range(12)),
                       b"\x04 sid=x;\tsid2=y; __host-keycard=z"]):
    write("cookie_header", f"seed-{i}", v)

# token_decode: first byte = mode (0 raw token, 1 claims, 2 header\0claims, 3 edits)
for alg, kid in [("HS256", "hs"), ("EdDSA", "ed"), ("ES256", "es"), ("RS256", "rs")]:
    write("token_decode", f"raw-{alg}", b"\x00" + token(alg, kid).encode())
write("token_decode", "raw-opaque", b"\x00" + tok)
write("token_decode", "raw-none", b"\x00" + (b64(b'{"alg":"none","typ":"at+jwt","kid":"hs"}') + "." +
                                             b64(json.dumps(CLAIMS).encode()) + ".").encode())
write("token_decode", "claims", b"\x01" + json.dumps(CLAIMS).encode())
write("token_decode", "claims-aud-array",
      b"\x01" + json.dumps(dict(CLAIMS, aud=[AUD, "other"], nbf=NOW, auth_time=NOW,
                                tenant="t1")).encode())
write("token_decode", "header-claims",
      b"\x02" + b'{"alg":"HS256","typ":"at+jwt","kid":"hs"}\x00' + json.dumps(CLAIMS).encode())
write("token_decode", "edits", b"\x03\x10\x00A\x40\x00\x90\x20\x01\xc5")

# config_toml
CONFIGS = {
    "database": 'strategy = "database"\n[database]\nurl = "sqlite://keycard.db"\n[session]\n'
                'idle_timeout = "30m"\nabsolute_timeout = "12h"\nmax_sessions = 5\n'
                'on_limit = "evict_oldest"\n',
    "redis": 'strategy = "redis"\n[redis]\nurl = "redis://127.0.0.1:6379"\nkey_prefix = "kc"\n'
             '[cookie]\nname = "sid"\nsecure = false\n[limits]\nmax_cookies = 20\n',
    "jwt": 'strategy = "jwt"\n[jwt]\nissuer = "https://a"\naudience = "b"\naccess_ttl = "10m"\n'
           '[[jwt.keys]]\nkid = "k1"\nalg = "HS256"\nsecret = "' +
           base64.b64encode(HS_SECRET).decode() + '"\nsigning = true\n[jwt.refresh]\nidle = "7d"\n'
           'absolute = "30d"\n[cookie]\nrefresh_cookie = true\n',
    "hybrid": 'strategy = "hybrid"\n[jwt]\nissuer = "i"\naudience = "a"\nephemeral_key = true\n'
              '[jwt.jwks]\nurl = "https://idp/jwks.json"\n[csrf]\n',
}
for name, text in CONFIGS.items():
    write("config_toml", name, text)
