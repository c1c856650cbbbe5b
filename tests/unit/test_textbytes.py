"""Surrogate escapes written back as their bytes, and shown as the bytes in quotes."""

from pyxinetd.textbytes import as_written, ascii_lower, quoted


def test_as_written_gives_back_the_bytes_a_file_was_decoded_from() -> None:
    raw = b"caf\xe9 \xc3\xa9t\xc3\xa9 \xff"
    assert as_written(raw.decode("utf-8", "surrogateescape")) == raw


def test_quoted_shows_a_byte_that_is_not_utf8_as_hex() -> None:
    assert quoted(b"bogus\xe9".decode("utf-8", "surrogateescape")) == r"'bogus\xe9'"


def test_quoted_keeps_utf8_text_and_repr_escapes() -> None:
    assert quoted("caf\u00e9\ufeff\t") == r"'café\ufeff\t'"


def test_quoted_leaves_a_written_backslash_u_sequence_alone() -> None:
    # `\udce9` typed into the file is six characters, not an escaped byte.
    assert quoted("a\\udce9") == r"'a\\udce9'"
    assert quoted("a\\\udce9") == r"'a\\\xe9'"


def test_ascii_lower_folds_a_to_z_only() -> None:
    # strcasecmp in the C locale: `É` stays, `İ` keeps its length, a surrogate escape
    # (a byte that is not UTF-8) is kept.
    assert ascii_lower("HÉst.İ\udce9ABC") == "hÉst.İ\udce9abc"
