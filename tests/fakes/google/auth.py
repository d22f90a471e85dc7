"""The fake's OAuth side: consent (authorization codes with PKCE), tokens, scopes per method."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import unquote, urlencode

from tests.fakes.google.common import AUTH, _Calendar, _now, _Route
from tests.fakes.google.errors import ApiError


class AuthMixin:
    """Tokens and consent; mixed into FakeGoogle (which holds the state)."""

    CLIENT_ID = "fake-client-id.apps.googleusercontent.com"
    CLIENT_SECRET = "fake-client-secret"
    lock: threading.RLock
    access_tokens: dict[str, frozenset[str]]
    refresh_tokens: dict[str, frozenset[str]]
    codes: dict[str, dict[str, Any]]
    consents: list[dict[str, str]]

    def grant(self, scopes: Sequence[str], *, expired: bool = False) -> dict[str, Any]:
        """Mint a refresh + access token as a finished consent would; returns token-file JSON."""
        with self.lock:
            access = "ya29.fake-" + secrets.token_urlsafe(12)
            refresh = "1//fake-" + secrets.token_urlsafe(16)
            self.access_tokens[access] = frozenset(scopes)
            self.refresh_tokens[refresh] = frozenset(scopes)
        expiry = _now() + (timedelta(hours=-1) if expired else timedelta(hours=1))
        return {
            "token": access,
            "refresh_token": refresh,
            "token_uri": self.url + "token",
            "client_id": self.CLIENT_ID,
            "client_secret": self.CLIENT_SECRET,
            "scopes": list(scopes),
            "universe_domain": "googleapis.com",
            "account": "",
            "expiry": expiry.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }

    def revoke(self, refresh_token: str) -> None:
        """The user revoked access (or 7 days passed in Testing): refresh gives invalid_grant."""
        with self.lock:
            scopes = self.refresh_tokens.pop(refresh_token, frozenset())
            for token, granted in list(self.access_tokens.items()):
                if granted == scopes:
                    del self.access_tokens[token]

    def client_secrets(self) -> dict[str, Any]:
        """A desktop client's client_secrets.json pointing at this fake."""
        return {
            "installed": {
                "client_id": self.CLIENT_ID,
                "client_secret": self.CLIENT_SECRET,
                "project_id": "callsheet-fake",
                "auth_uri": self.url + "o/oauth2/auth",
                "token_uri": self.url + "token",
                "redirect_uris": ["http://localhost"],
            }
        }

    def _authorised(self, headers: Mapping[str, str], route: _Route) -> frozenset[str]:
        value = headers.get("authorization") or headers.get("Authorization") or ""
        token = value[7:] if value.startswith("Bearer ") else ""
        with self.lock:
            granted = self.access_tokens.get(token)
        if granted is None:
            raise ApiError(401, "authError", "Request had invalid authentication credentials.")
        if not granted & route.scopes:
            # each method lists the scopes that authorise it (discovery document "scopes")
            raise ApiError(403, "insufficientPermissions", "Request had insufficient authentication scopes.")
        return granted

    @staticmethod
    # scope calendar.app.created: "Make secondary Google calendars, and see, create, change, and
    # delete events on them" - only calendars this app made (403 elsewhere: unverified).
    def _check_app_created(
        calendar: _Calendar, granted: frozenset[str], route_scopes: frozenset[str]
    ) -> None:
        """calendar.app.created reaches only calendars the app made."""
        useful = granted & route_scopes
        if useful == {AUTH + "calendar.app.created"} and not calendar.app_created:
            raise ApiError(403, "forbidden", "Forbidden")

    def _authorize(self, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        q = {k: v[0] for k, v in query.items()}
        self.consents.append(q)
        if q.get("client_id") != self.CLIENT_ID or q.get("response_type") != "code":
            raise ApiError(400, "invalid_request", "bad authorization request")
        code = "4/fake-" + secrets.token_urlsafe(12)
        scopes = frozenset(q.get("scope", "").split())
        with self.lock:
            self.codes[code] = {
                "redirect_uri": q.get("redirect_uri"),
                "scopes": scopes,
                "challenge": q.get("code_challenge"),
                "method": q.get("code_challenge_method"),
            }
        answer = {"state": q.get("state", ""), "code": code, "scope": " ".join(sorted(scopes))}
        target = f"{q['redirect_uri']}?{urlencode(answer)}"
        return 302, {"Location": target, "Content-Type": "text/plain"}, b"redirecting"

    def _token(
        self, form: dict[str, list[str]], request_headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        f = {k: v[0] for k, v in form.items()}
        basic = request_headers.get("authorization", "")
        if basic.startswith("Basic "):  # client authentication by HTTP Basic (requests-oauthlib's default)
            client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
            f.setdefault("client_id", unquote(client_id))
            f.setdefault("client_secret", unquote(client_secret))
        headers = {"Content-Type": "application/json; charset=utf-8"}

        def fail(error: str, description: str) -> tuple[int, dict[str, str], bytes]:
            return 400, headers, json.dumps({"error": error, "error_description": description}).encode()

        if f.get("client_id") != self.CLIENT_ID or f.get("client_secret") != self.CLIENT_SECRET:
            return (
                401,
                headers,
                json.dumps({"error": "invalid_client", "error_description": "Unauthorized"}).encode(),
            )
        with self.lock:
            if f.get("grant_type") == "refresh_token":
                scopes = self.refresh_tokens.get(f.get("refresh_token", ""))
                if scopes is None:
                    # RefreshError('invalid_grant: Token has been expired or revoked.')
                    # (googleworkspace/python-samples #1644)
                    return fail("invalid_grant", "Token has been expired or revoked.")
                asked = frozenset(f["scope"].split()) if f.get("scope") else scopes
                if not asked <= scopes:
                    return fail("invalid_scope", "Bad scope")
                access = "ya29.fake-" + secrets.token_urlsafe(12)
                self.access_tokens[access] = asked
                answer = {
                    "access_token": access,
                    "expires_in": 3599,
                    "scope": " ".join(sorted(asked)),
                    "token_type": "Bearer",
                }
                return 200, headers, json.dumps(answer).encode()
            if f.get("grant_type") == "authorization_code":
                grant = self.codes.pop(f.get("code", ""), None)
                if grant is None or grant["redirect_uri"] != f.get("redirect_uri"):
                    return fail("invalid_grant", "Malformed auth code.")
                if grant["challenge"]:
                    verifier = f.get("code_verifier", "")
                    digest = (
                        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
                        .decode()
                        .rstrip("=")
                    )
                    if digest != grant["challenge"]:
                        return fail("invalid_grant", "Invalid code verifier.")
                access = "ya29.fake-" + secrets.token_urlsafe(12)
                refresh = "1//fake-" + secrets.token_urlsafe(16)
                self.access_tokens[access] = grant["scopes"]
                self.refresh_tokens[refresh] = grant["scopes"]
                answer = {
                    "access_token": access,
                    "refresh_token": refresh,
                    "expires_in": 3599,
                    "scope": " ".join(sorted(grant["scopes"])),
                    "token_type": "Bearer",
                }
                return 200, headers, json.dumps(answer).encode()
        return fail("unsupported_grant_type", "Invalid grant_type")
