"""Public directory search: accents and case aside, every word a prefix, red list
honoured; and the `mss directory` commands an operator types."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main
from directory.importers import import_file
from directory.models import MailboxType
from directory.search import DirectorySearch
from directory.service import Directory
from tests.conftest import free_port_base
from tests.test_directory_import import V1, V2, with_db


async def _found(search: DirectorySearch, query: str) -> list[str]:
    return [entry.address for entry in (await search.search(query)).entries]


def test_search_relevance(database_url: str) -> None:
    queries = [
        "dupont cardio nantes", "DUPONT Cardiologie", "lefevre", "LEFÈVRE lyon", "hélène",
        "oeuvray", "Œuvray", "cardio", "44093", "2a", "croix rousse", "gloriette",
        "secretariat", "marc", "dupont lyon", "sage femme", "", "!!!", 'dupont" OR x*',
        "local person", "claire",
    ]

    async def body(engine, directory, search):  # type: ignore[no-untyped-def]
        await import_file(engine, V1)
        await directory.add_mailbox("local.person@hopital.example", MailboxType.PER,
                                    password_hash=None, display_name="Local Person")
        await directory.add_patient(ins="285057511203496", family_name="CLAIRE",
                                    given_names="Claire", birthdate=dt.date(1985, 5, 12),
                                    patient_domain="patient.example", password_hash=None)
        return {query: await _found(search, query) for query in queries}

    found = with_db(database_url, body)
    dupont = ["jean.dupont@chu-nantes.mssante.example",
              "j.dupont.urgences@chu-nantes.mssante.example"]
    assert sorted(found["dupont cardio nantes"]) == sorted(dupont)
    assert sorted(found["DUPONT Cardiologie"]) == sorted(dupont)
    helene = ["helene.lefevre@pro.mssante.example"]
    assert found["lefevre"] == found["LEFÈVRE lyon"] == found["hélène"] == helene
    camille = ["camille.oeuvray@pharmacie.mssante.example"]
    assert found["oeuvray"] == found["Œuvray"] == found["2a"] == camille
    assert set(found["cardio"]) == {*dupont, "cardiologie@chu-nantes.mssante.example"}
    assert "cardiologie@chu-nantes.mssante.example" in found["44093"]
    assert "secretariat@pro.mssante.example" in found["croix rousse"]
    assert "jean.dupont@chu-nantes.mssante.example" in found["gloriette"]
    assert found["secretariat"] == ["secretariat@pro.mssante.example"]
    # a whole-word match (Marc) ranks before a prefix match (place du Marché)
    assert found["marc"] == ["marc.dupond@pro.mssante.example", *camille]
    assert found["dupont lyon"] == []  # every word must match
    assert found["sage femme"] == []  # not in the first file
    assert found[""] == found["!!!"] == []
    assert found['dupont" OR x*'] == []  # query syntax is words, never operators
    assert found["local person"] == ["local.person@hopital.example"]
    assert found["claire"] == []  # patients are not in the professional directory


def test_red_listed_mailboxes_are_never_found(database_url: str) -> None:
    async def body(engine, directory, search):  # type: ignore[no-untyped-def]
        await import_file(engine, V2)
        await directory.set_red_list("sophie.bernard@chu-nantes.mssante.example", True)
        hidden = await _found(search, "bernard")
        still_there = await directory.lookup("sophie.bernard@chu-nantes.mssante.example")
        await directory.set_red_list("sophie.bernard@chu-nantes.mssante.example", False)
        return hidden, still_there, await _found(search, "bernard")

    hidden, still_there, shown = with_db(database_url, body)
    assert hidden == []
    assert still_there is not None and still_there.can_receive  # hidden, not disabled
    assert shown == ["sophie.bernard@chu-nantes.mssante.example"]


def test_broad_queries_are_capped_and_paged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"

    async def body(engine, directory: Directory, search):  # type: ignore[no-untyped-def]
        for i in range(30):
            await directory.add_mailbox(f"dr.{i:02d}@hopital.example", MailboxType.PER,
                                        password_hash=None, display_name=f"Docteur {i:02d}")
        first = await search.search("docteur", limit=10)
        third = await search.search("docteur", limit=10, offset=20)
        monkeypatch.setattr("directory.search.CANDIDATES", 25)
        capped = await search.search("docteur")
        return first, third, capped

    first, third, capped = with_db(url, body)
    assert capped.total == 25 and capped.truncated  # "add words to narrow the search"
    assert first.total == 30 and not first.truncated
    assert [e.display_name for e in first.entries] == [f"Docteur {i:02d}" for i in range(10)]
    assert [e.display_name for e in third.entries] == [f"Docteur {i:02d}" for i in range(20, 30)]


def mss(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "dep"
    result = mss("init", "--data-dir", str(directory), "--domain", "hopital.example",
                 "--patient-domain", "patient.example", "--port-base", str(free_port_base()))
    assert result.exit_code == 0, result.output
    return directory


def test_cli_import_search_and_redlist(data_dir: Path) -> None:
    base = ("--data-dir", str(data_dir), "directory")
    imported = mss(*base, "import", str(V1))
    assert imported.exit_code == 0, imported.output
    assert "16 rows read" in imported.output and "10 added" in imported.output
    assert "rows/s" in imported.output
    assert "rejected: line 17: not UTF-8" in imported.output
    assert "warning: line 12: unknown profession code '77'" in imported.output
    newer = mss(*base, "import", "--format", "mssante", str(V2))
    assert "1 added, 1 updated, 8 unchanged, 1 retired" in newer.output

    found = mss(*base, "search", "dupont cardio nantes")
    assert found.exit_code == 0
    assert "jean.dupont@chu-nantes.mssante.example\tPER\tJean DUPONT\tMédecin / Cardiologie" \
        in found.output
    assert mss(*base, "redlist", "jean.dupont@chu-nantes.mssante.example").exit_code == 0
    assert "jean.dupont@" not in mss(*base, "search", "dupont").output

    wrong = mss(*base, "import", "--format", "rpps", str(V1))
    assert wrong.exit_code == 1
    assert "not a rpps file: missing column(s): \"Type d'identifiant PP\"" in wrong.output
    assert "Traceback" not in wrong.output


def test_fhir_queries_on_both_backends(database_url: str) -> None:
    from directory.fhir import FhirDirectory, parse_query, resources

    cases = {
        "prefix": ("PractitionerRole", [("mailbox-mss", "J.Dupont")]),
        "exact": ("PractitionerRole", [("mailbox-mss:exact", "cabinet@pro.mssante.example")]),
        "contains": ("PractitionerRole", [("mailbox-mss:contains", "dupont")]),
        "percent": ("PractitionerRole", [("mailbox-mss:contains", "%_%")]),
        "identifier": ("Practitioner", [("identifier", "urn:oid:1.2.250.1.71.4.2.1|810001000002")]),
        "types": ("Organization", [("mailbox-mss-type", "APP,CAB")]),
        "words": ("Organization", [("name", "croix rousse"), ("mailbox-mss-type", "ORG")]),
    }

    async def body(engine, directory, search):  # type: ignore[no-untyped-def]
        await import_file(engine, V1)
        fhir = FhirDirectory(engine)
        found = {}
        for name, (resource, params) in cases.items():
            query = parse_query(resource, params)
            entries, _ = await fhir.entries(query)
            found[name] = sorted(e.address for e in entries)
            found[name + "-resources"] = [r["id"] for r in resources(query, entries)]
        return found

    found = with_db(database_url, body)
    assert found["prefix"] == ["j.dupont.urgences@chu-nantes.mssante.example"]
    assert found["exact"] == ["cabinet@pro.mssante.example"]
    assert found["contains"] == ["j.dupont.urgences@chu-nantes.mssante.example",
                                 "jean.dupont@chu-nantes.mssante.example"]
    assert found["percent"] == []  # LIKE wildcards are escaped
    assert found["identifier-resources"] == ["810001000002"]
    assert found["types"] == ["cabinet@pro.mssante.example", "dpi@chu-nantes.mssante.example"]
    assert len(found["types-resources"]) == 2  # two organisations
    assert found["words"] == ["secretariat@pro.mssante.example"]


def test_patient_statuses_and_notification_address(database_url: str) -> None:
    from directory.models import PatientStatus
    from directory.service import DirectoryError

    patient = "285057511203496@patient.example"

    async def body(engine, directory: Directory, search):  # type: ignore[no-untyped-def]
        await directory.add_patient(ins="285057511203496", family_name="MARTIN",
                                    given_names="Claire", birthdate=dt.date(1985, 5, 12),
                                    patient_domain="patient.example", password_hash=None)
        before = await directory.notification_address(patient)
        await directory.set_notification_address(patient, "Claire.Martin@Example.org")
        await directory.set_patient_status(patient, PatientStatus.OPPOSED)
        record = await directory.lookup(patient)
        with pytest.raises(DirectoryError):
            await directory.set_patient_status("nobody@patient.example", PatientStatus.CLOSED)
        return before, await directory.notification_address(patient), record

    before, after, record = with_db(database_url, body)
    assert before is None and after == "claire.martin@example.org"
    assert record is not None and record.patient_status is PatientStatus.OPPOSED


def test_prefix_of_many_words(database_url: str) -> None:
    """A prefix starting more words than are expanded one by one still matches all."""
    from directory.search import MAX_EXPANSIONS

    count = MAX_EXPANSIONS + 10

    async def body(engine, directory: Directory, search):  # type: ignore[no-untyped-def]
        for i in range(count):
            await directory.add_mailbox(f"p{i}@hopital.example", MailboxType.PER,
                                        password_hash=None, display_name=f"Zedko{i:03d} Anne")
        return (await search.search("zedk anne", limit=100),
                await search.search("zedko007"), await search.search("zedkx"))

    many, one, none = with_db(database_url, body)
    assert many.total == count
    assert [e.address for e in one.entries] == ["p7@hopital.example"]
    assert none.entries == []


def test_prefixes_expand_to_the_words_they_start(database_url: str, tmp_path: Path) -> None:
    """Long prefixes become ORs of the vocabulary's words (FTS5's on SQLite, migration
    0005_search_vocab's on PostgreSQL): rare words, accents, the red list and words
    written after the first search (by the service, by a re-import) all still hold."""
    renamed = tmp_path / "mssante_v1_renamed.csv"
    renamed.write_bytes(V1.read_bytes().replace(b"|DUPOND|", b"|DUPONDEAU|"))

    async def body(engine, directory, search):  # type: ignore[no-untyped-def]
        await import_file(engine, V1)
        before = {query: await _found(search, query) for query in (
            "gloriet", "gloriette", "LEFÈV lyo", "lefev", "œuvr", "secreta", "cardiol nant",
            "zorgl", "dupondea")}
        await directory.add_mailbox("z.zorglub@hopital.example", MailboxType.PER,
                                    password_hash=None, display_name="Zorglub Anne")
        await import_file(engine, renamed)  # an UPDATE of the document, a new word
        await directory.set_red_list("helene.lefevre@pro.mssante.example", True)
        fresh = DirectorySearch(engine)  # expansions are cached for a minute
        after = {query: await _found(fresh, query) for query in (
            "zorgl", "zorglub an", "dupondea", "dupond", "lefev")}
        return before, after

    before, after = with_db(database_url, body)
    assert "jean.dupont@chu-nantes.mssante.example" in before["gloriet"]
    assert before["gloriet"] == before["gloriette"]
    helene = ["helene.lefevre@pro.mssante.example"]
    assert before["LEFÈV lyo"] == before["lefev"] == helene
    assert before["œuvr"] == ["camille.oeuvray@pharmacie.mssante.example"]
    assert before["secreta"] == ["secretariat@pro.mssante.example"]
    assert sorted(before["cardiol nant"]) == sorted([
        "jean.dupont@chu-nantes.mssante.example",
        "j.dupont.urgences@chu-nantes.mssante.example",
        "cardiologie@chu-nantes.mssante.example"])
    assert before["zorgl"] == before["dupondea"] == []
    assert after["zorgl"] == after["zorglub an"] == ["z.zorglub@hopital.example"]
    assert after["dupondea"] == after["dupond"] == ["marc.dupond@pro.mssante.example"]
    assert after["lefev"] == []  # red-listed
