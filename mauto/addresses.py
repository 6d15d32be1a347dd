"""Email addresses and phone numbers in one normal form, and the characters no stored value may hold.

One address must have one spelling: `Ann@Example.COM` and `ann@example.com`, `+33 6 12 34 56 78` and
`06 12 34 56 78` (in France) are the same person to the suppression list, to `--key email` and to the sender.
Email addresses are checked with email-validator, phone numbers with phonenumbers (Google's libphonenumber).
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from mauto.errors import printable

# Refused in every value: NUL (C strings, SQLite's text functions and many tools stop at it) and lone
# surrogates (not text: encoding one to UTF-8, as SQLite does, fails).
REFUSED_CHARACTERS = re.compile("[\x00\ud800-\udfff]")
# Refused besides in ids and addresses, which end up in headers, log lines and SQL keys: C0 controls but tab,
# DEL, C1 controls, and the Unicode line and paragraph separators (a line break to many readers).
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
SHOWN_LENGTH = 80  # characters of a value quoted in a message

# A phone number is digits (of any script: phonenumbers reads them) and the usual separators; letters (a
# vanity number, "ext. 12") are refused rather than guessed.
_PHONE_SEPARATORS = frozenset(" +-.()/\u00a0\u2009\u202f")

PHONE_PARSE_REASONS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "not a phone number",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
    phonenumbers.NumberParseException.TOO_LONG: "too long",
}
_POSSIBLE_REASONS = {
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    phonenumbers.ValidationResult.TOO_SHORT: "too short",
    phonenumbers.ValidationResult.TOO_LONG: "too long",
    phonenumbers.ValidationResult.INVALID_LENGTH: "the wrong length",
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "too short (a local number without its area code)",
}


# --- text ------------------------------------------------------------------------------------------------

def shown(value: Any, limit: int = SHOWN_LENGTH) -> str:
    """A value as a message quotes it: control characters and surrogates escaped (`\\n`, `\\x00`, `\\ud800`),
    so that a value cannot break or forge a line of output; cut at `limit` characters."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = str(value)
        except ValueError:  # an integer of more than 4,300 digits, which Python will not write out
            return f"an integer of {len(format(value, 'x')) * 4} bits"
    if len(text) > limit:
        text = text[:limit] + "…"
    return printable(text, keep_tab=True)


def _character(code: int) -> str:
    if code == 0:
        return "a NUL character (U+0000)"
    if 0xD800 <= code <= 0xDFFF:
        return f"a lone surrogate (U+{code:04X}), which is not text"
    if code in (0x2028, 0x2029):
        return f"a line separator (U+{code:04X})"
    return f"a control character (U+{code:04X})"


KEY_LENGTH = 500  # characters of an id or a name the store keys on: PostgreSQL's index takes 2,704 bytes a row


def text_problem(text: str, strict: bool = False) -> str | None:
    """Why `text` cannot be stored, or None: it holds a NUL or a lone surrogate, or (`strict`, for ids, names and
    addresses) any other control character but tab, or a line separator, or more than KEY_LENGTH characters
    (the same limit on both stores: PostgreSQL's indexes refuse longer keys)."""
    found = (CONTROL_CHARACTERS if strict else REFUSED_CHARACTERS).search(text)
    if found is not None:
        return "contains " + _character(ord(found.group()))
    if strict and len(text) > KEY_LENGTH:
        return f"is {len(text):,} characters long; at most {KEY_LENGTH}"
    return None


def check_text(text: str, strict: bool = False) -> str:
    """`text` itself, or ValueError saying which character it may not hold (see `text_problem`)."""
    problem = text_problem(text, strict)
    if problem is not None:
        raise ValueError(problem)
    return text


def check_value(value: Any) -> Any:
    """`value` itself when no text in it (strings, nested in lists and objects, keys too) holds a NUL or a
    lone surrogate; ValueError otherwise. Iterative: a deeply nested value cannot exhaust the stack."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            check_text(item)
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
    return value


# --- email -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EmailAddress:
    """A checked email address.

    `address` is the normal form mauto stores and compares: the local part lower-cased, the domain
    lower-cased, both in Unicode NFC (an IDN domain written in punycode, `xn--…`, is decoded). Mail goes to
    `smtp`: the same local part at the domain's ASCII (IDNA) form; a local part that is not ASCII needs a
    server that offers SMTPUTF8 (RFC 6531)."""

    local: str
    domain: str  # Unicode, lower case
    ascii_domain: str  # IDNA: what DNS and an SMTP server without SMTPUTF8 take

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def smtp(self) -> str:
        return f"{self.local}@{self.ascii_domain}"

    @property
    def smtputf8(self) -> bool:
        """Whether sending to it needs SMTPUTF8 (its local part is not ASCII)."""
        return not self.local.isascii()


def parse_email(text: str) -> EmailAddress:
    """An email address checked and in its parts; ValueError with the reason when it is not one address.

    Refused: two addresses in one field (`a@x.com, b@y.com`), a display name (`Jo <a@x.com>`), a control
    character or line break anywhere, quoted local parts, IP literals, domains without a dot or reserved
    (`.test`, `localhost`). Surrounding spaces are trimmed. The domain is not looked up (no DNS)."""
    if not isinstance(text, str):
        raise ValueError(f"`{shown(text)}` is not an email address")
    return _parse_email(text)


# An ASCII dot-atom address (RFC 5322) with an ASCII domain of dot-separated labels: most of any list. Such
# an address is valid when its domain is, so only the domain goes through email-validator, once per domain;
# anything else, and any domain it refuses, goes the whole way (which words the error).
_PLAIN_EMAIL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                          r"@((?:[A-Za-z0-9-]+\.)+[A-Za-z0-9-]+)")


@lru_cache(maxsize=4096)
def _email_domain(domain: str) -> tuple[str, str] | None:
    """(the domain in Unicode, in ASCII) as email-validator checks it, or None when it refuses it."""
    try:
        checked = validate_email("x@" + domain, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError:
        return None
    return checked.domain.lower(), checked.ascii_domain.lower()


# The caches keep the few addresses met again and again (the sender, a test's contacts); a tick over 100,000
# contacts meets each address too far apart for any cache to help, so they stay small (8,192 entries each
# held 7 MB of a 100,000-contact tick's peak: docs/performance.md, "Daemon").
_CACHED = 1024


@lru_cache(maxsize=_CACHED)
def _parse_email(text: str) -> EmailAddress:
    candidate = text.strip(" \t")
    plain = _PLAIN_EMAIL.fullmatch(candidate)
    if plain is not None and len(candidate) <= 254 and plain.start(1) <= 65:
        domain = _email_domain(plain.group(1))
        if domain is not None:
            return EmailAddress(candidate[:plain.start(1) - 1].lower(), *domain)
    problem = text_problem(text, strict=True)
    if problem is not None:
        raise ValueError(f"`{shown(text)}` is not an email address: it {problem}")
    candidate = text.strip()
    if "@" not in candidate.strip("@"):
        raise ValueError(f"`{shown(text)}` is not an email address")
    if candidate.count("@") > 1 and re.search(r"[,;\s]", candidate):
        raise ValueError(f"`{shown(text)}` is not an email address: it holds more than one; give one address "
                         "per contact")
    try:
        checked = validate_email(candidate, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as error:
        reason = str(error).rstrip(".")
        raise ValueError(f"`{shown(text)}` is not an email address: {reason[:1].lower()}{reason[1:]}") from None
    local = unicodedata.normalize("NFC", checked.local_part.lower())
    return EmailAddress(local, checked.domain.lower(), checked.ascii_domain.lower())


def normalise_email(text: str) -> str:
    """The normal form of an email address (see `EmailAddress.address`); ValueError with the reason."""
    return parse_email(text).address


def ascii_email(text: str) -> str | None:
    """The address all in ASCII (the domain in IDNA form), or None when its local part is not ASCII and can
    only go to a server that offers SMTPUTF8; ValueError when it is not an email address."""
    address = parse_email(text)
    return None if address.smtputf8 else address.smtp


def needs_smtputf8(text: str) -> bool:
    """Whether mail to this address needs SMTPUTF8; ValueError when it is not an email address."""
    return parse_email(text).smtputf8


# --- phone -----------------------------------------------------------------------------------------------

def check_region(region: str | None) -> str | None:
    """A phone region (ISO 3166 two letters phonenumbers knows, such as FR), upper-cased; ValueError if not."""
    if region is None:
        return None
    if not isinstance(region, str) or region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"`{shown(region)}` is not a phone region; write a two-letter country code such as FR, "
                         "US or GB")
    return region.upper()


def _international(text: str) -> str | None:
    """`text` with a leading international prefix `00` written as `+`, or None when it has none."""
    stripped = text.lstrip(" (")
    return "+" + stripped[2:] if stripped.startswith("00") else None


def _parse_phone(text: str, region: str | None) -> phonenumbers.PhoneNumber:
    """The number phonenumbers reads in `text` (valid or not), or NumberParseException. A leading 00 is the
    international prefix wherever the region does not read it otherwise (most of the world, or no region)."""
    if region is not None:
        try:
            number = phonenumbers.parse(text, region)
            if phonenumbers.is_valid_number(number):
                return number
        except phonenumbers.NumberParseException:
            international = _international(text)
            if international is None:
                raise
            return phonenumbers.parse(international, None)
        international = _international(text)
        if international is not None:
            try:
                again = phonenumbers.parse(international, None)
                if phonenumbers.is_valid_number(again):
                    return again
            except phonenumbers.NumberParseException:
                pass
        return number
    international = _international(text)
    return phonenumbers.parse(international if international is not None else text, None)


def normalise_phone(text: str, region: str | None = None) -> str:
    """A phone number in E.164 form (`+33612345678`); ValueError with the reason when it is not a valid one.

    Takes international numbers however spaced (`+33 6 12 34 56 78`, `+33 (0)6 12 34 56 78`), with the
    international prefix 00 (`0033612345678`), and, with `region` (the project's `phone_region`), national
    ones (`06 12 34 56 78` in FR). Without a region a national number is refused, saying to set it."""
    if not isinstance(text, str):
        raise ValueError(f"`{shown(text)}` is a number, not text: write the phone number as text (in quotes in "
                         "JSON or YAML), in international form such as +33612345678")
    return _normalise_phone(text, region)


@lru_cache(maxsize=_CACHED)
def _normalise_phone(text: str, region: str | None) -> str:
    problem = text_problem(text, strict=True)
    if problem is not None:
        raise ValueError(f"`{shown(text)}` is not a phone number: it {problem}")
    candidate = text.strip()
    if not candidate:
        raise ValueError("an empty text is not a phone number")
    if any(not (character.isdecimal() or character in _PHONE_SEPARATORS) for character in candidate):
        raise ValueError(f"`{shown(text)}` is not a phone number: write only digits, spaces and + - . ( ) /")
    if region is None and not candidate.startswith("+") and _international(candidate) is None:
        raise ValueError(f"`{shown(text)}` is a national number: write it in international form (+33612345678), "
                         "or set `phone_region` in mauto.yaml (e.g. `phone_region: FR`) to read national numbers")
    try:
        number = _parse_phone(candidate, region)
    except phonenumbers.NumberParseException as error:
        reason = PHONE_PARSE_REASONS.get(error.error_type, "not a phone number")
        raise ValueError(f"`{shown(text)}` is not a valid phone number: {reason}") from None
    if not phonenumbers.is_valid_number(number):
        possible = phonenumbers.is_possible_number_with_reason(number)
        reason = _POSSIBLE_REASONS.get(possible, f"no such number in its country (+{number.country_code})")
        raise ValueError(f"`{shown(text)}` is not a valid phone number: {reason}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# --- comparison ------------------------------------------------------------------------------------------

def _written_form(address: str, channel: str) -> str:
    """The normalisation of mauto before 0.2, for what cannot be parsed at all: an email trimmed and
    lower-cased; a phone number as its digits, with a leading + when it had one."""
    address = address.strip()
    if channel == "sms":
        return ("+" if address.startswith("+") else "") + "".join(ch for ch in address if ch.isdigit())
    return address.lower()


def comparison_form(address: str, channel: str, region: str | None = None) -> str:
    """The one form an address is compared and hashed in (the suppression list, `--key email`), whatever
    way it was written, also for values stored by older versions that were not normalised on the way in.

    Email: `normalise_email`. Phone: `normalise_phone`; a number phonenumbers reads but finds invalid is
    still put in E.164 form. Only what cannot be parsed at all keeps the old form (`_written_form`)."""
    if not isinstance(address, str):  # a stored value of another type, written by an older version
        address = str(address)
    return _comparison_form(address, channel, region)


@lru_cache(maxsize=_CACHED)
def _comparison_form(address: str, channel: str, region: str | None) -> str:
    if channel == "sms":
        try:
            return normalise_phone(address, region)
        except ValueError:
            pass
        try:
            number = _parse_phone(address.strip(), region)
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        except Exception:  # noqa: BLE001 - whatever the parser makes of odd stored data, hashing must go on
            return _written_form(address, channel)
    try:
        return normalise_email(address)
    except ValueError:
        return _written_form(address, channel)
