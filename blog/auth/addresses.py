"""Email addresses: only a plain ``local@domain``, in one canonical spelling.

An address is the key of an account and, once email mails it, a recipient. A string that a mail
parser reads as *another* recipient, or as several, is therefore refused, not repaired:
``Ada <ada@example.com>`` (a display name), ``ada(comment)@example.com`` (a comment),
``"a b"@example.com`` (a quoted local part), ``a,b@example.com`` (two recipients for
``email.utils.getaddresses``), ``ada@[127.0.0.1]`` or ``ada@127.0.0.1`` (IP literals), and the
old relay syntaxes ``a%b@relay`` and ``b!a@relay`` that some mail servers still route to
someone else.

What is accepted: a dot-atom local part (RFC 5322 ``atext``, minus ``%`` and ``!``, plus
letters, marks and digits of any script, RFC 6532) and a domain name of at least two labels of
letters, digits and inner hyphens (of any script: internationalised domains), whose last label
is not all digits.

Canonical spelling, so that two spellings of one address can never make two accounts (and a
login with either spelling finds the one account):

- Unicode NFC, so composed and decomposed accents are the same text;
- the domain lower-cased, and each ``xn--`` label (the ASCII form of an internationalised
  label) decoded to the Unicode label it stands for: ``ada@XN--BCHER-KVA.de`` is
  ``ada@bücher.de``;
- the local part lower-cased too. RFC 5321 lets a mail server treat ``Ada`` and ``ada`` as two
  mailboxes, but no major provider does, and the product always lower-cased it: two accounts
  differing only in case would far more likely be one person's typo than two people (and
  existing accounts are stored that way). Nothing else is folded: dots and ``+tags`` mean
  different mailboxes at most providers, which is their business, not ours.
"""

from __future__ import annotations

import unicodedata
from email.utils import getaddresses, parseaddr

MAX_LENGTH = 254
"""RFC 5321's limit on a path, less its angle brackets. (Its 64 octets for the local part is a
minimum servers must take, not a maximum they must refuse: not enforced.)"""
MAX_LABEL_LENGTH = 63
MAX_DOMAIN_LENGTH = 253

_ASCII_ATEXT = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789#$&'*+-/=?^_`{|}~"
)
"""RFC 5322 ``atext`` without ``%`` and ``!`` (relay routing that some servers still honour)."""


class NotPlainAddress(ValueError):
    """The text is not a plain ``local@domain`` address; the message says why."""


def _word_char(char: str) -> bool:
    """A letter, mark or digit of any script (non-ASCII text RFC 6532 allows in addresses)."""
    return not char.isascii() and unicodedata.category(char)[0] in "LMN"


def _local_part(local: str) -> str:
    if not local:
        raise NotPlainAddress("nothing before the @")
    for atom in local.split("."):
        if not atom:
            raise NotPlainAddress("a dot at the start or end of the local part, or two in a row")
        if not all(char in _ASCII_ATEXT or _word_char(char) for char in atom):
            raise NotPlainAddress(
                "the local part holds a character a plain address cannot (quotes, spaces, "
                "brackets, commas, comments, % or !)"
            )
    return unicodedata.normalize("NFC", local.lower())


def _label(label: str) -> str:
    """One domain label, lower-cased, as Unicode (an ``xn--`` label decoded)."""
    if label.startswith("xn--"):
        try:
            decoded = label[4:].encode("ascii").decode("punycode")
        except (UnicodeError, ValueError):
            raise NotPlainAddress(f"{label!r} is not a valid internationalised label") from None
        if decoded.isascii() or decoded != unicodedata.normalize("NFC", decoded.lower()):
            raise NotPlainAddress(f"{label!r} is not a canonical internationalised label")
        label = decoded
    if not 1 <= len(label) <= MAX_LABEL_LENGTH:
        raise NotPlainAddress("a domain label is empty or longer than 63 characters")
    if label[0] == "-" or label[-1] == "-":
        raise NotPlainAddress("a domain label starts or ends with a hyphen")
    if not all(
        char == "-" or (char.isascii() and char.isalnum()) or _word_char(char) for char in label
    ):
        raise NotPlainAddress("the domain holds a character a domain name cannot")
    if not label.isascii():
        try:
            encoded = "xn--" + label.encode("punycode").decode("ascii")
        except UnicodeError:
            raise NotPlainAddress("the domain cannot be written in ASCII") from None
        if len(encoded) > MAX_LABEL_LENGTH:
            raise NotPlainAddress("a domain label is longer than 63 characters in ASCII")
    return label


def _domain(domain: str) -> str:
    labels = unicodedata.normalize("NFC", domain.lower()).split(".")
    if len(labels) < 2:
        raise NotPlainAddress("the domain needs at least two labels (example.com)")
    canonical = [_label(label) for label in labels]
    if canonical[-1].isdigit():
        raise NotPlainAddress("an IP address is not a mail domain here")
    result = ".".join(canonical)
    if len(result) > MAX_DOMAIN_LENGTH:
        raise NotPlainAddress(f"the domain is longer than {MAX_DOMAIN_LENGTH} characters")
    return result


def canonical_address(text: str) -> str:
    """``text`` (surrounding whitespace aside) as its canonical plain address, or
    ``NotPlainAddress``."""
    address = unicodedata.normalize("NFC", text.strip())
    if address.count("@") != 1:
        raise NotPlainAddress("a plain address has exactly one @")
    local, _, domain = address.partition("@")
    address = f"{_local_part(local)}@{_domain(domain)}"
    if len(address) > MAX_LENGTH:
        raise NotPlainAddress(f"longer than {MAX_LENGTH} characters")
    # The grammar above admits only plain addresses; make sure the parsers that will read it
    # (email.utils for headers, smtplib for the envelope) read one recipient, this very one.
    if parseaddr(address) != ("", address) or getaddresses([address]) != [("", address)]:
        raise NotPlainAddress("a mail parser reads it as another address")
    return address
