"""An OpenID Connect issuer of the tests' own: a real HTTP server on a free loopback port,
in a thread, shaped like a Keycloak realm so that Keycloak's clients (okdata-sdk through
python-keycloak) talk to it unchanged.

- ``GET  /realms/<realm>/.well-known/openid-configuration``: discovery (``issuer``,
  ``jwks_uri``, ``token_endpoint``);
- ``GET  /realms/<realm>/protocol/openid-connect/certs``: the JWKS;
- ``POST /realms/<realm>/protocol/openid-connect/token``: the client-credentials grant
  (``client_id``/``client_secret`` in the form or HTTP Basic), answered as Keycloak does:
  ``access_token``, ``expires_in``, ``refresh_expires_in``, ``token_type``.

It signs RS256 and ES256 with keys it generates, rotates its signing key on demand
(:meth:`Issuer.rotate`), and counts the requests each path had (``hits``), so tests can
tell how often a verifier fetched the keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

REALM = "waymark"
TOKEN_LIFETIME_S = 300


@dataclass
class SigningKey:
    kid: str
    alg: str  # RS256 or ES256
    private: Any

    @classmethod
    def generate(cls, alg: str) -> SigningKey:
        private: Any
        if alg == "RS256":
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
        else:
            raise ValueError(f"the test issuer signs RS256 or ES256, not {alg}")
        return cls(kid=f"{alg.lower()}-{uuid.uuid4().hex[:12]}", alg=alg, private=private)

    def jwk(self) -> dict[str, Any]:
        algorithm = RSAAlgorithm if self.alg == "RS256" else ECAlgorithm
        data: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**data, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


@dataclass
class ClientApp:
    """A registered client: its secret and the claims its tokens carry beyond the usual."""

    secret: str
    claims: dict[str, Any] = field(default_factory=dict)


class Issuer:
    """The issuer; use as a context manager, or :meth:`start` and :meth:`stop`."""

    def __init__(self, realm: str = REALM) -> None:
        self.realm = realm
        self.keys = [SigningKey.generate("RS256"), SigningKey.generate("ES256")]
        self.clients: dict[str, ClientApp] = {}
        self.hits: Counter[str] = Counter()
        self.up = True  # False: every request is answered 503
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.url = f"{self.base_url}/realms/{realm}"  # the issuer, as tokens name it (iss)
        self._thread: threading.Thread | None = None

    # -- running ---------------------------------------------------------------------------

    def start(self) -> Issuer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> Issuer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- keys and tokens -------------------------------------------------------------------

    def key(self, alg: str = "RS256") -> SigningKey:
        """The current signing key for ``alg``."""
        with self._lock:
            return next(k for k in reversed(self.keys) if k.alg == alg)

    def rotate(self, alg: str = "RS256", keep_old: bool = False) -> SigningKey:
        """A new signing key for ``alg``; the old one leaves the JWKS unless ``keep_old``."""
        new = SigningKey.generate(alg)
        with self._lock:
            if not keep_old:
                self.keys = [k for k in self.keys if k.alg != alg]
            self.keys.append(new)
        return new

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return {"keys": [k.jwk() for k in self.keys]}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Claims of a valid token of this issuer; ``overrides`` replace (None removes)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "sub": str(uuid.uuid4()),
            "iat": now,
            "exp": now + TOKEN_LIFETIME_S,
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self,
        claims: dict[str, Any] | None = None,
        *,
        alg: str = "RS256",
        key: SigningKey | None = None,
        kid: str | None = "",
        **overrides: Any,
    ) -> str:
        """A signed token: ``claims`` (default :meth:`claims` with ``overrides``), by
        ``key`` (default the current key of ``alg``); ``kid`` None leaves it out of the
        header, a string replaces the key's own."""
        signer = key or self.key(alg)
        headers = {"kid": signer.kid if kid == "" else kid}
        if kid is None:
            headers = {}
        return jwt.encode(
            claims if claims is not None else self.claims(**overrides),
            signer.private,
            algorithm=signer.alg,
            headers=headers,
        )

    def unsigned_token(self, **overrides: Any) -> str:
        """The same claims with ``alg: none`` and no signature."""
        return _compact({"alg": "none", "typ": "JWT"}, self.claims(**overrides), b"")

    def hmac_with_public_key(self, **overrides: Any) -> str:
        """An HS256 token whose "secret" is the RS256 key's public PEM: what a verifier that
        lets the token choose the algorithm would accept."""
        signer = self.key("RS256")
        header = {"alg": "HS256", "typ": "JWT", "kid": signer.kid}
        claims = self.claims(**overrides)
        mac = hmac.new(signer.public_pem(), _signing_input(header, claims), hashlib.sha256)
        return _compact(header, claims, mac.digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signing_input(header: dict[str, Any], claims: dict[str, Any]) -> bytes:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}".encode()


def _compact(header: dict[str, Any], claims: dict[str, Any], signature: bytes) -> str:
    return f"{_signing_input(header, claims).decode()}.{_b64(signature)}"


def _handler(issuer: Issuer) -> type[BaseHTTPRequestHandler]:
    prefix = f"/realms/{issuer.realm}"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            issuer.hits[path] += 1
            if not issuer.up:
                return self._answer(503, {"error": "unavailable"})
            if path == f"{prefix}/.well-known/openid-configuration":
                return self._answer(
                    200,
                    {
                        "issuer": issuer.url,
                        "jwks_uri": f"{issuer.url}/protocol/openid-connect/certs",
                        "token_endpoint": f"{issuer.url}/protocol/openid-connect/token",
                        "grant_types_supported": ["client_credentials"],
                        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                    },
                )
            if path == f"{prefix}/protocol/openid-connect/certs":
                return self._answer(200, issuer.jwks())
            return self._answer(404, {"error": "not found"})

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            issuer.hits[path] += 1
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if path != f"{prefix}/protocol/openid-connect/token":
                return self._answer(404, {"error": "not found"})
            if not issuer.up:
                return self._answer(503, {"error": "unavailable"})
            basic = self.headers.get("Authorization", "")
            if basic.startswith("Basic "):
                user, _, password = base64.b64decode(basic[6:]).decode().partition(":")
                form.setdefault("client_id", user)
                form.setdefault("client_secret", password)
            if form.get("grant_type") != "client_credentials":
                return self._answer(
                    400,
                    {
                        "error": "unsupported_grant_type",
                        "error_description": "only client_credentials",
                    },
                )
            client = issuer.clients.get(form.get("client_id", ""))
            if client is None or not hmac.compare_digest(
                client.secret.encode(), form.get("client_secret", "").encode()
            ):
                return self._answer(
                    401,
                    {"error": "unauthorized_client", "error_description": "Invalid client secret"},
                )
            client_id = form["client_id"]
            token = issuer.token(
                azp=client_id,
                client_id=client_id,
                sub=f"service-account-{client_id}",
                typ="Bearer",
                **client.claims,
            )
            return self._answer(
                200,
                {
                    "access_token": token,
                    "expires_in": TOKEN_LIFETIME_S,
                    "refresh_expires_in": 0,
                    "token_type": "Bearer",
                    "not-before-policy": 0,
                    "scope": "profile email",
                },
            )

    return Handler
