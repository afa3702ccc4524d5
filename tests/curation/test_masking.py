"""Personal-data masking: real e-mail addresses and phone numbers go, ids, dates, prices and
versions stay; the masked share is counted per kind and capped."""

import json
from datetime import date

import phonenumbers
import polars as pl
import pytest

from annotation_pipelines.curation import MASK, MaskedShareError, build_snapshot, mask_personal_data
from annotation_pipelines.curation.masking import MASK_CHARACTER
from annotation_pipelines.synthetic import generate_workload

# (text, default region): phone numbers as people write them, national and international.
PHONE_NUMBERS = [
    ("call +1 415 555 0100 now", "US"),
    ("call (415) 555-0132 today", "US"),
    ("reach me on 415-555-0199", "US"),
    ("tel 650.253.0000", "US"),
    ("tel:+14155550100", "DE"),
    ("+1-202-555-0173 is the hotline", "FR"),
    ("ring 020 7946 0958 after six", "GB"),
    ("mobile 07911 123456", "GB"),
    ("+44 20 7946 0958", "US"),
    ("Tel. 089 1234567", "DE"),
    ("Büro 030 901820", "DE"),
    ("+49 (0)30 12345678", "US"),
    ("0049 30 901820", "GB"),
    ("appelez le 01 23 45 67 89", "FR"),
    ("portable 06 12 34 56 78", "FR"),
    ("+33 1 23 45 67 89", "IN"),
    ("+91 98765 43210", "US"),
    ("call 098765 43210", "IN"),
    ("+61 2 9374 4000", "US"),
    ("+81 3-1234-5678", "GB"),
]

# Digits that are not phone numbers: the greedy pattern masked all of these.
NOT_PHONE_NUMBERS = [
    "sentiment item 20261122-123",
    "sentiment item 20261122-10",
    "sentiment item 20261122-1234567",
    "sentiment-20261122-00012345",
    "shipped 2026-11-22",
    "at 2026-11-22 10:00:00",
    "order 123456789",
    "order #123456789",
    "item 12345678",
    "task-00012345",
    "version 1.2.3.4",
    "upgrade to v10.20.30",
    "price $1,234.56",
    "total 1234567.89 EUR",
    "ISBN 978-3-16-148410-0",
    "host 192.168.100.200",
    "from 1999-2026",
    "open 12:30-14:45",
    "uuid 550e8400-e29b-41d4-a716-446655440000",
    # Leading zeros that are no exit code: too short for a number, or part of a time, a date, a
    # decimal or an id.
    "order 0044207946",
    "at 00:44 on 2020-05-01",
    "rate 0.0049 per unit",
    "ISO 3166 code 0044, 0033 and 0049",
    "batch 2000 2001 2002",
]

# Where the exit code is not 00, `00` after a decimal point or inside an id is not read as one.
# (Where it is 00, libphonenumber reads these as numbers and masks them: the safe side.)
NOT_DIALLED_WITH_00 = [
    "ratio 0.00442079460958",
    "amount 1,00442079460958",
    "item-00442079460958",
    "ref 7/00442079460958",
    "id x00442079460958",
]

# International numbers written with the `00` exit code, as most of Europe, Africa and Asia dial
# them, with and without a space after it.
NUMBERS_DIALLED_WITH_00 = [
    "call 0044 20 7946 0958",
    "call 00 44 20 7946 0958",
    "appelez le 0033 1 42 68 53 00",
    "appelez le 00 33 1 42 68 53 00",
    "Tel. 0049 30 1234567",
    "Tel. 00 49 30 1234567",
    "call 0081 3-1234-5678",
    "call 00 81 3-1234-5678",
    "call 0091 98765 43210",
    "call 00442079460958",
    "tel:0044-20-7946-0958",
    "(0049) 30 1234567",
    # A `00` group inside the number is no second exit code.
    "appelez le 0033 1 42 68 00 53",
]

EMAILS = [
    "mail me at jane.doe@example.com",
    "J.Doe+tag@mail.co.uk wrote",
    "<x_y@sub-domain.example.org>",
    "contact: first.last@xn--bcher-kva.de.",
]

NOT_EMAILS = [
    "follow @handle",
    "a@b.c",
    "user@localhost",
    "5@10.00 each",
    "email: jane.doe at example dot com",
    "@@@.com",
]


def _mask(texts, *, region="US", patterns=(), **options):
    frame = pl.DataFrame({"payload": texts}, schema={"payload": pl.String})
    return mask_personal_data(
        frame, columns=("payload",), phone_region=region, patterns=patterns, **options
    )


@pytest.mark.parametrize(("text", "region"), PHONE_NUMBERS)
def test_phone_numbers_are_masked(text, region):
    masked, counts = _mask([text], region=region)
    assert MASK in masked["payload"][0]
    assert not any(ch.isdigit() for ch in masked["payload"][0].replace(MASK, "")), masked
    assert counts.phone == 1 and counts.rows_masked == 1


@pytest.mark.parametrize("region", ["US", "GB", "DE", "FR", "IN", "JP"])
@pytest.mark.parametrize("text", NOT_PHONE_NUMBERS)
def test_ids_dates_prices_and_versions_are_kept(text, region):
    masked, counts = _mask([text], region=region)
    assert masked["payload"][0] == text
    assert counts.rows_masked == 0


def _masks_every_digit(text, *, region):
    masked, counts = _mask([text], region=region)
    out = masked["payload"][0]
    return MASK in out and not any(ch.isdigit() for ch in out.replace(MASK, "")), counts


# Each region's own exit code reads `00CC` as a national number (011 in the US and Canada, 010 in
# Japan, 0011 in Australia, 00 and a carrier code in Brazil); a number is international whatever
# the text's default region.
@pytest.mark.parametrize("region", ["US", "CA", "GB", "DE", "FR", "JP", "IN", "AU", "BR"])
@pytest.mark.parametrize("text", NUMBERS_DIALLED_WITH_00)
def test_numbers_dialled_with_00_are_masked_in_every_region(text, region):
    masked_all, counts = _masks_every_digit(text, region=region)
    assert masked_all, text
    assert counts.phone == 1 and counts.rows_masked == 1


@pytest.mark.parametrize("region", sorted(phonenumbers.SUPPORTED_REGIONS))
def test_a_number_dialled_with_00_is_masked_whatever_the_default_region(region):
    for text in ("call 0044 20 7946 0958", "call 00 33 1 42 68 53 00"):
        assert _masks_every_digit(text, region=region)[0], (text, region)


@pytest.mark.parametrize("region", ["US", "CA", "JP", "AU", "BR"])
@pytest.mark.parametrize("text", NOT_DIALLED_WITH_00)
def test_00_inside_a_number_or_an_id_is_no_exit_code(text, region):
    masked, counts = _mask([text], region=region)
    assert masked["payload"][0] == text
    assert counts.rows_masked == 0


@pytest.mark.parametrize("region", sorted(phonenumbers.region_codes_for_country_code(1)))
def test_numbers_dialled_with_011_are_masked_in_north_american_regions(region):
    for text in ("call 011 44 20 7946 0958", "call 01133 1 42 68 53 00"):
        assert _masks_every_digit(text, region=region)[0], (text, region)


@pytest.mark.parametrize("region", ["US", "GB", "DE", "FR", "JP"])
def test_every_number_of_a_list_is_masked_whatever_its_exit_code(region):
    text = "UK 0044 20 7946 0958, FR 00 33 1 42 68 00 53 / DE +49 30 1234567\n0049 30 901820\n"
    masked, counts = _mask([text], region=region)
    assert masked["payload"][0] == f"UK {MASK}, FR {MASK} / DE {MASK}\n{MASK}\n"
    assert counts.phone == 1


def test_length_preserving_masks_cover_the_00_exit_code():
    texts = ["call 0044 20 7946 0958 or +1 415 555 0100", "call 00 49 30 1234567."]
    masked, counts = _mask(texts, region="US", preserve_length=True)
    star = MASK_CHARACTER
    assert masked["payload"].to_list() == [
        f"call {star * 4} {star * 2} {star * 4} {star * 4} or {star * 2} {star * 3} {star * 3} "
        f"{star * 4}",
        f"call {star * 2} {star * 2} {star * 2} {star * 7}.",
    ]
    assert counts.phone == 2


@pytest.mark.parametrize("text", EMAILS)
def test_email_addresses_are_masked(text):
    masked, counts = _mask([text])
    assert "@" not in masked["payload"][0] and MASK in masked["payload"][0]
    assert counts.email == 1


@pytest.mark.parametrize("text", NOT_EMAILS)
def test_things_that_are_not_email_addresses_are_kept(text):
    masked, counts = _mask([text])
    assert masked["payload"][0] == text and counts.email == 0


def test_counts_per_kind_and_configured_patterns():
    texts = [
        "jane@example.com or +1 415 555 0100",
        "ticket SECRET-42 for bob@example.org",
        "plain text",
        None,
        "item 20261122-5",
    ]
    masked, counts = _mask(texts, patterns=[r"SECRET-\d+"])
    assert masked["payload"].to_list() == [
        f"{MASK} or {MASK}",
        f"ticket {MASK} for {MASK}",
        "plain text",
        None,
        "item 20261122-5",
    ]
    assert (counts.rows, counts.rows_masked, counts.email, counts.phone, counts.custom) == (
        5,
        2,
        2,
        1,
        1,
    )
    assert counts.share == pytest.approx(0.4)
    with pytest.raises(ValueError, match="mask pattern"):
        _mask(texts, patterns=["(unclosed"])


def test_length_preserving_masks_keep_every_character_offset():
    texts = [
        "Ada (ada@example.com) called +1 415 555 0100 on SECRET-42.",
        "item 20261122-10 has no personal data",
        None,
    ]
    masked, counts = _mask(texts, patterns=[r"SECRET-\d+"], preserve_length=True)
    star = MASK_CHARACTER
    # Whitespace inside a match stays: the text keeps its tokens, not only its length.
    assert masked["payload"].to_list() == [
        f"Ada ({star * 15}) called {star * 2} {star * 3} {star * 3} {star * 4} on {star * 9}.",
        texts[1],
        None,
    ]
    _, default = _mask(texts, patterns=[r"SECRET-\d+"])
    assert counts == default
    assert (counts.rows_masked, counts.email, counts.phone, counts.custom) == (1, 1, 1, 1)


def test_length_preserving_masking_refuses_text_holding_its_internal_marks():
    with pytest.raises(ValueError, match=r"column 'payload', row 1: .*U\+FDD0"):
        _mask(["fine", "odd \ufdd0 mark"], preserve_length=True)


def test_json_payloads_have_their_string_values_masked_and_stay_json():
    texts = [
        # Masking the JSON text would leave `\[redacted]` (an invalid escape) here.
        json.dumps({"prompt": "line\njane@example.com", "n": 3, "more": ["call 415-555-0132"]}),
        # An escaped "@" hides the address from the JSON text, not from its value.
        '{"prompt": "write to jo\\u0040example.org"}',
        json.dumps({"prompt": "nothing personal", "width": 640}, indent=1),
        "plain text to jane@example.com",
        "[not json at all",
    ]
    masked, counts = _mask(texts, structured=True)
    out = masked["payload"].to_list()
    assert json.loads(out[0]) == {"prompt": f"line\n{MASK}", "n": 3, "more": [f"call {MASK}"]}
    assert json.loads(out[1]) == {"prompt": f"write to {MASK}"}
    assert out[2] == texts[2]  # nothing masked: the item's text, byte for byte
    assert out[3] == f"plain text to {MASK}"
    assert out[4] == texts[4]
    assert (counts.rows, counts.rows_masked, counts.email, counts.phone) == (5, 3, 3, 1)


def test_json_payloads_have_their_keys_and_integers_masked_and_ordinary_numbers_kept():
    texts = [
        # A phone number stored as a JSON number, beside a rating, an id and coordinates.
        '{"customer_phone": 4155550132, "rating": 4, "id": 12345678, '
        '"at": [37.7749295, -122.4194155]}',
        # Addresses as object keys, which collide with each other and a key once masked.
        '{"notes": {"jane.doe@example.com": "asked", "bo@example.org": "paid", "[redacted]": 1}}',
        '{"rating": 4, "id": 123456789, "when": 20261122, "flag": true, "score": 4155550132.5}',
    ]
    masked, counts = _mask(texts, structured=True)
    out = masked["payload"].to_list()
    assert json.loads(out[0]) == {
        "customer_phone": MASK,
        "rating": 4,
        "id": 12345678,
        "at": [37.7749295, -122.4194155],
    }
    assert json.loads(out[1]) == {"notes": {MASK + " (2)": "asked", MASK + " (3)": "paid", MASK: 1}}
    assert out[2] == texts[2]
    assert (counts.rows_masked, counts.email, counts.phone) == (2, 1, 1)
    again, _ = _mask(texts, structured=True)
    assert again["payload"].to_list() == out


def _judgments(rows):
    return pl.DataFrame(
        rows, schema=["task_id", "annotator_id", "label", "submitted_at"], orient="row"
    ).with_columns(
        pl.col("submitted_at").str.to_datetime(time_zone="UTC"),
        project=pl.lit("p"),
    )


def test_snapshot_above_the_masked_share_ceiling_fails_clearly():
    tasks = pl.DataFrame(
        {
            "task_id": ["t1", "t2", "t3", "t4"],
            "payload": ["write jane@example.com", "call +44 20 7946 0958", "plain", "plain too"],
            "payload_hash": ["h1", "h2", "h3", "h4"],
            "created_at": [None] * 4,
        },
        schema_overrides={"created_at": pl.Datetime("us", "UTC")},
    )
    rows = [
        (t, f"a{i}", "x", "2026-11-02T10:00:00") for t in ("t1", "t2", "t3", "t4") for i in (1, 2)
    ]
    options = dict(method="majority_vote", pseudonym_key=b"k", phone_region="US")
    snapshot = build_snapshot(_judgments(rows), tasks, max_masked_share=0.5, **options)
    assert snapshot.stats["masked_share"] == 0.5
    assert snapshot.stats["masked"] == {"email": 1, "phone": 1, "custom": 0}
    with pytest.raises(MaskedShareError) as raised:
        build_snapshot(_judgments(rows), tasks, max_masked_share=0.25, **options)
    message = str(raised.value)
    for part in ("'p'", "50.0%", "25.0%", "ANNOTATION_PIPELINES_MAX_MASKED_SHARE"):
        assert part in message


def test_snapshot_masks_json_payloads_inside_their_values_and_plain_text_payloads_as_text():
    # Label Studio and SageMaker payloads are the task's data as JSON; a CSV or Postgres payload
    # is whatever text the column holds, JSON or not.
    payloads = [
        json.dumps({"text": "Thanks!\njane.doe@example.com"}),
        '{"text": "write to jane\\u0040example.com"}',
        '{ "text":  "nothing personal",\n "n": 3 }',
        "plain text from a CSV: call 415-555-0132",
        "[draft] not JSON, mail bo@example.org",
        "[1, 2, 3] then some words",
    ]
    ids = [f"t{i}" for i in range(len(payloads))]
    tasks = pl.DataFrame(
        {
            "task_id": ids,
            "payload": payloads,
            "payload_hash": [f"h{i}" for i in range(len(payloads))],
            "created_at": [None] * len(payloads),
        },
        schema_overrides={"created_at": pl.Datetime("us", "UTC")},
    )
    rows = [(t, f"a{i}", "x", "2026-11-02T10:00:00") for t in ids for i in (1, 2)]
    snapshot = build_snapshot(
        _judgments(rows),
        tasks,
        method="majority_vote",
        pseudonym_key=b"k",
        phone_region="US",
        max_masked_share=1.0,
    )
    out = dict(snapshot.rows.select("task_id", "payload").iter_rows())
    assert json.loads(out["t0"]) == {"text": f"Thanks!\n{MASK}"}
    assert json.loads(out["t1"]) == {"text": f"write to {MASK}"}
    assert out["t2"] == payloads[2]  # nothing masked: the item's text, byte for byte
    assert out["t3"] == f"plain text from a CSV: call {MASK}"
    assert out["t4"] == f"[draft] not JSON, mail {MASK}"
    assert out["t5"] == payloads[5]
    assert snapshot.stats["masked"] == {"email": 3, "phone": 1, "custom": 0}
    assert snapshot.stats["masked_rows"] == 4


def test_demo_sized_snapshot_keeps_the_items_own_text(tmp_path):
    """Synthetic payloads carry no e-mail or phone number, so nothing may be masked."""
    generate_workload(tmp_path, judgments=20_000, start=date(2026, 11, 20), days=3, seed=5)
    judgments = pl.read_parquet(tmp_path / "judgments" / "**" / "*.parquet")
    tasks = pl.read_parquet(tmp_path / "tasks" / "**" / "*.parquet")
    project = "sentiment"
    snapshot = build_snapshot(
        judgments.filter(pl.col("project") == project),
        tasks.filter(pl.col("project") == project),
        min_confidence=0.0,
        pseudonym_key=b"demo",
        phone_region="US",
        max_masked_share=0.0,
    )
    assert snapshot.rows.height > 1_000
    assert snapshot.stats["masked_share"] == 0.0
    originals = tasks.select("task_id", pl.col("payload").alias("original"))
    compared = snapshot.rows.join(originals, on="task_id")
    assert compared.height == snapshot.rows.height
    assert (compared["payload"] == compared["original"]).all()
