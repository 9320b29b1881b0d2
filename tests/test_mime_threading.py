"""RFC 5256: base subject, SORT, THREAD=ORDEREDSUBJECT and THREAD=REFERENCES."""

from __future__ import annotations

import datetime as dt

import pytest

from mailserver.mime.parse import ParsedMessage
from mailserver.mime.threading import (
    SortItem,
    Thread,
    ThreadItem,
    base_subject,
    format_threads,
    sort_messages,
    thread_item,
    thread_orderedsubject,
    thread_references,
)


def item(n: int, mid: str | None, refs: tuple[str, ...] = (), irt: str | None = None,
         subject: str = "s", day: int | None = None) -> ThreadItem:
    hours = n if day is None else day
    sent = dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=hours)
    return ThreadItem(n, mid, list(refs), irt, subject, sent)


@pytest.mark.parametrize(
    ("subject", "base"),
    [
        ("Hello", "Hello"),
        ("Re: Hello", "Hello"),
        ("RE: re: Fwd: FW: Hello", "Hello"),
        ("Re[2]: Hello", "Hello"),
        ("[PATCH] Re: [list] Hello", "Hello"),
        ("Hello (fwd)", "Hello"),
        ("Hello (fwd) (FWD)  ", "Hello"),
        ("[fwd: Re: Hello]", "Hello"),
        ("Re: [Fwd: [list] Hello (fwd)]", "Hello"),
        ("[only a blob]", "[only a blob]"),
        ("  many\t spaces   here ", "many spaces here"),
        ("=?utf-8?q?R=C3=A9union?=", "Réunion"),
        ("Re:", ""),
        ("", ""),
    ],
)
def test_base_subject(subject: str, base: str) -> None:
    assert base_subject(subject) == base


def test_base_subject_adversarial_is_linear() -> None:
    assert base_subject("Re: " * 100_000 + "x" + " (fwd)" * 100_000) == "x"


def test_format_threads() -> None:
    chain = Thread(1, [Thread(2, [Thread(3)])])
    branches = Thread(4, [Thread(5), Thread(6, [Thread(7)])])
    dummy = Thread(None, [Thread(8), Thread(9)])
    assert format_threads([chain, branches, dummy]) == b"(1 2 3)(4 (5)(6 7))((8)(9))"
    assert format_threads([]) == b""
    deep = Thread(0)
    node = deep
    for n in range(1, 20_000):  # deep trees must not hit the recursion limit
        node.children = [Thread(n), Thread(-n)]
        node = node.children[0]
    assert format_threads([deep]).count(b"(") == 1 + 2 * 19_999


def test_orderedsubject() -> None:
    items = [
        item(1, "<a>", subject="Hello", day=5),
        item(2, "<b>", subject="Re: hello", day=1),  # earlier: becomes the parent
        item(3, "<c>", subject="Other", day=3),
        item(4, "<d>", subject="Fwd: HELLO", day=9),
    ]
    assert format_threads(thread_orderedsubject(items)) == b"(2 (1)(4))(3)"


def test_references_basic_reply_tree() -> None:
    items = [
        item(1, "<a@x>", subject="Plan"),
        item(2, "<b@x>", ("<a@x>",), subject="Re: Plan"),
        item(3, "<c@x>", ("<a@x>",), subject="Re: Plan"),
        item(4, "<d@x>", ("<a@x>", "<b@x>"), subject="Re: Plan"),
        item(5, "<e@x>", subject="Unrelated"),
    ]
    assert format_threads(thread_references(items)) == b"(1 (2 4)(3))(5)"


def test_references_missing_parent_makes_dummy() -> None:
    # two replies to a message we do not have: a dummy root keeps them together
    items = [
        item(1, "<b>", ("<missing>",), subject="Re: lost"),
        item(2, "<c>", ("<missing>",), subject="Re: lost"),
        item(3, "<d>", ("<gone>",), subject="Re: alone"),  # one child: promoted
    ]
    assert format_threads(thread_references(items)) == b"((1)(2))(3)"


def test_references_in_reply_to_when_no_references() -> None:
    items = [item(1, "<a>", subject="x"), item(2, "<b>", irt="<a> (from Ann)", subject="y")]
    assert format_threads(thread_references(items)) == b"(1 2)"


def test_references_loop_is_broken() -> None:
    items = [
        item(1, "<a>", ("<b>",), subject="one"),
        item(2, "<b>", ("<a>",), subject="two"),
        item(3, "<c>", ("<c>",), subject="three"),  # refers to itself
        item(4, "<d>", ("<e>", "<d>", "<e>"), subject="four"),
    ]
    out = format_threads(thread_references(items))
    assert out == b"(2 1)(3)(4)"


def test_references_duplicate_message_ids() -> None:
    items = [
        item(1, "<same>", subject="first"),
        item(2, "<same>", subject="second copy"),  # gets a unique id: its own thread
        item(3, "<r>", ("<same>",), subject="Re: first"),
    ]
    assert format_threads(thread_references(items)) == b"(1 3)(2)"


def test_references_no_message_id() -> None:
    items = [item(1, None, subject="a"), item(2, None, subject="b"), item(3, "", subject="c")]
    assert format_threads(thread_references(items)) == b"(1)(2)(3)"


def test_references_subject_merging() -> None:
    items = [
        item(1, "<a>", subject="Meeting"),
        item(2, "<b>", subject="Re: Meeting"),  # no references: joins by subject, as a child
        item(3, "<c>", subject="Meeting"),  # same subject, not a reply: dummy over both
        item(4, "<d>", subject="Agenda"),
    ]
    assert format_threads(thread_references(items)) == b"((1 2)(3))(4)"


def test_references_sorted_by_sent_date() -> None:
    items = [
        item(1, "<a>", subject="root", day=1),
        item(2, "<b>", ("<a>",), subject="Re: root", day=9),
        item(3, "<c>", ("<a>",), subject="Re: root", day=4),
        item(4, "<z>", subject="later", day=0),
    ]
    assert format_threads(thread_references(items)) == b"(4)(1 (3)(2))"


def test_references_long_chain_is_iterative() -> None:
    n = 5000
    items = [item(1, "<m1>")] + [
        item(i, f"<m{i}>", (f"<m{i - 1}>",), subject="Re: s") for i in range(2, n + 1)
    ]
    out = format_threads(thread_references(items))
    assert out == b"(" + b" ".join(str(i).encode() for i in range(1, n + 1)) + b")"


def test_thread_item_from_parsed_message() -> None:
    raw = (b"Message-ID: <x@y>\r\nReferences: <a@y>\r\n <b@y>\r\nIn-Reply-To: <b@y>\r\n"
           b"Subject: =?utf-8?q?Re=3A_R=C3=A9union?=\r\n\r\n")
    arrival = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    ti = thread_item(7, ParsedMessage.from_bytes(raw), arrival)
    assert ti.message_id == "x@y" and ti.references == ["a@y", "b@y"]
    assert ti.subject == "Re: Réunion" and ti.sent == arrival  # no Date: INTERNALDATE
    assert base_subject(ti.subject) == "Réunion"


def sort_item(n: int, headers: bytes, arrival_day: int, size: int) -> SortItem:
    return SortItem(n, ParsedMessage.from_bytes(headers + b"\r\n"),
                    dt.datetime(2024, 1, arrival_day, tzinfo=dt.UTC), size)


def test_sort_criteria() -> None:
    items = [
        sort_item(1, b"From: Zed <zed@x>\r\nSubject: Re: beta\r\n"
                     b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nTo: \"Alice\" <zz@x>\r\n", 3, 300),
        sort_item(2, b"From: adam@x\r\nSubject: alpha\r\nDate: Mon, 1 Jan 2024 12:00:00 +0000\r\n"
                     b"Cc: bob@x\r\n", 1, 100),
        sort_item(3, b"From: =?utf-8?q?Bea?= <mike@x>\r\nSubject: [fwd: Beta]\r\n"
                     b"To: yann@x\r\n", 2, 200),
    ]
    assert sort_messages(items, ["ARRIVAL"]) == [2, 3, 1]
    # no Date: header -> INTERNALDATE (Jan 2) for message 3
    assert sort_messages(items, ["DATE"]) == [1, 2, 3]
    assert sort_messages(items, ["REVERSE", "DATE"]) == [3, 2, 1]
    assert sort_messages(items, ["SIZE"]) == [2, 3, 1]
    assert sort_messages(items, ["FROM"]) == [2, 3, 1]  # adam, mike, zed
    assert sort_messages(items, ["DISPLAYFROM"]) == [2, 3, 1]  # adam@x, bea, zed
    assert sort_messages(items, ["TO"]) == [2, 3, 1]  # "", yann, zz
    assert sort_messages(items, ["DISPLAYTO"]) == [2, 1, 3]  # "", alice, yann@x
    assert sort_messages(items, ["CC"]) == [1, 3, 2]
    # beta (1) and beta (3) tie on SUBJECT: REVERSE SIZE decides, then number order
    assert sort_messages(items, ["SUBJECT", "REVERSE", "SIZE"]) == [2, 1, 3]
    assert sort_messages(items, ["SUBJECT"]) == [2, 1, 3]
    with pytest.raises(ValueError):
        sort_messages(items, ["BOGUS"])


def test_references_reverse_order_chain_is_bounded() -> None:
    # every reply arrives before its parent (the worst case for the loop check)
    n = 3000
    items = [item(i, f"<m{i}>", (f"<m{i + 1}>",), subject="s") for i in range(1, n)]
    items.append(item(n, f"<m{n}>", subject="s"))
    out = format_threads(thread_references(items))
    assert out == b"(" + b" ".join(str(i).encode() for i in range(n, 0, -1)) + b")"


def _numbers(threads: list[Thread]) -> list[int]:
    out: list[int] = []
    stack = list(threads)
    while stack:
        node = stack.pop()
        if node.number is not None:
            out.append(node.number)
        else:
            assert node.children, "a dummy without children must have been pruned"
        stack.extend(node.children)
    return out


def test_references_random_graphs_keep_every_message_once() -> None:
    import random

    rng = random.Random(5256)
    for _ in range(300):
        n = rng.randint(1, 40)
        ids = [f"<{rng.randint(0, 25)}@x>" for _ in range(n)]  # duplicates on purpose
        items = [
            item(
                i + 1,
                rng.choice([ids[i], None, ids[i]]),
                tuple(rng.choice([*ids, "<absent@x>"]) for _ in range(rng.randint(0, 5))),
                rng.choice([None, rng.choice(ids)]),
                rng.choice(["a", "Re: a", "b", "Fwd: b", "", "[x] Re: a"]),
                day=rng.randint(0, 5),
            )
            for i in range(n)
        ]
        threads = thread_references(items)
        assert sorted(_numbers(threads)) == list(range(1, n + 1))
        assert format_threads(threads).count(b"(") == format_threads(threads).count(b")")
        assert sorted(_numbers(thread_orderedsubject(items))) == list(range(1, n + 1))
