"""Service-account tokens: the TokenRequest API (`POST .../serviceaccounts/NAME/token`, what a kubelet asks
for the token it mounts in a pod) and the authenticator that accepts those tokens.

Tokens are JWTs signed with ES256 by a key of the server's own (`DATA_DIR/pki/sa.key`, kube-apiserver's
--service-account-signing-key-file), with the claims the real server writes: `iss`, `sub`
(`system:serviceaccount:NS:NAME`), `aud`, `exp`/`iat`/`nbf`, `jti` and the private `kubernetes.io` claim
naming the namespace, the ServiceAccount and the pod the token is bound to. As in the real server, a token is
only accepted while its ServiceAccount (same uid) and its bound pod (same uid) still exist, so deleting a pod
revokes its token.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from lab.apiserver import errors
from lab.apiserver.rbac import SERVICE_ACCOUNT_PREFIX, UserInfo, authenticated_user

ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600  # the real validation's lower bound for spec.expirationSeconds
MAX_EXPIRATION = 2**32
_HEADER = {"alg": "ES256", "typ": "JWT"}

# (namespace, name) of an object -> its uid, or None when it does not exist.
UidLookup = Callable[[str, str], str | None]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_or_create_key(pki_dir: Path | None) -> ec.EllipticCurvePrivateKey:
    """The signing key, kept beside the CA so tokens stay valid across restarts."""
    path = pki_dir / "sa.key" if pki_dir is not None else None
    if path is not None and path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path}: not an EC private key")
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        tmp = path.with_suffix(".tmp")
        tmp.touch(mode=0o600)
        tmp.write_bytes(pem)
        tmp.replace(path)
    return key


@dataclass(frozen=True)
class Claims:
    namespace: str
    service_account: str
    service_account_uid: str
    pod: str
    pod_uid: str
    expires: int


class TokenIssuer:
    def __init__(self, key: ec.EllipticCurvePrivateKey, audience: str = ISSUER) -> None:
        self.key = key
        self.audience = audience

    def sign(self, claims: Mapping[str, Any]) -> str:
        head = _b64(json.dumps(_HEADER, separators=(",", ":")).encode())
        body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        der = self.key.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{head}.{body}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def issue(
        self,
        namespace: str,
        account: Mapping[str, Any],
        request: Mapping[str, Any],
        pod_uid: UidLookup,
        now: datetime.datetime,
    ) -> dict[str, Any]:
        """Answer a TokenRequest for `account`: the TokenRequest with status.token and
        status.expirationTimestamp. Raises ApiError (422/404) as the real registry does."""
        spec = request.get("spec") if isinstance(request, dict) else None
        spec = spec if isinstance(spec, dict) else {}
        seconds = spec.get("expirationSeconds", DEFAULT_EXPIRATION)
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            raise _invalid("spec.expirationSeconds", f"Invalid value: {seconds!r}: must be an integer")
        if seconds < MIN_EXPIRATION or seconds > MAX_EXPIRATION:
            raise _invalid(
                "spec.expirationSeconds",
                "may not specify a duration less than 10 minutes"
                if seconds < MIN_EXPIRATION
                else "may not specify a duration larger than 2^32 seconds",
            )
        audiences = [str(a) for a in spec.get("audiences") or [] if a] or [self.audience]
        meta = account["metadata"]
        private: dict[str, Any] = {
            "namespace": namespace,
            "serviceaccount": {"name": meta["name"], "uid": meta.get("uid", "")},
        }
        bound = spec.get("boundObjectRef")
        if isinstance(bound, dict) and bound:
            if bound.get("kind") != "Pod":
                raise _invalid(
                    "spec.boundObjectRef.kind",
                    f'Unsupported value: {bound.get("kind")!r}: supported values: "Pod"',
                    "FieldValueNotSupported",
                )
            name = str(bound.get("name") or "")
            uid = pod_uid(namespace, name)
            if uid is None:
                raise errors.not_found("pods", name)
            if bound.get("uid") and bound.get("uid") != uid:
                raise errors.ApiError(
                    409,
                    "Conflict",
                    f"the UID in the bound object reference ({bound.get('uid')}) does not match the UID in "
                    "record. The object might have been deleted and then recreated",
                    kind="pods",
                    name=name,
                )
            private["pod"] = {"name": name, "uid": uid}
        issued = int(now.timestamp())
        claims = {
            "aud": audiences,
            "exp": issued + seconds,
            "iat": issued,
            "iss": ISSUER,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": private,
            "nbf": issued,
            "sub": f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{meta['name']}",
        }
        expires = datetime.datetime.fromtimestamp(issued + seconds, datetime.UTC)
        return {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": meta["name"], "namespace": namespace, "creationTimestamp": None},
            "spec": {
                "audiences": audiences,
                "expirationSeconds": seconds,
                "boundObjectRef": bound if isinstance(bound, dict) and bound else None,
            },
            "status": {
                "token": self.sign(claims),
                "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        }

    def verify(self, token: str, now: datetime.datetime) -> Claims | None:
        """The token's claims when its signature, issuer, audience and lifetime check out, else None."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            header = json.loads(_unb64(parts[0]))
            claims = json.loads(_unb64(parts[1]))
            signature = _unb64(parts[2])
        except (ValueError, binascii.Error):
            return None
        if header != _HEADER or len(signature) != 64 or not isinstance(claims, dict):
            return None
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        der = encode_dss_signature(r, s)
        try:
            self.key.public_key().verify(der, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return None
        moment = now.timestamp()
        private = claims.get("kubernetes.io")
        if (
            claims.get("iss") != ISSUER
            or self.audience not in (claims.get("aud") or [])
            or not isinstance(claims.get("exp"), int)
            or claims["exp"] <= moment
            or claims.get("nbf", 0) > moment + 60
            or not isinstance(private, dict)
        ):
            return None
        account = private.get("serviceaccount") or {}
        pod = private.get("pod") or {}
        return Claims(
            namespace=str(private.get("namespace") or ""),
            service_account=str(account.get("name") or ""),
            service_account_uid=str(account.get("uid") or ""),
            pod=str(pod.get("name") or ""),
            pod_uid=str(pod.get("uid") or ""),
            expires=int(claims["exp"]),
        )


def _invalid(field: str, message: str, reason: str = "FieldValueInvalid") -> errors.ApiError:
    return errors.invalid("TokenRequest", "", [errors.Cause(field, message, reason)], "authentication.k8s.io")


def looks_like_jwt(token: str) -> bool:
    return token.startswith("eyJ") and token.count(".") == 2


def authenticate(
    issuer: TokenIssuer,
    token: str,
    account_uid: UidLookup,
    pod_uid: UidLookup,
    now: datetime.datetime,
) -> UserInfo | None:
    """The service account a token names, while the account and the pod it is bound to still exist."""
    claims = issuer.verify(token, now)
    if claims is None or not claims.namespace or not claims.service_account:
        return None
    if account_uid(claims.namespace, claims.service_account) != claims.service_account_uid:
        return None
    if claims.pod and pod_uid(claims.namespace, claims.pod) != claims.pod_uid:
        return None
    name = f"{SERVICE_ACCOUNT_PREFIX}{claims.namespace}:{claims.service_account}"
    return authenticated_user(name, claims.service_account_uid)
