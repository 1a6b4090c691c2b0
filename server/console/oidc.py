"""Signing in with the site's OpenID Connect provider, beside the client
certificate: the console is a relying party (Authlib's Starlette client,
authorization code flow with PKCE; Authlib checks the state, the nonce, the ID
token's signature against the provider's JWKS, its issuer and its audience).

Who may sign in with which role comes from the console's configuration file
(`--oidc FILE`): a person's subject, or a claim the provider's administrators
set (such as `groups`), mapped to operator or officer. Nothing the person
chooses picks a role. A person the file gives no role is refused (403).

A person signed in so is `role:SUBJECT` in the console and the audit log, with
their OpenID identity ("ISSUER SUBJECT") recorded beside it on each page view
and relayed decision."""
from __future__ import annotations

import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.deprecate import AuthlibDeprecationWarning
from joserfc.errors import JoseError

with warnings.catch_warnings():
    # Authlib 1.9 prefers a fork of httpx (httpx2) and says so on import; httpx is the one it still supports.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.starlette_client import OAuth
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route

from fedlink.identity import Identity, IdentityError, validate_label
from server.console.auth import IDENTITY_KEY, VIEWER_ROLES, Refused

OIDC_KEY = "fedlink.oidc"  # the ASGI scope's "ISSUER SUBJECT" of a person signed in by OpenID Connect
SESSION_KEY = "oidc"
LOGIN_PATH, CALLBACK_PATH, LOGOUT_PATH = "/oidc/login", "/oidc/callback", "/oidc/logout"


@dataclass(frozen=True)
class ClaimRole:
    claim: str
    value: str
    role: str


@dataclass(frozen=True)
class OidcConfig:
    """The console's configuration of its provider and of who gets which role (docs/console.md)."""

    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    scope: str
    subjects: dict[str, str]          # subject -> role
    claims: tuple[ClaimRole, ...]     # a claim's value (or one of its values) -> role

    @classmethod
    def load(cls, path: Path) -> OidcConfig:
        """Read `path`; a ValueError names the file and the field for anything missing or wrong."""
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: {e}") from None

        def field(table: dict, name: str, where: str = "") -> str:
            value = table.get(name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{path}: {where}{name} is missing or not a text")
            return value.strip()

        def role(table: dict, where: str) -> str:
            value = field(table, "role", where)
            if value not in VIEWER_ROLES:
                raise ValueError(f"{path}: {where}role {value!r}: operator or officer")
            return value

        secret = doc.get("client_secret")
        if "client_secret_file" in doc:
            secret_path = path.parent / field(doc, "client_secret_file")
            try:
                secret = secret_path.read_text(encoding="utf-8").strip()
            except OSError as e:
                raise ValueError(f"{path}: client_secret_file: {e}") from None
        if not isinstance(secret, str) or not secret:
            raise ValueError(f"{path}: client_secret (or client_secret_file) is missing")
        people = doc.get("person", [])
        rules = doc.get("claim", [])
        if not isinstance(people, list) or not isinstance(rules, list):
            raise ValueError(f"{path}: [[person]] and [[claim]] are tables of arrays")
        subjects = {field(p, "subject", f"person {i + 1}: "): role(p, f"person {i + 1}: ")
                    for i, p in enumerate(people)}
        claims = tuple(ClaimRole(field(r, "claim", f"claim {i + 1}: "), field(r, "value", f"claim {i + 1}: "),
                                 role(r, f"claim {i + 1}: ")) for i, r in enumerate(rules))
        if not subjects and not claims:
            raise ValueError(f"{path}: no [[person]] or [[claim]] gives anyone a role: no one could sign in")
        issuer = field(doc, "issuer")  # exactly as the provider writes it: the ID token's `iss` must equal it
        if not issuer.startswith(("https://", "http://")):
            raise ValueError(f"{path}: issuer {issuer!r} is not the provider's URL (https://...)")
        return cls(issuer, field(doc, "client_id"), secret,
                   str(doc.get("redirect_uri", "")), str(doc.get("scope", "openid")), subjects, claims)

    def role_of(self, claims: dict) -> str:
        """The role the configuration gives the person of these verified ID token claims."""
        who = f"{claims.get('iss')} {claims.get('sub')}"
        if claims.get("sub") in self.subjects:
            return self.subjects[claims["sub"]]
        roles = set()
        for rule in self.claims:
            value = claims.get(rule.claim)
            if value == rule.value or (isinstance(value, list) and rule.value in value):
                roles.add(rule.role)
        if not roles:
            raise Refused(403, f"{who} signed in with the provider, but the console's configuration gives this "
                               "person no role: ask the console's administrator to map your subject or group")
        if len(roles) > 1:
            raise Refused(403, f"{who}: the console's configuration gives this person both roles (operator and "
                               "officer); it must give one")
        return roles.pop()


def person_of(session: dict) -> tuple[Identity, str] | None:
    """The person the session's OpenID sign-in established: their identity and "ISSUER SUBJECT"."""
    signed = session.get(SESSION_KEY)
    if not signed:
        return None
    return Identity(signed["role"], signed["sub"]), f"{signed['iss']} {signed['sub']}"


def with_oidc_person(app):
    """Inside the session middleware: a request without a certificate's identity gets the session's
    OpenID person, if any. A certificate always wins; nothing else sets the identity."""
    async def middleware(scope, receive, send):
        if scope["type"] == "http" and not isinstance(scope.get(IDENTITY_KEY), Identity):
            found = person_of(scope.get("session", {}))
            if found:
                scope[IDENTITY_KEY], scope[OIDC_KEY] = found
        await app(scope, receive, send)
    return middleware


def oidc_routes(config: OidcConfig) -> list[Route]:
    oauth = OAuth()
    oauth.register("site", client_id=config.client_id, client_secret=config.client_secret,
                   server_metadata_url=f"{config.issuer.rstrip('/')}/.well-known/openid-configuration",
                   client_kwargs={"scope": config.scope, "code_challenge_method": "S256"})
    client = oauth.create_client("site")

    async def login(request: Request):
        request.session.pop(SESSION_KEY, None)
        try:
            back = config.redirect_uri or str(request.url_for("oidc_callback"))
            return await client.authorize_redirect(request, back)
        except (AuthlibBaseError, httpx.HTTPError) as e:
            raise Refused(502, f"the sign-in provider {config.issuer} could not be reached: {e}") from None

    async def callback(request: Request):
        try:
            token = await client.authorize_access_token(request)
        except (AuthlibBaseError, JoseError) as e:
            # A forged or replayed callback (state, nonce), a code or token of another client, a bad signature.
            raise Refused(403, f"sign-in refused: {e}") from None
        except httpx.HTTPError as e:
            raise Refused(502, f"the sign-in provider {config.issuer} could not be reached: {e}") from None
        claims = dict(token.get("userinfo") or {})
        if claims.get("iss") != config.issuer:
            raise Refused(403, f"sign-in refused: the ID token's issuer {claims.get('iss')!r} is not {config.issuer}")
        role = config.role_of(claims)
        try:
            validate_label(claims["sub"], "subject")
        except (KeyError, IdentityError) as e:
            raise Refused(403, f"sign-in refused: the provider's subject cannot name a person here ({e})") from None
        request.session[SESSION_KEY] = {"iss": claims["iss"], "sub": claims["sub"], "role": role}
        return RedirectResponse("/", 303)

    async def logout(request: Request):
        request.session.pop(SESSION_KEY, None)
        return RedirectResponse(LOGIN_PATH, 303)

    return [Route(LOGIN_PATH, login), Route(CALLBACK_PATH, callback, name="oidc_callback"),
            Route(LOGOUT_PATH, logout)]
