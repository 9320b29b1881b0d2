"""The web listener (HTTPS, port N+443): the directory's FHIR-shaped search API.

Only authenticated professionals may search: HTTP Basic (RFC 7617) over TLS with the
mail credentials, checked and throttled by the shared Authenticator (door "web").
Every error is a FHIR ``OperationOutcome``; a failure inside is logged and answered
500 without details.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from directory.fhir import (
    MAX_COUNT,
    PARAMETERS,
    FhirDirectory,
    FhirError,
    bundle,
    operation_outcome,
    parse_query,
    resources,
)
from mailserver.auth import Authenticator, LoginOutcome
from mailserver.settings import Settings

log = logging.getLogger("mailserver.web")

FHIR_JSON = "application/fhir+json"
MAX_CREDENTIALS = 1024  # bytes of a Basic credential, decoded
REALM = 'Basic realm="mss directory", charset="UTF-8"'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def fhir_response(body: dict[str, Any], status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(body, ensure_ascii=False), status=status,
                        content_type=FHIR_JSON, headers=headers)


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) of an RFC 7617 Basic Authorization header, or None."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token or len(token) > MAX_CREDENTIALS * 4 // 3 + 4:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon and user else None


class DirectoryWeb:
    def __init__(self, settings: Settings, authenticator: Authenticator,
                 fhir: FhirDirectory) -> None:
        self.settings = settings
        self.authenticator = authenticator
        self.fhir = fhir
        self._runner: web.AppRunner | None = None

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._errors], client_max_size=16 * 1024)
        app.router.add_get("/fhir/openapi.json", self._openapi)
        app.router.add_get("/fhir/{resource}", self._search)
        return app

    async def start(self, tls: ssl.SSLContext, *, share: int = 1) -> None:
        """Listen on N+443; ``share`` > 1 worker processes share the port (SO_REUSEPORT)."""
        self._runner = web.AppRunner(self.application(), access_log=None)
        await self._runner.setup()
        listen = self.settings.listen
        site = web.TCPSite(self._runner, listen.bind_address(), listen.port("https"),
                           ssl_context=tls, reuse_address=True, reuse_port=share > 1)
        await site.start()
        log.info("listening on %s:%d (https, directory API)", listen.bind_address(),
                 listen.port("https"))

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except FhirError as error:
            return fhir_response(operation_outcome(str(error)), 400)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            code = {401: "login", 403: "forbidden", 404: "not-found",
                    429: "throttled"}.get(error.status, "invalid")
            headers = {"WWW-Authenticate": REALM} if error.status == 401 else None
            return fhir_response(operation_outcome(error.reason, code), error.status, headers)
        except Exception:
            log.exception("directory API: %s %s", request.method, request.path)
            return fhir_response(operation_outcome("internal error", "exception"), 500)

    async def _authenticate(self, request: web.Request) -> None:
        credentials = basic_credentials(request.headers.get("Authorization", ""))
        if credentials is None:
            raise web.HTTPUnauthorized(reason="authentication required: HTTP Basic with "
                                              "your mailbox address and password")
        result = await self.authenticator.login(
            *credentials, client_ip=request.remote or "", door="web")
        if result.outcome is LoginOutcome.THROTTLED:
            raise web.HTTPTooManyRequests(reason="too many failed logins: try again later")
        if result.outcome is not LoginOutcome.OK or result.mailbox is None:
            raise web.HTTPUnauthorized(reason="wrong address or password")
        if result.mailbox.is_patient:
            # Issue 3: patients will see only the professionals of their threads (later).
            raise web.HTTPForbidden(reason="the directory search is for professionals")

    async def _search(self, request: web.Request) -> web.Response:
        resource = request.match_info["resource"]
        if resource not in PARAMETERS:
            raise web.HTTPNotFound(reason=f"no resource type {resource!r} here "
                                          "(Practitioner, PractitionerRole, Organization)")
        await self._authenticate(request)
        params = list(request.query.items())
        query = parse_query(resource, params)
        entries, truncated = await self.fhir.entries(query)
        found = resources(query, entries)
        base = f"https://{request.host}/fhir/{resource}"
        return fhir_response(bundle(query, found, base, dict(params), truncated))

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document())


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.0 description of the search API."""
    descriptions = {
        "name": "Words that each start a name, profession, specialty, place or organisation",
        "family": "Family name (prefix, accents and case aside)",
        "given": "Given name (prefix)",
        "identifier": "National identifier (RPPS/ADELI, FINESS/SIRET), optionally system|value",
        "mailbox-mss": "Mailbox address: starts with (default), :exact, :contains",
        "mailbox-mss-type": "Mailbox types, comma-separated: PER, ORG, APP, CAB",
        "practitioner": "Practitioner/ID",
        "organization": "Organization/ID",
        "address-city": "City (prefix)",
        "address-postalcode": "Postal code (prefix)",
        "_count": f"Entries per page, 1 to {MAX_COUNT}",
        "_offset": "Position of the page (from the next link)",
        "_format": "json",
    }
    paths: dict[str, Any] = {}
    for resource, names in sorted(PARAMETERS.items()):
        parameters = [
            {"name": name, "in": "query", "required": False,
             "description": descriptions.get(name, name), "schema": {"type": "string"}}
            for name in sorted(names)
        ]
        paths[f"/fhir/{resource}"] = {"get": {
            "summary": f"Search {resource} resources",
            "security": [{"basic": []}],
            "parameters": parameters,
            "responses": {
                "200": {"description": "FHIR R4 Bundle (searchset)",
                        "content": {FHIR_JSON: {"schema": {"type": "object"}}}},
                "400": {"description": "OperationOutcome: malformed parameter"},
                "401": {"description": "OperationOutcome: authentication required"},
                "403": {"description": "OperationOutcome: not a professional"},
                "429": {"description": "OperationOutcome: too many failed logins"},
            },
        }}
    return {
        "openapi": "3.0.3",
        "info": {"title": "MSS professional directory (FHIR R4 search)", "version": "1"},
        "components": {"securitySchemes": {"basic": {"type": "http", "scheme": "basic"}}},
        "paths": paths,
    }
