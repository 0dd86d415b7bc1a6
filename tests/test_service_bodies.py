"""The service's strict JSON reader: fast (orjson) but exactly as strict as the standard library
with a duplicate-key check, on any JSON hypothesis can write (escapes, blanks, nesting, repeats)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from openmart.errors import ValidationError
from openmart.service.rest import bodies

keys = st.text(alphabet=st.sampled_from(list('ab"\\: \n')), min_size=1, max_size=3)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=False), keys)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3))


def written(value: object, spaced: bool, repeat: bool) -> str:
    """``value`` as JSON text, every object's first key written twice when ``repeat``, the repeat
    with blanks before its colon when ``spaced`` (the case a quick key count would miss)."""
    if isinstance(value, dict):
        items = [(k, v, ":") for k, v in value.items()]
        if repeat and items:
            items.append((items[0][0], items[0][1], " :" if spaced else ":"))
        return "{" + ",".join(json.dumps(k) + colon + written(v, spaced, repeat) for k, v, colon in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(written(v, spaced, repeat) for v in value) + "]"
    return json.dumps(value)


def verdict(read, text: bytes) -> object:  # type: ignore[no-untyped-def]
    try:
        return ("ok", read(text))
    except ValidationError as exc:
        return ("refused", str(exc))


@settings(max_examples=400, deadline=None)
@given(values, st.booleans(), st.booleans())
def test_fast_reader_agrees_with_the_strict_standard_library(value: object, spaced: bool, repeat: bool) -> None:
    text = written(value, spaced, repeat).encode()
    fast = verdict(bodies.loads, text)
    strict = verdict(lambda t: bodies._strict_loads(t, "the body"), text)
    assert fast == strict, text


def test_repeated_keys_are_refused_by_name() -> None:
    for text in (
        b'[{"a":1,"a":2}]',
        b'[{"a":1},{"b":{"c":1,"c":2}}]',
        b'[{"x":"\\":","a":1,"a":2}]',
        b'[{"x":"\\u0022:","a":1,"a":2}]',  # a quote written as \u0022: orjson writes it \"
    ):
        refused = verdict(bodies.loads, text)
        assert refused[0] == "refused" and "appears twice" in str(refused[1]), text
    assert bodies.loads(b'[{"a":1,"b":2}]') == [{"a": 1, "b": 2}]
