"""The patient rule, adversarially, through real SMTP submission over TLS.

A patient only replies, inside a thread a professional opened and has not
closed, to professionals of that thread; never starts one, never writes to
another patient, never adds recipients."""

from __future__ import annotations

import datetime as dt
import smtplib
import ssl
import uuid
from dataclasses import dataclass

import pytest

from directory.ins import nir_control_key
from directory.models import MailboxStatus
from mailserver.auth import hash_password
from tests.conftest import DOMAIN, PATIENT_DOMAIN, ServerThread

PASSWORD = "correct horse battery"
DR_A = f"dr.a@{DOMAIN}"
DR_B = f"dr.b@{DOMAIN}"


def ins(first13: str) -> str:
    return f"{first13}{nir_control_key(first13):02d}"


P1 = f"{ins('2850575112034')}@{PATIENT_DOMAIN}"
P2 = f"{ins('1720213055123')}@{PATIENT_DOMAIN}"


@dataclass
class Result:
    code: int
    reply: bytes
    stage: str  # "mail" | "rcpt" | "data" | "ok"

    @property
    def accepted(self) -> bool:
        return self.stage == "ok"


class Actors:
    def __init__(self, server: ServerThread) -> None:
        self.server = server
        self.context = ssl.create_default_context(
            cafile=server.settings.path(server.settings.tls.ca)
        )

    def send(self, login: str, to: list[str], *, mail_from: str | None = None,
             headers: dict[str, str] | None = None, envelope: list[str] | None = None,
             message_id: str | None = None) -> tuple[Result, str]:
        message_id = message_id or f"<{uuid.uuid4().hex}@client.example>"
        fields = {"From": login, "To": ", ".join(to), "Subject": "Consultation",
                  "Message-ID": message_id, **(headers or {})}
        raw = "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\nBonjour\r\n"
        with smtplib.SMTP("127.0.0.1", self.server.port("submission"), timeout=10) as client:
            client.starttls(context=self.context)
            client.login(login, PASSWORD)
            utf8 = not all(a.isascii() for a in envelope or to)
            code, reply = client.mail(mail_from or login, ["SMTPUTF8"] if utf8 else [])
            if code != 250:
                return Result(code, reply, "mail"), message_id
            for rcpt in envelope or to:
                code, reply = client.rcpt(rcpt)
                if code != 250:
                    return Result(code, reply, "rcpt"), message_id
            code, reply = client.data(raw.encode())
            return Result(code, reply, "ok" if code == 250 else "data"), message_id

    def inbox_ids(self, address: str) -> list[bytes]:
        return [m.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0]
                for m in self.server.inbox(address)]


@pytest.fixture
def actors(server: ServerThread) -> Actors:
    server.add_mailbox(DR_A, PASSWORD)
    server.add_mailbox(DR_B, PASSWORD)

    async def patients() -> None:
        for address, family in ((P1, "MARTIN"), (P2, "BERNARD")):
            record = await server.app.directory.add_patient(
                ins=address.split("@")[0], family_name=family, given_names="X",
                birthdate=dt.date(1980, 1, 1), patient_domain=PATIENT_DOMAIN,
                password_hash=hash_password(PASSWORD),
            )
            await server.app.store.ensure_folders(record.id)

    server.call(patients())
    return Actors(server)


def refused(result: Result, stage: str, code: int = 550, status: bytes = b"5.7.1") -> bool:
    return (result.stage, result.code, result.reply[:5]) == (stage, code, status)


def open_thread(actors: Actors, to: list[str] | None = None) -> str:
    result, message_id = actors.send(DR_A, to or [P1])
    assert result.accepted, result
    return message_id


def test_patient_replies_to_the_professional_who_wrote(actors: Actors) -> None:
    opened = open_thread(actors)
    result, reply_id = actors.send(P1, [DR_A], headers={"In-Reply-To": opened})
    assert result.accepted, result
    assert reply_id.encode() in actors.inbox_ids(DR_A)
    # and the professional answers in the same thread, the patient again
    answer, answer_id = actors.send(DR_A, [P1], headers={"In-Reply-To": reply_id})
    assert answer.accepted
    again, _ = actors.send(P1, [DR_A], headers={"In-Reply-To": answer_id})
    assert again.accepted


def test_references_only_reply_is_a_reply(actors: Actors) -> None:
    opened = open_thread(actors)
    result, _ = actors.send(P1, [DR_A], headers={"References": f"<x@old.example> {opened}"})
    assert result.accepted, result


def test_patient_never_starts_a_thread(actors: Actors) -> None:
    result, _ = actors.send(P1, [DR_A])
    assert refused(result, "data")
    assert b"only reply" in result.reply
    assert actors.server.inbox(DR_A) == []


def test_patient_never_writes_to_another_patient(actors: Actors) -> None:
    open_thread(actors)
    result, _ = actors.send(P1, [P2])
    assert refused(result, "rcpt")


def test_forged_in_reply_to_another_patients_message(actors: Actors) -> None:
    open_thread(actors, [P1])
    for_p2 = open_thread(actors, [P2])
    result, _ = actors.send(P1, [DR_A], headers={"In-Reply-To": for_p2})
    assert refused(result, "data")


def test_reply_to_a_message_the_patient_never_received(actors: Actors) -> None:
    between_pros, _ = actors.send(DR_A, [DR_B])
    assert between_pros.accepted
    pro_message = actors.inbox_ids(DR_B)[0].decode()
    result, _ = actors.send(P1, [DR_A], headers={"In-Reply-To": pro_message})
    assert refused(result, "data")
    unknown, _ = actors.send(P1, [DR_A], headers={"In-Reply-To": "<never@seen.example>"})
    assert refused(unknown, "data")


def test_fin_closes_and_a_new_message_reopens(actors: Actors) -> None:
    opened = open_thread(actors)
    closing, closing_id = actors.send(DR_A, [P1], headers={"In-Reply-To": opened,
                                                           "X-MSS-MES": "FIN"})
    assert closing.accepted
    result, _ = actors.send(P1, [DR_A], headers={"In-Reply-To": closing_id})
    assert refused(result, "data") and b"closed" in result.reply
    late, _ = actors.send(P1, [DR_A], headers={"In-Reply-To": opened})  # an older message
    assert refused(late, "data")
    reopening, reopening_id = actors.send(DR_A, [P1], headers={"In-Reply-To": closing_id})
    assert reopening.accepted
    result, _ = actors.send(P1, [DR_A], headers={"In-Reply-To": reopening_id})
    assert result.accepted


def test_reply_all_adding_a_second_patient_or_a_stranger(actors: Actors) -> None:
    opened = open_thread(actors)
    second_patient, _ = actors.send(P1, [DR_A], headers={"In-Reply-To": opened, "Cc": P2})
    assert refused(second_patient, "data")
    stranger, _ = actors.send(P1, [DR_A], headers={"In-Reply-To": opened, "Cc": DR_B})
    assert refused(stranger, "data") and DR_B.encode() in stranger.reply
    hidden, _ = actors.send(P1, [DR_A], headers={"In-Reply-To": opened, "Bcc": DR_B})
    assert refused(hidden, "data")
    envelope_only, _ = actors.send(P1, [DR_A], envelope=[DR_A, DR_B],
                                   headers={"In-Reply-To": opened})
    assert refused(envelope_only, "data")
    assert actors.server.inbox(DR_B) == []
    # The patient's own address in a reply-all is harmless.
    own, _ = actors.send(P1, [DR_A], headers={"In-Reply-To": opened, "Cc": P1})
    assert own.accepted


def test_thread_with_two_professionals(actors: Actors) -> None:
    opened, _ = actors.send(DR_A, [P1], headers={"Cc": DR_B}, envelope=[P1, DR_B])
    assert opened.accepted
    message_id = actors.inbox_ids(P1)[0].decode()
    result, _ = actors.send(P1, [DR_A, DR_B], headers={"In-Reply-To": message_id})
    assert result.accepted, result


def test_address_variants_do_not_open_doors(actors: Actors) -> None:
    opened = open_thread(actors)
    upper, _ = actors.send(P1, [DR_A.upper()], headers={"In-Reply-To": opened})
    assert upper.accepted  # same mailbox, case-insensitively
    plus, _ = actors.send(P1, [f"dr.a+x@{DOMAIN}"], headers={"In-Reply-To": opened})
    assert refused(plus, "rcpt", status=b"5.1.1")
    lookalike, _ = actors.send(P1, [f"dr.\u0430@{DOMAIN}"], headers={"In-Reply-To": opened})
    assert refused(lookalike, "rcpt", status=b"5.1.1")  # Cyrillic а: no such mailbox
    idn, _ = actors.send(P1, ["dr.a@xn--hpital-fxa.example"], headers={"In-Reply-To": opened})
    assert refused(idn, "rcpt")  # hôpital.example is another domain: no relaying


def test_patient_cannot_send_as_another_patient(actors: Actors) -> None:
    opened = open_thread(actors, [P2])
    result, _ = actors.send(P1, [DR_A], mail_from=P2, headers={"In-Reply-To": opened})
    assert refused(result, "mail", 553)


def test_closed_or_opposed_space(actors: Actors) -> None:
    opened = open_thread(actors)

    async def close_space() -> None:
        from sqlalchemy import update

        from directory.models import Patient

        async with actors.server.app.engine.begin() as connection:
            await connection.execute(update(Patient).values(status="closed")
                                     .where(Patient.ins == P1.split("@")[0]))

    actors.server.call(close_space())
    to_patient, _ = actors.send(DR_A, [P1])
    assert refused(to_patient, "rcpt", status=b"5.1.1")
    from_patient, _ = actors.send(P1, [DR_A], headers={"In-Reply-To": opened})
    assert refused(from_patient, "data")


def test_reply_after_the_professional_left(actors: Actors) -> None:
    opened = open_thread(actors)
    actors.server.call(actors.server.app.directory.set_status(DR_A, MailboxStatus.RETIRED))
    result, _ = actors.send(P1, [DR_A], headers={"In-Reply-To": opened})
    assert refused(result, "rcpt", status=b"5.1.1")


def test_reply_to_a_bounce_or_notification_is_no_thread(actors: Actors) -> None:
    with smtplib.SMTP("127.0.0.1", actors.server.port("smtp"), timeout=10) as mx:
        mx.sendmail("", [P1],
                    b"Message-ID: <dsn-1@mx.example>\r\nSubject: Undelivered\r\n\r\nx\r\n")
    result, _ = actors.send(P1, [DR_A], headers={"In-Reply-To": "<dsn-1@mx.example>"})
    assert refused(result, "data")


def test_patient_address_forged_on_the_relay_port(actors: Actors) -> None:
    with smtplib.SMTP("127.0.0.1", actors.server.port("smtp"), timeout=10) as mx:
        mx.ehlo("mx.example")
        code, reply = mx.mail(P1)
        assert (code, reply[:5]) == (550, b"5.7.1")
