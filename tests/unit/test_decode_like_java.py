"""verify decodes a record value as the job's Kafka source does (Java's new String(bytes, UTF_8)):
a dead letter's payload is the text the job saw. Python's decoder cuts an encoded surrogate into
three U+FFFD where Java's gives one; a fuzz run (seed 1699212844) had verify expect another NOT_JSON
payload than the job wrote. The counts below were measured with Java 17's decoder."""

import pytest

from streamrec.model.events import decode_like_java

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("hex_bytes, replacements", [
    ("eda080", 1), ("edbfbf", 1), ("eda0", 1), ("edbf", 1), ("eda041", 1), ("eda08041", 1),
    ("41eda080eda080", 2), ("eda0c0", 2), ("f0eda080", 2), ("ed", 1), ("ed9f80", 0),
    ("f09f98", 1), ("e080", 2), ("c0af", 2), ("f4908080", 4), ("f8888080", 4), ("f0808080", 4),
    ("e0a0", 1), ("ff", 1), ("fe80", 2), ("e1", 1), ("e180", 1), ("80bf", 2),
])
def test_malformed_utf8_is_replaced_as_java_replaces_it(hex_bytes, replacements):
    assert decode_like_java(bytes.fromhex(hex_bytes)).count("\ufffd") == replacements


def test_valid_text_is_unchanged_and_the_rest_of_a_value_survives():
    text = "ü 漢 🎉 \ud7ff"
    assert decode_like_java(text.encode()) == text
    assert decode_like_java(b'{"a": "x\xed\xa0\x80y"}') == '{"a": "x\ufffdy"}'
