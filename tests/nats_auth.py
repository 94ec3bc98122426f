"""NATS decentralized auth for tests: an operator, an account with JetStream and a user, as
``nsc`` would make them (nkeys signed JWTs, a ``.creds`` file), plus the server's config.

The server runs in operator mode with a memory resolver: it trusts the operator, knows the
account from its preloaded JWT, and lets in a user whose JWT that account signed and who
proves, with the seed in the ``.creds`` file, that it holds the user's key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys

NO_LIMIT = -1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Identity:
    """An nkey pair: its seed (secret) and public key."""

    seed: bytes
    public: str

    @classmethod
    def new(cls, prefix: int) -> Identity:
        """A fresh key of kind ``prefix`` (nkeys.PREFIX_BYTE_OPERATOR, _ACCOUNT or _USER)."""
        seed = nkeys.encode_seed(os.urandom(32), prefix)
        return cls(seed, nkeys.from_seed(bytearray(seed)).public_key.decode())

    def sign_jwt(self, subject: str, name: str, nats: dict[str, Any]) -> str:
        """A JWT about ``subject`` issued (signed) by this identity."""
        claims: dict[str, Any] = {
            "iat": int(time.time()),
            "iss": self.public,
            "name": name,
            "sub": subject,
            "nats": nats,
        }
        digest = hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()
        claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
        header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
        payload = _b64(json.dumps(claims).encode())
        signature = nkeys.from_seed(bytearray(self.seed)).sign(f"{header}.{payload}".encode())
        return f"{header}.{payload}.{_b64(signature)}"


@dataclass(frozen=True)
class Account:
    """An operator, one account with JetStream, and the ability to make users of it."""

    operator: Identity
    account: Identity
    operator_jwt: str
    account_jwt: str
    #: The server's own account (JetStream needs one in operator mode); no user of ours.
    system: Identity
    system_jwt: str

    @classmethod
    def new(cls, name: str = "pipeline") -> Account:
        """A fresh operator and its account ``name`` (no limits, JetStream enabled)."""
        operator = Identity.new(nkeys.PREFIX_BYTE_OPERATOR)
        account = Identity.new(nkeys.PREFIX_BYTE_ACCOUNT)
        operator_jwt = operator.sign_jwt(
            operator.public, "test-operator", {"type": "operator", "version": 2}
        )
        limits = {
            "subs": NO_LIMIT,
            "data": NO_LIMIT,
            "payload": NO_LIMIT,
            "imports": NO_LIMIT,
            "exports": NO_LIMIT,
            "wildcards": True,
            "conn": NO_LIMIT,
            "leaf": NO_LIMIT,
            "mem_storage": NO_LIMIT,
            "disk_storage": NO_LIMIT,
            "streams": NO_LIMIT,
            "consumer": NO_LIMIT,
        }
        account_jwt = operator.sign_jwt(
            account.public, name, {"type": "account", "version": 2, "limits": limits}
        )
        system = Identity.new(nkeys.PREFIX_BYTE_ACCOUNT)
        system_jwt = operator.sign_jwt(system.public, "SYS", {"type": "account", "version": 2})
        return cls(operator, account, operator_jwt, account_jwt, system, system_jwt)

    def server_config(self) -> str:
        """The nats-server configuration lines that trust this operator and know the account."""
        return (
            f'operator: "{self.operator_jwt}"\n'
            f"system_account: {self.system.public}\n"
            "resolver: MEMORY\n"
            f'resolver_preload: {{\n  {self.account.public}: "{self.account_jwt}"\n'
            f'  {self.system.public}: "{self.system_jwt}"\n}}\n'
        )

    def user_creds(self, path: Path, name: str = "pipeline-user") -> Path:
        """Write a ``.creds`` file (user JWT + seed) for a new user of this account."""
        user = Identity.new(nkeys.PREFIX_BYTE_USER)
        limits = {"subs": NO_LIMIT, "data": NO_LIMIT, "payload": NO_LIMIT}
        user_jwt = self.account.sign_jwt(
            user.public, name, {"type": "user", "version": 2, "pub": {}, "sub": {}, **limits}
        )
        path.write_text(
            "-----BEGIN NATS USER JWT-----\n"
            f"{user_jwt}\n"
            "------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n"
            "NKEYs are sensitive and should be treated as secrets.\n\n"
            "-----BEGIN USER NKEY SEED-----\n"
            f"{user.seed.decode()}\n"
            "------END USER NKEY SEED------\n"
        )
        path.chmod(0o600)
        return path
