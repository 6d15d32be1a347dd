"""Email addresses and phone numbers: one normal form for storing, comparing and hashing (mauto.addresses)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mauto.addresses import (
    ascii_email,
    check_value,
    needs_smtputf8,
    normalise_email,
    normalise_phone,
    parse_email,
    shown,
)
from mauto.config import load_project
from mauto.errors import MautoError
from mauto.store.sqlite import address_hash, normalise_address

# --- email --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("written", ["ann@example.com", "Ann@Example.COM", "  ann@EXAMPLE.com\t"])
def test_an_email_has_one_form(written: str) -> None:
    assert normalise_email(written) == "ann@example.com"


def test_an_idn_domain_is_kept_in_unicode_and_sent_in_ascii() -> None:
    for written in ("ann@exämple.com", "Ann@EXÄMPLE.COM", "ann@xn--exmple-cua.com", "ANN@XN--EXMPLE-CUA.COM"):
        assert normalise_email(written) == "ann@exämple.com", written
        assert ascii_email(written) == "ann@xn--exmple-cua.com", written
        assert not needs_smtputf8(written)


def test_a_local_part_that_is_not_ascii_needs_smtputf8() -> None:
    address = parse_email("José@Exämple.com")
    assert (address.address, address.smtp, address.smtputf8) == ("josé@exämple.com", "josé@xn--exmple-cua.com", True)
    assert ascii_email("José@Exämple.com") is None
    # NFC: an é written as e + combining accent is the same address
    assert normalise_email("Jose\u0301@example.com") == "jos\u00e9@example.com"


@pytest.mark.parametrize(("written", "message"), [
    ("nobody", "`nobody` is not an email address"),
    ("a@x.com, b@y.com", ("`a@x.com, b@y.com` is not an email address: it holds more than one; give one address "
                         "per contact")),
    ("a@x.com b@y.com", ("`a@x.com b@y.com` is not an email address: it holds more than one; give one address per "
                        "contact")),
    ("a@x.com;b@y.com", ("`a@x.com;b@y.com` is not an email address: it holds more than one; give one address per "
                        "contact")),
    ("Jo <a@x.com>", ("`Jo <a@x.com>` is not an email address: a display name and angle brackets around the email "
                     "address are not permitted here")),
    ("a@x.com\r\nBcc: b@y.com", ("`a@x.com\\r\\nBcc: b@y.com` is not an email address: it contains a control "
                                "character (U+000D)")),
    ("a@x.com\r\n", "`a@x.com\\r\\n` is not an email address: it contains a control character (U+000D)"),
    ("a\u2028@x.com", "`a\\u2028@x.com` is not an email address: it contains a line separator (U+2028)"),
    ("a\x00@x.com", "`a\\x00@x.com` is not an email address: it contains a NUL character (U+0000)"),
    ("a\x0b@x.com", "`a\\x0b@x.com` is not an email address: it contains a control character (U+000B)"),
    ("a\x85@x.com", "`a\\x85@x.com` is not an email address: it contains a control character (U+0085)"),
    ("a@localhost", ("`a@localhost` is not an email address: the part after the @-sign is not valid. It should "
                    "have a period")),
    ('"a b"@x.com', '`"a b"@x.com` is not an email address: quoting the part before the @-sign is not allowed here'),
    (42, "`42` is not an email address"),
])
def test_what_is_not_one_email_address_is_refused_with_the_reason(written: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        normalise_email(written)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_the_short_path_for_plain_addresses_agrees_with_email_validator() -> None:
    import random
    import unicodedata

    from email_validator import EmailNotValidError, validate_email

    def reference(text: str) -> str | None:
        try:
            checked = validate_email(text.strip(), check_deliverability=False, allow_smtputf8=True)
        except EmailNotValidError:
            return None
        return unicodedata.normalize("NFC", checked.local_part.lower()) + "@" + checked.domain.lower()

    def ours(text: str) -> str | None:
        try:
            return normalise_email(text)
        except ValueError:
            return None

    samples = ["a@b.co", "a@-b.com", "a@b-.com", "a@b..com", "a.@b.com", ".a@b.com", "a@b.c", "a@b.123", "a@1.2.3.4",
               "a@xn--exmple-cua.com", "a@xn--zz.com", "a@b.local", "a@b.test", "a@b.onion", "a@_b.com", "a@b.XN--P1AI",
               "a@" + "b" * 63 + ".com", "a@" + "b" * 64 + ".com", "a" * 64 + "@b.com", "a" * 65 + "@b.com",
               "a@" + ".".join(["b" * 60] * 5) + ".com", "a@com", "a@b.0", "A@B.CO.UK"]
    rng = random.Random(7)
    for _ in range(3000):
        local = "".join(rng.choice("aZ09.-_+!#$%&'*/=?^`{|}~") for _ in range(rng.randint(1, 8)))
        domain = ".".join("".join(rng.choice("abz09-") for _ in range(rng.randint(1, 6)))
                          for _ in range(rng.randint(1, 4)))
        samples.append(f"{local}@{domain}")
    assert [(text, ours(text)) for text in samples] == [(text, reference(text)) for text in samples]


# --- phone --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("written", ["+33612345678", "+33 6 12 34 56 78", "+33 (0)6 12 34 56 78", "+33-6-12-34-56-78",
                                     "0033612345678", "00 33 6 12 34 56 78", " +33.6.12.34.56.78 "])
def test_an_international_number_has_one_form_without_a_region(written: str) -> None:
    assert normalise_phone(written) == "+33612345678"


@pytest.mark.parametrize(("written", "region"), [("06 12 34 56 78", "FR"), ("0612345678", "FR"),
                                                 ("0033612345678", "FR"), ("+33 6 12 34 56 78", "US"),
                                                 ("0033612345678", "US"), ("011 33 6 12 34 56 78", "US")])
def test_a_national_number_is_read_in_the_region(written: str, region: str) -> None:
    assert normalise_phone(written, region) == "+33612345678"


@pytest.mark.parametrize(("written", "region", "message"), [
    ("06 12 34 56 78", None, ("`06 12 34 56 78` is a national number: write it in international form "
                             "(+33612345678), or set `phone_region` in mauto.yaml (e.g. `phone_region: FR`) to read "
                             "national numbers")),
    ("+33 6", None, "`+33 6` is not a valid phone number: too short"),
    ("+33 6 12 34 56 789", None, "`+33 6 12 34 56 789` is not a valid phone number: too long"),
    ("+15555550123", None, "`+15555550123` is not a valid phone number: no such number in its country (+1)"),
    ("+999 1234 5678", None, "`+999 1234 5678` is not a valid phone number: unknown country code"),
    ("+1 800 FLOWERS", None, "`+1 800 FLOWERS` is not a phone number: write only digits, spaces and + - . ( ) /"),
    ("+33 6 12 34 56 78 ext. 9", None, ("`+33 6 12 34 56 78 ext. 9` is not a phone number: write only digits, "
                                       "spaces and + - . ( ) /")),
    ("+33612345678\n", None, "`+33612345678\\n` is not a phone number: it contains a control character (U+000A)"),
    ("+33612345678\x00", None, "`+33612345678\\x00` is not a phone number: it contains a NUL character (U+0000)"),
    ("  ", "FR", "an empty text is not a phone number"),
    ("1" * 300, "FR", f"`{'1' * 80}…` is not a valid phone number: too long"),
    (33612345678, None, ("`33612345678` is a number, not text: write the phone number as text (in quotes in JSON "
                        "or YAML), in international form such as +33612345678")),
])
def test_an_invalid_number_is_refused_with_the_reason(written: object, region: str | None, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        normalise_phone(written, region)  # type: ignore[arg-type]
    assert str(caught.value) == message


# --- the suppression list's form ----------------------------------------------------------------------------


def test_every_spelling_of_a_number_has_one_hash() -> None:
    expected = address_hash("+33612345678", "sms")
    for written in ("+33 6 12 34 56 78", "+33612345678", "0033612345678", " +33 (0)6 12 34 56 78 "):
        assert address_hash(written, "sms") == expected, written
        assert address_hash(written, "sms", "FR") == expected, written
    assert address_hash("06 12 34 56 78", "sms", "FR") == expected
    assert address_hash("0612345678", "sms", "FR") == expected
    assert normalise_address("06 12 34 56 78", "sms", "FR") == "+33612345678"


def test_every_spelling_of_an_email_has_one_hash() -> None:
    assert address_hash("Ann@Example.COM", "email") == address_hash("ann@example.com", "email")
    idn = {address_hash(written, "email") for written in ("ann@exämple.com", "Ann@EXÄMPLE.com",
                                                          "ann@xn--exmple-cua.com", " ANN@XN--EXMPLE-CUA.COM ")}
    assert idn == {hashlib.sha256("ann@exämple.com".encode()).hexdigest()}


def test_what_cannot_be_parsed_keeps_the_old_form() -> None:
    # values an older version stored: hashed as before, so the suppression list still finds them
    assert normalise_address(" Not An Address ", "email") == "not an address"
    assert normalise_address("06 12 34 56 78", "sms") == "0612345678"  # national, and no region to read it in
    assert normalise_address("+33 6", "sms") == "+336"  # parsed, not valid: E.164 all the same
    assert address_hash("call me", "sms") == hashlib.sha256(b"").hexdigest()


# --- text ---------------------------------------------------------------------------------------------------


def test_values_are_shown_without_their_control_characters() -> None:
    assert shown("a\nb\x00c\u2028d\ud800é") == "a\\nb\\x00c\\u2028d\\ud800é"
    assert shown("x" * 100) == "x" * 80 + "…"
    assert shown(10 ** 5000).startswith("an integer of ")


def test_check_value_looks_inside_lists_and_objects() -> None:
    assert check_value({"a": ["b", {"c": "d\te"}]}) == {"a": ["b", {"c": "d\te"}]}
    with pytest.raises(ValueError, match=r"^contains a NUL character \(U\+0000\)$"):
        check_value({"a": [1, {"c": "d\x00"}]})
    with pytest.raises(ValueError, match=r"^contains a lone surrogate \(U\+DC00\), which is not text$"):
        check_value({"\udc00": 1})
    nested: list = []
    for _ in range(100_000):  # deeper than the recursion limit
        nested = [nested]
    assert check_value(nested) is nested


# --- the project's region -----------------------------------------------------------------------------------


def test_the_phone_region_comes_from_the_project(tmp_path: Path) -> None:
    path = tmp_path / "mauto.yaml"
    path.write_text("timezone: Europe/Paris\n")
    assert load_project(path, tmp_path).phone_region is None
    path.write_text("timezone: Europe/Paris\nphone_region: fr\n")
    assert load_project(path, tmp_path).phone_region == "FR"
    path.write_text("timezone: Europe/Paris\nphone_region: France\n")
    with pytest.raises(MautoError) as caught:
        load_project(path, tmp_path).phone_region  # noqa: B018
    assert str(caught.value) == ("mauto.yaml:2:15: `phone_region`: `France` is not a phone region; write a two-letter "
                                 "country code such as FR, US or GB")
