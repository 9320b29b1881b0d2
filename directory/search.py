"""Public search of the directory: "dupont cardio nantes".

Every word of the query must start a word of the entry (names, profession,
specialty, service, organisation, street, city, postal code, department), accents
and case aside. The words of each mailbox are one normalised document
(``directory_search``); the word index is FTS5 on SQLite and a GIN index on
``to_tsvector('simple', …)`` on PostgreSQL. On both, a prefix starting at most
MAX_EXPANSIONS words becomes the OR of those exact words, read from the index's
vocabulary (both indexes answer exact words much faster than prefixes).
Red-listed, retired and disabled mailboxes are never returned.

Up to ``CANDIDATES`` matches are ranked (whole-word matches first, then by name);
a broader query says so and asks for more words.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Select, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from directory.models import Mailbox, MailboxStatus, MailboxType, Organisation, Practitioner
from directory.service import DirectoryError, normalize_address
from directory.text import words

CANDIDATES = 300
MAX_TERMS = 8


@dataclass(frozen=True)
class PractitionerInfo:
    national_id: str
    id_type: str
    identifier: str
    civility: str
    family_name: str
    given_name: str
    profession_code: str
    profession_label: str
    specialty_code: str
    specialty_label: str


@dataclass(frozen=True)
class OrganisationInfo:
    id: int
    id_type: str
    identifier: str
    name: str
    trade_name: str
    address_lines: tuple[str, ...]
    locality: str
    postal_code: str
    department: str
    country: str


@dataclass(frozen=True)
class DirectoryEntry:
    """A mailbox with its owner, as the directory publishes it."""

    id: int
    address: str
    type: MailboxType
    display_name: str
    service: str
    status: MailboxStatus
    red_list: bool
    dematerialisation: bool
    practitioner: PractitionerInfo | None
    organisation: OrganisationInfo | None


@dataclass(frozen=True)
class SearchResult:
    entries: list[DirectoryEntry]
    total: int  # matches found, at most CANDIDATES
    truncated: bool  # more than CANDIDATES matched: the query needs more words


def entry_query() -> Select[Mailbox, Practitioner, Organisation]:
    return (
        select(Mailbox, Practitioner, Organisation)
        .outerjoin(Practitioner, Practitioner.id == Mailbox.practitioner_id)
        .outerjoin(Organisation, Organisation.id == Mailbox.organisation_id)
    )


def to_entry(
    mailbox: Mailbox, practitioner: Practitioner | None, organisation: Organisation | None
) -> DirectoryEntry:
    return DirectoryEntry(
        id=mailbox.id,
        address=mailbox.address,
        type=MailboxType(mailbox.type),
        display_name=mailbox.display_name,
        service=mailbox.service,
        status=MailboxStatus(mailbox.status),
        red_list=mailbox.red_list,
        dematerialisation=mailbox.dematerialisation,
        practitioner=None if practitioner is None else PractitionerInfo(
            national_id=practitioner.national_id,
            id_type=practitioner.id_type,
            identifier=practitioner.identifier,
            civility=practitioner.civility,
            family_name=practitioner.family_name,
            given_name=practitioner.given_name,
            profession_code=practitioner.profession_code,
            profession_label=practitioner.profession_label,
            specialty_code=practitioner.specialty_code,
            specialty_label=practitioner.specialty_label,
        ),
        organisation=None if organisation is None else OrganisationInfo(
            id=organisation.id,
            id_type=organisation.id_type,
            identifier=organisation.identifier,
            name=organisation.name,
            trade_name=organisation.trade_name,
            address_lines=tuple(line for line in organisation.address_lines.split("\n") if line),
            locality=organisation.locality,
            postal_code=organisation.postal_code,
            department=organisation.department,
            country=organisation.country,
        ),
    )


# Terms are [a-z0-9]+ (directory.text.words), so they are safe inside these queries.
_SQLITE_MATCH = """
SELECT m.id, s.document, m.display_name
FROM directory_search_fts f
JOIN directory_search s ON s.mailbox_id = f.rowid
JOIN mailboxes m ON m.id = f.rowid
WHERE directory_search_fts MATCH :match AND m.status = :active AND NOT m.red_list
ORDER BY f.rowid LIMIT :limit
"""

# No ORDER BY: the candidates are ranked here, and sorting every match of a broad
# query before the LIMIT would cost more than the search. The matches are a
# MATERIALIZED CTE, planned as if all were read (a GIN bitmap unless most rows
# match) but read lazily up to the LIMIT: planned under the LIMIT, an OR of words
# estimated broad turned into a sequential scan testing every row (200 ms and more).
_POSTGRES_MATCH = """
WITH hits AS MATERIALIZED (
  SELECT mailbox_id, document FROM directory_search
  WHERE words @@ to_tsquery('simple', :match))
SELECT m.id, h.document, m.display_name
FROM hits h JOIN mailboxes m ON m.id = h.mailbox_id
WHERE m.status = :active AND NOT m.red_list
LIMIT :limit
"""


class DirectorySearch:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._expansions = _ExpansionCache()

    async def search(self, query: str, *, limit: int = 20, offset: int = 0) -> SearchResult:
        # A lone letter narrows nothing and would scan the whole index: dropped.
        terms = [t for t in dict.fromkeys(words(query)) if len(t) > 1][:MAX_TERMS]
        if not terms:
            return SearchResult([], 0, False)
        async with self._sessions() as session:
            if self._engine.dialect.name == "sqlite":
                sql, match = _SQLITE_MATCH, await _fts5_query(session, terms, self._expansions)
            else:
                sql, match = _POSTGRES_MATCH, await _tsquery(session, terms, self._expansions)
            if match is None:  # a word that starts no word of the directory
                return SearchResult([], 0, False)
            rows = (await session.execute(
                text(sql),
                {"match": match, "active": MailboxStatus.ACTIVE.value, "limit": CANDIDATES + 1},
            )).all()
            truncated = len(rows) > CANDIDATES
            ranked = sorted(rows[:CANDIDATES],
                            key=lambda row: (*_rank(terms, row[1], row[2]), row[0]))
            page = [row[0] for row in ranked[offset:offset + limit]]
            entries = await self._entries(session, page)
        return SearchResult(entries, min(len(rows), CANDIDATES), truncated)

    async def entry(self, address: str) -> DirectoryEntry | None:
        """The directory entry of ``address`` whatever its status (not a public search)."""
        try:
            address = normalize_address(address)
        except DirectoryError:
            return None
        async with self._sessions() as session:
            row = (await session.execute(
                entry_query().where(Mailbox.address == address))).first()
        return None if row is None else to_entry(*row)

    async def _entries(self, session: AsyncSession, ids: list[int]) -> list[DirectoryEntry]:
        if not ids:
            return []
        rows = (await session.execute(entry_query().where(Mailbox.id.in_(ids)))).all()
        by_id = {row[0].id: to_entry(*row) for row in rows}
        return [by_id[i] for i in ids if i in by_id]


_VOCABULARY = """
SELECT term FROM directory_search_vocab WHERE term >= :low AND term < :high LIMIT :limit
"""
MAX_EXPANSIONS = 50
PREFIX_INDEXED = 3  # the FTS5 table has prefix indexes for 2 and 3 characters


class _ExpansionCache:
    """Recent prefix expansions (counting a common word's documents in the vocabulary
    takes milliseconds). Entries live a minute: words an import adds show up then."""

    def __init__(self, size: int = 10_000, seconds: float = 60.0) -> None:
        self._entries: dict[str, tuple[float, list[str]]] = {}
        self._size, self._seconds = size, seconds

    def get(self, term: str) -> list[str] | None:
        found = self._entries.get(term)
        if found is None or time.monotonic() - found[0] > self._seconds:
            return None
        return found[1]

    def put(self, term: str, words: list[str]) -> None:
        if len(self._entries) >= self._size:
            self._entries.clear()
        self._entries[term] = (time.monotonic(), words)


async def _expand(session: AsyncSession, term: str, cache: _ExpansionCache) -> list[str]:
    """The words of the directory ``term`` starts: MAX_EXPANSIONS + 1 of them at most."""
    words = cache.get(term)
    if words is None:
        words = [word for word in (await session.execute(text(_VOCABULARY), {
            "low": term, "high": term + "\x7f", "limit": MAX_EXPANSIONS + 1,
        })).scalars() if word.isalnum()]
        cache.put(term, words)
    return words


async def _fts5_query(
    session: AsyncSession, terms: list[str], cache: _ExpansionCache
) -> str | None:
    """An FTS5 query ANDing one group per term, or None when a term matches nothing.

    FTS5 answers ``"medecin"*`` by merging the doclists of every word it starts before
    returning the first row (~100 ms for a common word in 536k entries), but merges
    ``("medecin" OR "medecine")`` lazily in rowid order (under 1 ms with a LIMIT).
    So a prefix longer than the prefix indexes becomes the OR of the words it starts,
    read from the vocabulary, unless it starts too many of them.
    """
    groups = []
    for term in terms:
        if len(term) <= PREFIX_INDEXED:
            groups.append(f'"{term}"*')
            continue
        words = await _expand(session, term, cache)
        if not words:
            return None
        if len(words) > MAX_EXPANSIONS:
            groups.append(f'"{term}"*')
        else:
            groups.append("(" + " OR ".join(f'"{word}"' for word in words) + ")")
    return " AND ".join(groups)


async def _tsquery(
    session: AsyncSession, terms: list[str], cache: _ExpansionCache
) -> str | None:
    """A tsquery ANDing one group per term, or None when a term matches nothing.

    GIN answers a prefix (``paris:*``) by collecting every row it matches into a
    bitmap before ANDing (tens of milliseconds for three common prefixes in 536k
    entries), but ANDs exact words through their posting trees, skipping ahead. So
    each prefix becomes the OR of the words it starts, read from the vocabulary
    (migration 0005_search_vocab), unless it starts too many of them.
    """
    groups = []
    for term in terms:
        words = await _expand(session, term, cache)
        if not words:
            return None
        if len(words) > MAX_EXPANSIONS:
            groups.append(f"{term}:*")
        else:
            groups.append("(" + " | ".join(words) + ")")
    return " & ".join(groups)


def _rank(terms: list[str], document: str, display_name: str) -> tuple[int, str]:
    """Entries where more query words are whole words come first, then by name."""
    document_words = set(document.split())
    return (-sum(term in document_words for term in terms), display_name.lower())
