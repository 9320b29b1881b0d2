"""The directory's FHIR-shaped search API through a real HTTPS client against the
running server (web listener, deployment certificate), authenticated with the mail
credentials."""

from __future__ import annotations

import base64
import datetime as dt
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from directory.importers import import_file
from mailserver.auth import hash_password
from tests.conftest import ServerThread, make_deployment, start_server
from tests.test_directory_import import V1

PROFESSIONAL = "reader@hopital.example"
PASSWORD = "secret-password-1"
TYPE_URL = "https://annuaire.sante.gouv.fr/fhir/StructureDefinition/ContactPoint-MailboxMSSMetadata"


@pytest.fixture(scope="module")
def directory_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """One running server for the module (read-only tests), the fixture file imported."""
    server = start_server(make_deployment(tmp_path_factory.mktemp("directory-api")))
    try:
        server.call(import_file(server.app.engine, V1))
        server.add_mailbox(PROFESSIONAL, PASSWORD)
        server.call(server.app.directory.set_red_list("alex.martin@pro.mssante.example", True))
        yield server
    finally:
        server.stop()


def get(server: ServerThread, path: str, user: str | None = PROFESSIONAL,
        password: str = PASSWORD) -> tuple[int, dict[str, str], dict[str, Any]]:
    context = ssl.create_default_context(
        cafile=str(server.settings.path(server.settings.tls.ca)))
    context.check_hostname = False  # the certificate names mx.hopital.example, we dial 127.0.0.1
    url = path if path.startswith("https://") else \
        f"https://127.0.0.1:{server.port('https')}{path}"
    request = urllib.request.Request(url)  # noqa: S310 (https URLs built here)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:  # noqa: S310
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def emails(resource: dict[str, Any]) -> list[str]:
    return [t["value"] for t in resource.get("telecom", []) if t["system"] == "email"]


def mailbox_type(telecom: dict[str, Any]) -> str:
    (metadata,) = [e for e in telecom["extension"] if e["url"] == TYPE_URL]
    (kind,) = [e for e in metadata["extension"] if e["url"] == "type"]
    return str(kind["valueCodeableConcept"]["coding"][0]["code"])


def test_practitioner_search_returns_bundle_with_mailboxes(directory_server: ServerThread) -> None:
    status, headers, body = get(directory_server, "/fhir/Practitioner?name=dupont%20cardio")
    assert status == 200 and headers["Content-Type"].startswith("application/fhir+json")
    assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    assert body["total"] == 1
    practitioner = body["entry"][0]["resource"]
    assert practitioner["resourceType"] == "Practitioner"
    assert practitioner["id"] == "810001000001"
    assert practitioner["name"][0]["family"] == "DUPONT"
    assert sorted(emails(practitioner)) == ["j.dupont.urgences@chu-nantes.mssante.example",
                                            "jean.dupont@chu-nantes.mssante.example"]
    assert {mailbox_type(t) for t in practitioner["telecom"]} == {"PER"}
    assert practitioner["qualification"][0]["code"]["coding"][0]["code"] == "10"


def test_practitioner_role_and_organization(directory_server: ServerThread) -> None:
    _, _, roles = get(directory_server, "/fhir/PractitionerRole?mailbox-mss:exact="
                                        "jean.dupont@chu-nantes.mssante.example")
    (role,) = [e["resource"] for e in roles["entry"]]
    assert role["practitioner"]["reference"] == "Practitioner/810001000001"
    assert role["specialty"][0]["coding"][0]["code"] == "SM04"
    organization_ref = role["organization"]["reference"]

    _, _, orgs = get(directory_server, "/fhir/Organization?mailbox-mss-type=ORG"
                                       "&mailbox-mss:contains=cardio")
    (org,) = [e["resource"] for e in orgs["entry"]]
    assert f"Organization/{org['id']}" == organization_ref
    assert org["name"] == "CHU DE NANTES"
    assert org["address"][0]["city"] == "NANTES CEDEX 1"
    assert org["address"][0]["postalCode"] == "44093"
    assert emails(org) == ["cardiologie@chu-nantes.mssante.example"]
    assert mailbox_type(org["telecom"][0]) == "ORG"

    _, _, nantes = get(directory_server, "/fhir/Organization?address-city=nantes")
    assert [e["resource"]["name"] for e in nantes["entry"]] == ["CHU DE NANTES"]
    _, _, starts = get(directory_server, "/fhir/PractitionerRole?mailbox-mss=helene.")
    assert [emails(e["resource"]) for e in starts["entry"]] == [
        ["helene.lefevre@pro.mssante.example"]]


def test_paging_follows_next_links(directory_server: ServerThread) -> None:
    seen: list[str] = []
    status, _, page = get(directory_server, "/fhir/PractitionerRole?mailbox-mss-type=PER"
                                            "&_count=2")
    total = page["total"]
    while True:
        assert status == 200 and len(page["entry"]) <= 2
        seen += [e["resource"]["telecom"][0]["value"] for e in page["entry"]]
        following = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not following:
            break
        status, _, page = get(directory_server, following[0])
    # PER mailboxes of the file, the red-listed one excepted
    assert len(seen) == len(set(seen)) == total == 5
    assert "alex.martin@pro.mssante.example" not in seen


@pytest.mark.parametrize(("path", "status", "fragment"), [
    ("/fhir/Practitioner?_count=abc", 400, "_count must be a whole number"),
    ("/fhir/Practitioner?_count=1000", 400, "_count must be a whole number from 1 to 100"),
    ("/fhir/Practitioner?colour=blue", 400, "unknown search parameter 'colour'"),
    ("/fhir/PractitionerRole?mailbox-mss-type=XYZ", 400, "mailbox-mss-type must be"),
    ("/fhir/PractitionerRole?mailbox-mss:fuzzy=x", 400, "unsupported modifier"),
    ("/fhir/PractitionerRole?mailbox-mss:contains=ab", 400, "at least 3 characters"),
    ("/fhir/Practitioner?name=", 400, "needs a value"),
    ("/fhir/Practitioner?name=a&name=b", 400, "given twice"),
    ("/fhir/PractitionerRole?organization=Organization/x", 400, "Organization/org-N"),
    ("/fhir/Patient?name=x", 404, "no resource type 'Patient'"),
])
def test_malformed_parameters_are_operation_outcomes(
    directory_server: ServerThread, path: str, status: int, fragment: str
) -> None:
    got, _, body = get(directory_server, path)
    assert got == status
    assert body["resourceType"] == "OperationOutcome"
    assert fragment in body["issue"][0]["diagnostics"]


def test_only_authenticated_professionals_search(directory_server: ServerThread) -> None:
    status, headers, body = get(directory_server, "/fhir/Practitioner?name=dupont", user=None)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    assert body["issue"][0]["code"] == "login"
    assert get(directory_server, "/fhir/Practitioner?name=dupont",
               password="wrong-password")[0] == 401
    # imported mailboxes have no password until an operator sets one
    assert get(directory_server, "/fhir/Practitioner?name=dupont",
               user="jean.dupont@chu-nantes.mssante.example")[0] == 401

    async def add_patient() -> None:
        await directory_server.app.directory.add_patient(
            ins="285057511203496", family_name="MARTIN", given_names="Claire",
            birthdate=dt.date(1985, 5, 12), patient_domain="patient.example",
            password_hash=hash_password(PASSWORD))

    directory_server.call(add_patient())
    status, _, body = get(directory_server, "/fhir/Practitioner?name=dupont",
                          user="285057511203496@patient.example")
    assert status == 403 and body["issue"][0]["code"] == "forbidden"


def test_openapi_document_and_tls_only(directory_server: ServerThread) -> None:
    status, _, document = get(directory_server, "/fhir/openapi.json", user=None)
    assert status == 200 and document["openapi"].startswith("3.")
    assert {"/fhir/Practitioner", "/fhir/PractitionerRole", "/fhir/Organization"} <= set(
        document["paths"])
    parameters = {p["name"] for p in document["paths"]["/fhir/PractitionerRole"]["get"]
                  ["parameters"]}
    assert {"mailbox-mss", "mailbox-mss-type", "_count"} <= parameters
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(  # plain HTTP on the TLS port gets nothing
            f"http://127.0.0.1:{directory_server.port('https')}/fhir/openapi.json", timeout=10)


def test_red_listed_and_types(directory_server: ServerThread) -> None:
    _, _, hidden = get(directory_server, "/fhir/Practitioner?name=martin")
    assert hidden["total"] == 0
    _, _, apps = get(directory_server, "/fhir/Organization?mailbox-mss-type=APP")
    assert [emails(e["resource"]) for e in apps["entry"]] == [["dpi@chu-nantes.mssante.example"]]
