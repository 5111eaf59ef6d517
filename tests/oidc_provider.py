"""A small OpenID Connect provider on 127.0.0.1, built from Authlib's own server parts, for the console's SSO tests.

Why a real provider rather than a hand-made token: the console's client
(Authlib's Flask client) must fetch the discovery document, send the browser
to the authorization endpoint, exchange the code at the token endpoint with
its client secret, and check an RS256-signed ID token against the JWKS. A
provider speaking that protocol over a socket tests all of it; only who is
"signed in at the provider" is chosen by the test (``provider.person``), since
the provider's own login page is not what is tested.

Authlib's ``AuthorizationServer`` with its ``AuthorizationCodeGrant`` and the
``OpenIDCode`` extension do the protocol; its SQLAlchemy mixins keep the
client, codes and tokens (in an in-memory SQLite). The signing key is a fresh
2048-bit RSA key per provider.
"""

from __future__ import annotations

import threading
import time

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.sqla_oauth2 import (
    OAuth2AuthorizationCodeMixin,
    OAuth2ClientMixin,
    OAuth2TokenMixin,
    create_query_client_func,
    create_save_token_func,
)
from authlib.oauth2.rfc6749 import grants
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, jsonify, request
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import Integer, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, scoped_session, sessionmaker
from sqlalchemy.pool import StaticPool
from werkzeug.serving import make_server

CLIENT_ID = "bot-bridge-console"
CLIENT_SECRET = "loopback-client-secret-0123456789"


class _Base(DeclarativeBase):
    pass


class _Client(_Base, OAuth2ClientMixin):
    __tablename__ = "clients"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)


class _Code(_Base, OAuth2AuthorizationCodeMixin):
    __tablename__ = "codes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))


class _Token(_Base, OAuth2TokenMixin):
    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))


class OidcProvider:
    """The provider at ``issuer``, with one client (``CLIENT_ID``) allowed to return to ``redirect_uri``.
    ``person`` is the claims of whoever is signed in at the provider: the next authorization is theirs.
    ID tokens are signed with ``signing_key``, the key the JWKS publishes unless a test swaps it."""

    def __init__(self, redirect_uri: str) -> None:
        self.person: dict = {}
        self.people: dict[str, dict] = {}  # everyone authorized so far, by subject
        self.key = RSAKey.generate_key(2048, parameters={"kid": "loopback-1", "use": "sig", "alg": "RS256"})
        self.signing_key = self.key
        engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
        _Base.metadata.create_all(engine)
        self.db = scoped_session(sessionmaker(engine))
        client = _Client(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, client_id_issued_at=int(time.time()))
        client.set_client_metadata({"redirect_uris": [redirect_uri], "scope": "openid profile email",
                                    "grant_types": ["authorization_code"], "response_types": ["code"],
                                    "token_endpoint_auth_method": "client_secret_basic"})
        self.db.add(client)
        self.db.commit()
        self.http = make_server("127.0.0.1", 0, self._app(), threaded=True)
        self.issuer = f"http://127.0.0.1:{self.http.server_port}"
        self.discovery_url = f"{self.issuer}/.well-known/openid-configuration"
        self.token_requests = 0
        self._thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def __enter__(self) -> OidcProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.http.shutdown()
        self._thread.join(5)
        self.db.remove()

    def _app(self) -> Flask:
        app = Flask("loopback_oidc")
        server = AuthorizationServer(app, query_client=create_query_client_func(self.db, _Client),
                                     save_token=create_save_token_func(self.db, _Token))
        server.register_grant(_CodeGrant.bound(self), [_OpenIDCode.bound(self)])

        @app.get("/.well-known/openid-configuration")
        def discovery():
            return jsonify(issuer=self.issuer, authorization_endpoint=f"{self.issuer}/authorize",
                           token_endpoint=f"{self.issuer}/token", jwks_uri=f"{self.issuer}/jwks",
                           response_types_supported=["code"], subject_types_supported=["public"],
                           id_token_signing_alg_values_supported=["RS256"],
                           token_endpoint_auth_methods_supported=["client_secret_basic"],
                           scopes_supported=["openid", "profile", "email"])

        @app.get("/jwks")
        def jwks():
            return jsonify(KeySet([self.key]).as_dict(private=False))

        @app.get("/authorize")
        def authorize():  # the person is signed in here already and consents: straight back to the client
            person = self.people[self.person["sub"]] = _Person(self.person)
            grant = server.get_consent_grant(end_user=person)  # checks the client, its redirect URI, the nonce
            return server.create_authorization_response(grant=grant, grant_user=person)

        @app.post("/token")
        def token():
            self.token_requests += 1
            return server.create_token_response()

        @app.teardown_appcontext
        def _release(_):
            self.db.remove()

        return app


class _Person(dict):
    """Someone signed in at the provider: their claims, and their id as Authlib's token store asks for it."""

    def get_user_id(self) -> str:
        return self["sub"]


class _CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic"]
    provider: OidcProvider

    @classmethod
    def bound(cls, provider: OidcProvider) -> type:
        return type("BoundCodeGrant", (cls,), {"provider": provider})

    def save_authorization_code(self, code, request):
        payload = request.payload
        self.provider.db.add(_Code(code=code, client_id=request.client.client_id, redirect_uri=payload.redirect_uri,
                                   scope=payload.scope, nonce=payload.data.get("nonce"),
                                   user_id=request.user["sub"]))
        self.provider.db.commit()

    def query_authorization_code(self, code, client):
        found = self.provider.db.query(_Code).filter_by(code=code, client_id=client.client_id).first()
        return found if found is not None and not found.is_expired() else None

    def delete_authorization_code(self, authorization_code):
        self.provider.db.delete(authorization_code)
        self.provider.db.commit()

    def authenticate_user(self, authorization_code):
        return self.provider.people[authorization_code.user_id]


class _OpenIDCode(OpenIDCode):
    provider: OidcProvider

    @classmethod
    def bound(cls, provider: OidcProvider) -> OpenIDCode:
        return type("BoundOpenIDCode", (cls,), {"provider": provider})(require_nonce=True)

    def exists_nonce(self, nonce, request):
        return self.provider.db.query(_Code).filter_by(client_id=request.payload.client_id, nonce=nonce).first() \
            is not None

    def resolve_client_private_key(self, client):
        return self.provider.signing_key

    def get_client_algorithm(self, client):
        return "RS256"

    def get_client_claims(self, client):
        return {"iss": self.provider.issuer, "aud": [client.get_client_id()]}

    def get_encode_header(self, client):
        return {"alg": "RS256", "kid": self.provider.signing_key.kid}

    def generate_user_info(self, user, scope):
        return UserInfo(user)
