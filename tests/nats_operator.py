"""NATS decentralized authentication for tests: an operator, an account with JetStream (and
the system account the server needs) and a user, made here (NKeys and signed JWTs, as
``nsc`` makes them); the server settings that trust them (a memory resolver preloaded with
the accounts) and the user's ``.creds`` file."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import nkeys


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_key(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix))


def public(key: nkeys.KeyPair) -> str:
    return str(key.public_key.decode())


def signed(issuer: nkeys.KeyPair, subject: str, name: str, nats: dict[str, Any]) -> str:
    """A NATS JWT (``ed25519-nkey``) about ``subject``, signed by ``issuer``."""
    claims = {"iat": int(time.time()), "iss": public(issuer), "name": name, "sub": subject}
    claims["nats"] = {**nats, "version": 2}
    claims["jti"] = base64.b32encode(hashlib.sha256(json.dumps(claims).encode()).digest())
    claims["jti"] = claims["jti"].decode().rstrip("=")
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = issuer.sign(f"{header}.{body}".encode())
    return f"{header}.{body}.{_b64(signature)}"


UNLIMITED = {"subs": -1, "data": -1, "payload": -1}


def operator_setup(directory: Path) -> tuple[str, Path]:
    """The server settings that trust a new operator and its account, and the path of a
    ``.creds`` file of a user of that account."""
    operator = new_key(nkeys.PREFIX_BYTE_OPERATOR)
    account = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
    system = new_key(nkeys.PREFIX_BYTE_ACCOUNT)  # JetStream needs the server's own account
    user = new_key(nkeys.PREFIX_BYTE_USER)
    operator_jwt = signed(operator, public(operator), "tests", {"type": "operator"})
    limits = {
        **UNLIMITED,
        "imports": -1,
        "exports": -1,
        "wildcards": True,
        "conn": -1,
        "leaf": -1,
        "mem_storage": -1,
        "disk_storage": -1,
        "streams": -1,
        "consumer": -1,
    }
    account_jwt = signed(
        operator, public(account), "waymark", {"type": "account", "limits": limits}
    )
    system_jwt = signed(operator, public(system), "SYS", {"type": "account", "limits": UNLIMITED})
    user_jwt = signed(
        account, public(user), "collector", {"type": "user", "pub": {}, "sub": {}, **UNLIMITED}
    )
    creds = directory / "collector.creds"
    creds.write_text(
        "-----BEGIN NATS USER JWT-----\n"
        f"{user_jwt}\n"
        "------END NATS USER JWT------\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{user.seed.decode()}\n"
        "------END USER NKEY SEED------\n"
    )
    settings = (
        f"operator: {operator_jwt}\n"
        f"system_account: {public(system)}\n"
        "resolver: MEMORY\n"
        "resolver_preload: {\n"
        f"  {public(account)}: {account_jwt}\n"
        f"  {public(system)}: {system_jwt}\n"
        "}\n"
    )
    return settings, creds
