"""What an OpenID Connect token costs the server: the first check of a token (signature
and claims) against a check of a token already verified, in the same run; prints JSON.

    python bench/oidc_verify.py [--tokens 2000]

An issuer on loopback (the tests' own, :mod:`tests.oidc_issuer`) signs ``--tokens``
distinct RS256 and ES256 tokens; :class:`waymark.auth.oidc.OidcAuthenticator` checks each
once (keys already fetched), then all of them again five times. The ratio says how much
the verified-token cache saves on a hot path where a client sends one token until it
expires.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.oidc_issuer import Issuer

from waymark.auth.oidc import OidcAuthenticator

AGAIN = 5


async def measure(auth: OidcAuthenticator, tokens: list[str]) -> dict[str, float]:
    await auth.authenticate(tokens[0])  # fetches the keys
    rest = tokens[1:]
    started = time.perf_counter()
    for token in rest:
        await auth.authenticate(token)
    first = (time.perf_counter() - started) / len(rest)
    started = time.perf_counter()
    for _ in range(AGAIN):
        for token in rest:
            await auth.authenticate(token)
    cached = (time.perf_counter() - started) / (AGAIN * len(rest))
    return {
        "first_check_us": round(first * 1e6, 1),
        "cached_check_us": round(cached * 1e6, 2),
        "first_over_cached": round(first / cached, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=2000)
    args = parser.parse_args()
    out = {}
    with Issuer() as issuer:
        for alg in ("RS256", "ES256"):
            tokens = [
                issuer.token(aud="waymark", alg=alg, sub=f"s{i}", waymark_roles=["t:writer"])
                for i in range(args.tokens)
            ]
            auth = OidcAuthenticator(issuer.url, "waymark", cache_size=args.tokens)
            out[alg] = asyncio.run(measure(auth, tokens))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
