"""Masking of survey comments: payment card numbers become ``[card]``, phone numbers
``[phone]``, and order, ticket or invoice numbers stay readable."""

from __future__ import annotations

import re

import pandas as pd
import pytest

import cs_metrics
from cs_metrics import Filters, Warehouse
from cs_metrics.analysis.feedback import latest_comments, luhn_valid, mask_comment, mask_pii
from cs_metrics.analysis.topics import _model_text
from tests.conftest import ticket, write_csv


@pytest.mark.parametrize(("digits", "valid"), [
    ("4111111111111111", True),  # Visa test number
    ("4222222222222", True),  # 13-digit Visa test number
    ("378282246310005", True),  # American Express test number
    ("5500000000000004", True),  # Mastercard test number
    ("6304000000000000000", True),  # 19 digits
    ("79927398713", True),  # the textbook example
    ("4111111111111112", False),
    ("4111111111111", False),
])
def test_luhn_check(digits, valid):
    assert luhn_valid(digits) is valid


@pytest.mark.parametrize(("text", "masked"), [
    ("card 4111 1111 1111 1111 was charged twice", "card [card] was charged twice"),
    ("4111-1111-1111-1111", "[card]"),
    ("paid with 4111111111111111.", "paid with [card]."),
    ("amex 3782 822463 10005 declined", "amex [card] declined"),
    ("old card 4222222222222 expired", "old card [card] expired"),
    ("mastercard 5500 0000 0000 0004, visa 4111 1111 1111 1111",
     "mastercard [card], visa [card]"),
    ("a 19-digit card 6304 0000 0000 0000 000", "a 19-digit card [card]"),
    # a number that looks like an order id but passes the check: masked, the safe side
    ("order 4111 1111 1111 1111", "order [card]"),
])
def test_card_numbers_are_masked(text, masked):
    out = mask_pii(text)
    assert out == masked
    assert "1111 1111" not in out and "0004" not in out


@pytest.mark.parametrize("text", [
    "not a card 4111 1111 1111 1112",  # 16 digits failing the check (and too long a phone)
    "reference 1234 5678 9012 3456 7890 ok",  # 20 digits: longer than any card
    "the 12 digits 4111 1111 1111",  # too short for a card (a phone-length number, below)
])
def test_numbers_that_are_not_cards_are_not_masked_as_cards(text):
    assert "[card]" not in mask_pii(text)


def test_a_long_non_luhn_number_is_left_as_written():
    assert mask_pii("not a card 4111 1111 1111 1112") == "not a card 4111 1111 1111 1112"


@pytest.mark.parametrize("text", [
    "order 123456789",
    "ticket #48213",
    "invoice INV-2024-00017",
    "order no. 5551234567",
    "Order #5551234567 arrived broken",
    "my order number is 5551234567",
    "ref: 20240117",
    "Case 00123456 is still open",
    "account 98765432 was charged",
    "#12345678 again",
    "ticket T000123, order 12345",
])
def test_order_ticket_and_invoice_numbers_stay_readable(text):
    assert mask_pii(text) == text


@pytest.mark.parametrize(("text", "masked"), [
    ("call +1 415 555 0100 tonight", "call [phone] tonight"),
    ("(415) 555-0100", "[phone]"),
    ("my number is 555-1234.", "my number is [phone]."),
    ("phone number is 5551234567", "phone number is [phone]"),
    ("order 123456789, call me on +1 415 555 0100",
     "order 123456789, call me on [phone]"),
    ("my order number is 5551234567 and my phone is 555 123 4567",
     "my order number is 5551234567 and my phone is [phone]"),
    ("Case 00123456 call 07700 900123", "Case 00123456 call [phone]"),
    ("invoice INV-2024-00017: ring 020 7946 0958", "invoice INV-2024-00017: ring [phone]"),
])
def test_phone_numbers_are_still_masked(text, masked):
    assert mask_pii(text) == masked


def test_cards_are_masked_in_the_comments_shown(tmp_path):
    comments = {
        "F1": "Charged twice on 4111 1111 1111 1111 for order 123456789, call +1 415 555 0100",
        "F2": "Refund to 5500-0000-0000-0004 please (invoice INV-2024-00017)",
    }
    write_csv(tmp_path / "src", "tickets", [
        ticket("T1", "2025-01-10 10:00:00", "closed", resolved_at="2025-01-10 12:00:00"),
        ticket("T2", "2025-01-11 10:00:00", "closed", resolved_at="2025-01-11 12:00:00"),
    ])
    write_csv(tmp_path / "src", "feedback", [
        {"feedback_id": fid, "ticket_id": f"T{fid[1]}", "csat": 1, "comment": text,
         "submitted_at": f"2025-01-1{fid[1]} 13:00:00"}
        for fid, text in comments.items()
    ])
    cs_metrics.ingest(tmp_path / "src", db=tmp_path / "wh.duckdb")
    wh = Warehouse(tmp_path / "wh.duckdb", read_only=True)
    try:
        shown = sorted(latest_comments(wh, Filters()).rows["comment"])
    finally:
        wh.close()
    assert shown == [
        "Charged twice on [card] for order 123456789, call [phone]",
        "Refund to [card] please (invoice INV-2024-00017)",
    ]
    assert not any("4111" in c or "0004" in c or "0100" in c for c in shown)


def test_masks_never_become_topic_words():
    masked = pd.Series([mask_comment("Paid by card 4111 1111 1111 1111, call 555 123 4567, "
                                     "mail ann@example.com")])
    assert masked.iloc[0] == "Paid by card [card], call [phone], mail [email]"
    words = re.findall(r"[A-Za-z]+", _model_text(masked).iloc[0])
    # the word the customer wrote stays; the placeholders do not make words of their own
    assert words == ["Paid", "by", "card", "call", "mail"]
