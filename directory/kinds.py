"""The directory's enumerations: mailbox types and statuses, certificate usages,
row sources (plain Python, importable without the database layer)."""

from __future__ import annotations

import enum


class MailboxType(enum.StrEnum):
    """MSSanté mailbox types, plus PAT for a patient's mailbox."""

    PER = "PER"  # personal mailbox of a practitioner
    ORG = "ORG"  # organisational mailbox (a service, a department)
    APP = "APP"  # application mailbox (practice software)
    CAB = "CAB"  # practice (cabinet) mailbox
    PAT = "PAT"  # patient mailbox, <INS>@<patient domain>

    @property
    def is_professional(self) -> bool:
        return self is not MailboxType.PAT


class MailboxStatus(enum.StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"  # cannot log in nor receive; may be enabled again
    RETIRED = "retired"  # gone for good; the address is never reused


class PatientStatus(enum.StrEnum):
    OPEN = "open"
    OPPOSED = "opposed"
    CLOSED = "closed"


class CertificateUsage(enum.StrEnum):
    SIGN = "sign"
    ENCRYPT = "encrypt"
    TLS_CLIENT = "tls-client"


class Source(enum.StrEnum):
    """Where a directory row comes from; imports only ever retire their own rows."""

    MSSANTE = "mssante"  # the national "Extraction Correspondance MSSanté"
    RPPS = "rpps"  # the RPPS "PS_LibreAcces_Personne_activite" file
