"""Docker registry tokens: JWTs signed ES256 or RS256, issued by /auth/token and verified per request.

The signing key comes from a PEM file or is generated once into DATA_DIR/auth/ (mode 0600) so
tokens survive a restart. An external issuer can be trusted instead (its public key or a JWKS
file). Refresh tokens (the `offline_token` / OAuth2 `refresh_token`) are JWTs of the same key
with their own audience, so an access token can never be used as one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from registry.auth.files import AuthFileError

EXTERNAL_LEEWAY_SECONDS = 30
REFRESH_AUDIENCE_SUFFIX = "#refresh"


class TokenError(Exception):
    """Why a token is not accepted (expired, bad signature, wrong audience, ...)."""


class KeyFileError(AuthFileError):
    """A token key file (signing key, external public key or JWKS) that cannot be used."""


def libtrust_key_id(public_key: Any) -> str:
    """The key id format Docker's libtrust uses: base32 of a SHA-256 of the DER key, in groups of 4."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, 48, 4))


def check_signing_key(path: Path, algorithm: str) -> Any:
    """The private key in `path`, which must fit `algorithm`; KeyFileError saying what is wrong."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the token signing key: {exc}") from None
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # not PEM, encrypted, unknown kind
        raise KeyFileError(f"{path}: not a usable PEM private key (it must be unencrypted): "
                           f"{' '.join(str(exc).split())[:200]}") from None
    wanted = ec.EllipticCurvePrivateKey if algorithm == "ES256" else rsa.RSAPrivateKey
    if not isinstance(key, wanted):
        kind = "an EC P-256" if algorithm == "ES256" else "an RSA"
        raise KeyFileError(f"{path}: auth.token.algorithm {algorithm} needs {kind} key; this is "
                           f"{type(key).__name__.lstrip('_')}")
    if isinstance(key, ec.EllipticCurvePrivateKey) and not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError(f"{path}: ES256 needs a P-256 key; this one is on {key.curve.name}")
    return key


def load_or_create_key(path: Path, algorithm: str) -> Any:
    if path.exists():
        return check_signing_key(path, algorithm)
    key: Any = ec.generate_private_key(ec.SECP256R1()) if algorithm == "ES256" else \
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return key


@dataclass(frozen=True)
class Grant:
    repository: str
    actions: tuple[str, ...]

    def claim(self) -> dict[str, Any]:
        return {"type": "repository", "name": self.repository, "actions": list(self.actions)}


class TokenIssuer:
    def __init__(self, key: Any, algorithm: str, issuer: str, service: str, expiry: int, refresh_expiry: int) -> None:
        self.key = key
        self.algorithm = algorithm
        self.issuer = issuer
        self.service = service
        self.expiry = expiry
        self.refresh_expiry = refresh_expiry
        self.key_id = libtrust_key_id(key.public_key())

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key, algorithm=self.algorithm, headers={"kid": self.key_id})

    def access_token(self, subject: str, grants: list[Grant], not_after: float | None = None,
                     groups: tuple[str, ...] = ()) -> tuple[str, int]:
        now = int(time.time())
        expires = now + self.expiry
        if not_after is not None:  # never outlive the credential it was issued for
            expires = min(expires, int(not_after))
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "iat": now, "nbf": now - 1,
                  "exp": expires, "jti": uuid.uuid4().hex, "access": [g.claim() for g in grants]}
        if groups:  # for the admin role; repository access is in `access` alone
            claims["groups"] = list(groups)
        return self._sign(claims), max(expires - now, 0)

    def refresh_token(self, subject: str, not_after: float | None = None) -> str:
        now = int(time.time())
        expires = now + self.refresh_expiry
        if not_after is not None:
            expires = min(expires, int(not_after))
        return self._sign({"iss": self.issuer, "sub": subject, "aud": self.service + REFRESH_AUDIENCE_SUFFIX,
                           "iat": now, "exp": expires, "jti": uuid.uuid4().hex})


def algorithms_for(key: Any) -> list[str]:
    """Only the algorithms that fit the key's type: no confusion of an RSA key with an HMAC secret."""
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        return ["ES256", "ES384", "ES512"]
    if isinstance(key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
        return ["RS256", "RS384", "RS512"]
    raise ValueError(f"unsupported token key type {type(key).__name__}")


class TokenVerifier:
    def __init__(self, keys: list[Any], issuer: str, service: str, leeway: int = 0) -> None:
        """`leeway` allows for clock skew with an external issuer; tokens we issue need none,
        so a token capped at a robot's expiry ends exactly then."""
        self.keys = keys
        self.issuer = issuer
        self.service = service
        self.leeway = leeway

    def access(self, token: str) -> dict[str, Any]:
        return self._decode(token, self.service)

    def refresh(self, token: str) -> dict[str, Any]:
        return self._decode(token, self.service + REFRESH_AUDIENCE_SUFFIX)

    def _decode(self, token: str, audience: str) -> dict[str, Any]:
        last: Exception | None = None
        for key in self.keys:
            try:
                return jwt.decode(token, key, algorithms=algorithms_for(key), audience=audience, issuer=self.issuer,
                                  leeway=self.leeway, options={"require": ["exp", "iss", "aud"]})
            except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError) as exc:
                last = exc  # maybe another trusted key signed it
                continue
            except jwt.PyJWTError as exc:
                raise TokenError(str(exc)) from None
            except (TypeError, ValueError) as exc:  # a key that cannot check this token at all
                last = exc
                continue
        raise TokenError(f"token signature not trusted: {last}")

    @staticmethod
    def grants(claims: dict[str, Any]) -> dict[str, frozenset[str]]:
        """{repository: actions} from the `access` claim; entries of any other shape grant nothing."""
        granted: dict[str, frozenset[str]] = {}
        entries = claims.get("access")
        for entry in entries if isinstance(entries, list) else []:
            if not (isinstance(entry, dict) and entry.get("type") == "repository"
                    and isinstance(entry.get("name"), str)):
                continue
            listed = entry.get("actions")
            actions = {a for a in listed if isinstance(a, str)} if isinstance(listed, list) else set()
            if "*" in actions:
                actions = {"pull", "push", "delete"}
            granted[entry["name"]] = granted.get(entry["name"], frozenset()) | frozenset(actions)
        return granted


def external_keys(public_key_file: str, jwks_file: str) -> list[Any]:
    """The public keys of an external token issuer; KeyFileError naming the file and what is wrong."""
    keys: list[Any] = []
    if public_key_file:
        path = Path(public_key_file)
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot read the external issuer's public key: {exc}") from None
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise KeyFileError(f"{path}: not a PEM public key: {' '.join(str(exc).split())[:200]}") from None
        keys.append(_usable(key, str(path)))
    if jwks_file:
        path = Path(jwks_file)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot read the JWKS file: {exc}") from None
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError alike
            raise KeyFileError(f"{path}: not JSON: {exc}") from None
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list) or not document["keys"]:
            raise KeyFileError(f"{path}: a JWKS is an object with a non-empty `keys` list")
        for index, entry in enumerate(document["keys"]):
            try:
                jwk = jwt.PyJWK.from_dict(entry)
            except (jwt.PyJWTError, ValueError, TypeError, KeyError, AttributeError) as exc:
                raise KeyFileError(f"{path}: keys[{index}]: not a usable key: {exc}") from None
            keys.append(_usable(jwk.key, f"{path}: keys[{index}]"))
    return keys


def _usable(key: Any, where: str) -> Any:
    try:
        algorithms_for(key)
    except ValueError as exc:
        raise KeyFileError(f"{where}: {exc} (EC or RSA keys only)") from None
    return key
