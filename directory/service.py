"""The directory's API: create and look up mailboxes and patients.

Callers get plain frozen records, never ORM objects, so that the pipeline and the
policies can hold them without a database session.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from directory.addresses import DirectoryError as DirectoryError
from directory.addresses import normalize_address as normalize_address
from directory.ins import INS_NIR_OID, validate_ins
from directory.models import (
    Mailbox,
    MailboxStatus,
    MailboxType,
    Patient,
    PatientStatus,
    Practitioner,
    SearchDocument,
)
from directory.text import document
from mailserver.store.database import Reader, writer


@dataclass(frozen=True)
class MailboxRecord:
    id: int
    address: str
    type: MailboxType
    display_name: str
    owner: str | None
    status: MailboxStatus
    password_hash: str | None
    patient_status: PatientStatus | None = None

    @property
    def is_patient(self) -> bool:
        return self.type is MailboxType.PAT

    @property
    def can_receive(self) -> bool:
        return self.status is MailboxStatus.ACTIVE

    @property
    def can_log_in(self) -> bool:
        return self.status is MailboxStatus.ACTIVE and self.password_hash is not None


class Directory:
    def __init__(self, engine: AsyncEngine, reader: Reader | None = None) -> None:
        self._sessions = async_sessionmaker(writer(engine), expire_on_commit=False)
        self._readers = async_sessionmaker(engine, expire_on_commit=False)
        self._engine = engine
        self._reader = reader

    async def add_mailbox(
        self,
        address: str,
        mailbox_type: MailboxType,
        *,
        password_hash: str | None,
        display_name: str = "",
        owner: str | None = None,
    ) -> MailboxRecord:
        address = normalize_address(address)
        async with self._sessions.begin() as session:
            mailbox = Mailbox(
                address=address,
                type=mailbox_type.value,
                display_name=display_name,
                owner=owner,
                password_hash=password_hash,
                status=MailboxStatus.ACTIVE.value,
            )
            session.add(mailbox)
            try:
                await session.flush()
            except IntegrityError as error:
                raise DirectoryError(f"mailbox {address} already exists") from error
            if mailbox_type.is_professional:  # findable by the directory search
                session.add(SearchDocument(
                    mailbox_id=mailbox.id,
                    document=document((display_name, address.partition("@")[0])),
                ))
            return _record(mailbox, None)

    async def add_patient(
        self,
        *,
        ins: str,
        family_name: str,
        given_names: str,
        birthdate: dt.date,
        patient_domain: str,
        password_hash: str | None,
        sex: str | None = None,
    ) -> MailboxRecord:
        ins = validate_ins(ins)
        if not patient_domain:
            raise DirectoryError("no patient domain is configured (server.patient_domain)")
        address = normalize_address(f"{ins}@{patient_domain}")
        async with self._sessions.begin() as session:
            mailbox = Mailbox(
                address=address,
                type=MailboxType.PAT.value,
                display_name=f"{given_names} {family_name}".strip(),
                password_hash=password_hash,
                status=MailboxStatus.ACTIVE.value,
            )
            session.add(mailbox)
            try:
                await session.flush()
                session.add(
                    Patient(
                        ins=ins,
                        ins_oid=INS_NIR_OID,
                        family_name=family_name,
                        given_names=given_names,
                        birthdate=birthdate,
                        sex=sex,
                        mailbox_id=mailbox.id,
                        status=PatientStatus.OPEN.value,
                    )
                )
                await session.flush()
            except IntegrityError as error:
                raise DirectoryError(f"patient {ins} already has a mailbox") from error
            return _record(mailbox, PatientStatus.OPEN.value)

    async def lookup(self, address: str) -> MailboxRecord | None:
        """The mailbox behind ``address``, whatever its status, or None."""
        try:
            address = normalize_address(address)
        except DirectoryError:
            return None
        # On every RCPT: one prebuilt Core statement, no ORM identity map, and
        # with a Reader (the server) a point read: no thread hop on SQLite.
        if self._reader is not None:
            row = await self._reader.point(
                lambda connection: connection.execute(_LOOKUP, {"address": address}).first()
            )
        else:
            async with self._engine.connect() as connection:
                row = (await connection.execute(_LOOKUP, {"address": address})).first()
        if row is None:
            return None
        return _record(row, row.patient_status)

    async def practitioner_mailbox(self, national_id: str) -> MailboxRecord | None:
        """The PER mailbox of the practitioner with this national identifier (RPPS),
        for logins by OpenID Connect token; None when there is not exactly one."""
        async with self._readers() as session:
            ids = (
                await session.execute(
                    select(Mailbox.address)
                    .outerjoin(Practitioner, Practitioner.id == Mailbox.practitioner_id)
                    .where(
                        Mailbox.type == MailboxType.PER.value,
                        or_(Practitioner.national_id == national_id, Mailbox.owner == national_id),
                    )
                    .limit(2)
                )
            ).scalars().all()
        return await self.lookup(ids[0]) if len(ids) == 1 else None

    async def list_mailboxes(self, mailbox_type: MailboxType | None = None) -> list[MailboxRecord]:
        async with self._readers() as session:
            query = (
                select(Mailbox, Patient.status)
                .outerjoin(Patient, Patient.mailbox_id == Mailbox.id)
                .order_by(Mailbox.address)
            )
            if mailbox_type is not None:
                query = query.where(Mailbox.type == mailbox_type.value)
            return [_record(m, s) for m, s in (await session.execute(query)).all()]

    async def set_password_hash(self, address: str, password_hash: str) -> None:
        await self._update(address, password_hash=password_hash)

    async def set_status(self, address: str, status: MailboxStatus) -> None:
        await self._update(address, status=status.value)

    async def lookup_certificates(self, address: str) -> list[bytes]:
        """DER of the valid encryption certificates for ``address``: bound to the
        address, else to its domain (directory.certificates)."""
        from directory.certificates import Certificates  # it imports this module

        return [record.der for record in
                await Certificates(self._engine).lookup_certificates(address)]

    async def set_red_list(self, address: str, red_listed: bool) -> None:
        """Hide (or show again) a mailbox from the public search."""
        await self._update(address, red_list=red_listed)

    async def set_patient_status(self, address: str, status: PatientStatus) -> None:
        await self._update_patient(address, status=status.value)

    async def set_notification_address(self, address: str, personal: str | None) -> None:
        """Where a patient is told, outside the secure space, that a message waits."""
        if personal is not None:
            personal = normalize_address(personal)
        await self._update_patient(address, notification_address=personal)

    async def notification_address(self, address: str) -> str | None:
        """The personal address a patient is notified at, if they gave one."""
        address = normalize_address(address)
        async with self._readers() as session:
            return (await session.execute(
                select(Patient.notification_address).join(
                    Mailbox, Mailbox.id == Patient.mailbox_id).where(Mailbox.address == address)
            )).scalar_one_or_none()

    async def _update_patient(self, address: str, **values: object) -> None:
        address = normalize_address(address)
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(Patient)
                .where(Patient.mailbox_id == select(Mailbox.id)
                       .where(Mailbox.address == address).scalar_subquery())
                .values(**values)
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise DirectoryError(f"no patient mailbox {address}")

    async def _update(self, address: str, **values: object) -> None:
        address = normalize_address(address)
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(Mailbox).where(Mailbox.address == address).values(**values)
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise DirectoryError(f"no mailbox {address}")


_LOOKUP = (
    select(*Mailbox.__table__.columns, Patient.status.label("patient_status"))
    .outerjoin(Patient, Patient.mailbox_id == Mailbox.id)
    .where(Mailbox.address == bindparam("address"))
)


def _record(mailbox: Any, patient_status: str | None) -> MailboxRecord:
    return MailboxRecord(
        id=mailbox.id,
        address=mailbox.address,
        type=MailboxType(mailbox.type),
        display_name=mailbox.display_name,
        owner=mailbox.owner,
        status=MailboxStatus(mailbox.status),
        password_hash=mailbox.password_hash,
        patient_status=PatientStatus(patient_status) if patient_status else None,
    )
