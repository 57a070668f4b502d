"""HTTP Signatures as Mastodon speaks them: draft-cavage-http-signatures-12 with RSA-SHA256.

What lives here: key pair generation, signing an outgoing request (Host, Date, Digest and
Signature headers), and verifying an incoming one (digest, date skew, signed headers, RSA).
`OnlyKey`: the mixin for the model of the blog's one key pair, made on first use.

Why not the `http-message-signatures` library the issue suggests: it implements RFC 9421 only.
Its signature base is built from `"@method": ...` component lines plus a `"@signature-params"`
line and travels in `Signature-Input`/`Signature` dictionary headers, with RFC 9530
`Content-Digest`; it has no way to emit the cavage `Signature: keyId=...,headers=...` header or
its `(request-target)` signing string, which is what Mastodon (and most of the fediverse) requires
by default. Its RSA class is a three-line wrapper over `cryptography`'s PKCS#1 v1.5 + SHA-256, so
using `cryptography` directly for the RSA part costs nothing and drops a dependency.
"""

import base64
import hashlib
import hmac
import re
import time
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.db import IntegrityError, transaction

# Headers every signature must cover. Mastodon signs exactly these (plus digest on POST); requiring
# them stops a signature over, say, only `date` being replayed against any path or host.
REQUIRED_HEADERS = ("(request-target)", "host", "date")
# hs2019 is the newer cavage name; Mastodon sends rsa-sha256 but accepts both, so we do too.
ALGORITHMS = {"rsa-sha256", "hs2019"}
_PARAM = re.compile(r'\s*([A-Za-z]+)\s*=\s*"([^"]*)"\s*(?:,|$)')


class SignatureError(Exception):
    """The request's signature is missing, malformed or does not verify (answer 401)."""


def generate_key_pair() -> tuple[str, str]:
    """Make a new RSA 2048 key pair; returns (private_pem, public_pem) as text for the database."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem.decode(), public_pem.decode()


def digest_header(body: bytes) -> str:
    """The `Digest` header value for a body (RFC 3230 form, which Mastodon checks)."""
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()


def signing_string(method: str, path: str, headers: dict, signed: list[str]) -> str:
    """The cavage signing string: one `name: value` line per signed header, in the signed order.

    `headers` must have lower-case keys. `path` includes the query string, as the request target does.
    """
    lines = []
    for name in signed:
        if name == "(request-target)":
            lines.append(f"(request-target): {method.lower()} {path}")
        elif name in headers:
            lines.append(f"{name}: {headers[name]}")
        else:
            raise SignatureError(f"signed header {name!r} is not present in the request")
    return "\n".join(lines)


def sign_request(method: str, url: str, headers: dict | None, body: bytes | None,
                 key_id: str, private_pem: str) -> dict:
    """Sign a request; returns the headers to add to it: Host, Date, (Digest,) Signature.

    A body (even empty, for POST) gets a Digest and signs it, because Mastodon refuses a POST whose
    digest is not signed; a GET with body None signs only (request-target), host and date.
    """
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    added = {"Host": parts.netloc, "Date": formatdate(usegmt=True)}
    if body is not None:
        added["Digest"] = digest_header(body)
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    lowered.update({k.lower(): v for k, v in added.items()})
    signed = list(REQUIRED_HEADERS) + (["digest"] if body is not None else [])
    text = signing_string(method, path, lowered, signed)
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    raw = key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())
    added["Signature"] = (
        f'keyId="{key_id}",algorithm="rsa-sha256",headers="{" ".join(signed)}",'
        f'signature="{base64.b64encode(raw).decode()}"'
    )
    return added


def parse_signature_header(value: str) -> dict:
    """Split `keyId="..",algorithm="..",headers="..",signature=".."` into a dict; strict on shape."""
    params, pos = {}, 0
    while pos < len(value):
        match = _PARAM.match(value, pos)
        if not match:
            raise SignatureError("Signature header is malformed")
        params[match.group(1)] = match.group(2)
        pos = match.end()
    for needed in ("keyId", "signature"):
        if not params.get(needed):
            raise SignatureError(f"Signature header has no {needed}")
    if params.get("algorithm", "hs2019").lower() not in ALGORITHMS:
        raise SignatureError(f"unsupported signature algorithm {params['algorithm']!r}")
    return params


def verify_request(method, path, headers, body, public_pem_lookup, max_skew=300, now=None) -> str:
    """Check an incoming request's signature; returns the verified keyId or raises SignatureError.

    `path` is the request target with its query string; `headers` any mapping (Django's
    request.headers works); `public_pem_lookup(key_id)` returns the PEM or None when the key is
    unknown (it usually fetches the actor, see activitypub.fetch_actor). The caller must still check
    that the key's owner is the activity's actor.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    if "signature" not in lowered:
        raise SignatureError("missing Signature header")
    params = parse_signature_header(lowered["signature"])
    # cavage: without a headers parameter only Date is signed, which we never accept.
    signed = params.get("headers", "date").lower().split()
    _check_covered(signed, body)
    _check_date(lowered, max_skew, now)
    _check_digest(lowered, body)
    public_pem = public_pem_lookup(params["keyId"])
    if not public_pem:
        raise SignatureError(f"unknown key {params['keyId']!r}")
    _check_rsa(public_pem, signing_string(method, path, lowered, signed), params["signature"])
    return params["keyId"]


def _check_covered(signed: list[str], body: bytes | None) -> None:
    """Refuse signatures that leave out what an attacker could change: target, host, date, body."""
    missing = [name for name in REQUIRED_HEADERS if name not in signed]
    if body and "digest" not in signed:
        missing.append("digest")
    if missing:
        raise SignatureError(f"required headers not signed: {', '.join(missing)}")


def _check_date(headers: dict, max_skew: float, now: float | None) -> None:
    """A signed Date within max_skew of our clock, so a captured request cannot be replayed later."""
    if "date" not in headers:
        raise SignatureError("missing Date header")
    try:
        sent = parsedate_to_datetime(headers["date"]).timestamp()
    except (TypeError, ValueError, IndexError):
        raise SignatureError("Date header is not an HTTP date") from None
    skew = (time.time() if now is None else now) - sent
    if skew > max_skew:
        raise SignatureError(f"Date is too old ({int(skew)}s)")
    if skew < -max_skew:
        raise SignatureError(f"Date is too far in the future ({int(-skew)}s)")


def _check_digest(headers: dict, body: bytes | None) -> None:
    """The body must hash to the signed Digest; the signature covers only the digest, not the body."""
    if not body and "digest" not in headers:
        return
    if "digest" not in headers:
        raise SignatureError("missing Digest header")
    # Digest may list several algorithms (`SHA-256=..,SHA-512=..`); we need the SHA-256 one.
    offered = dict(part.strip().split("=", 1) for part in headers["digest"].split(",") if "=" in part)
    theirs = {k.upper(): v for k, v in offered.items()}.get("SHA-256")
    if theirs is None:
        raise SignatureError("Digest header has no SHA-256 value")
    if not hmac.compare_digest(theirs, digest_header(body or b"").split("=", 1)[1]):
        raise SignatureError("Digest does not match the body")


def _check_rsa(public_pem: str, text: str, signature_b64: str) -> None:
    """RSA PKCS#1 v1.5 with SHA-256 over the signing string."""
    try:
        key = serialization.load_pem_public_key(public_pem.encode())
        raw = base64.b64decode(signature_b64, validate=True)
    except ValueError:
        raise SignatureError("signature or public key is not decodable") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureError("the key is not an RSA key")
    try:
        key.verify(raw, text.encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise SignatureError("bad signature") from None


class OnlyKey:
    """The one row holding the blog's key pair (`ONLY_ROW`), made on first use by whichever process
    asks first; a model with `private_pem` and `public_pem`."""

    ONLY_ROW = 1

    @classmethod
    def current(cls):
        key = cls.objects.filter(pk=cls.ONLY_ROW).first()
        if key is not None:
            return key
        private_pem, public_pem = generate_key_pair()
        try:
            with transaction.atomic():
                return cls.objects.create(pk=cls.ONLY_ROW, private_pem=private_pem, public_pem=public_pem)
        except IntegrityError:  # another process made it first: theirs is the key
            return cls.objects.get(pk=cls.ONLY_ROW)
