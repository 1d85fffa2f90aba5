"""Tests of ``actors.topics``: MQTT topic names, filters and matching.

Three layers: the peer vectors in ``tests/data/mqtt-topics.json`` (collected from the mosquitto
and HiveMQ test suites), explicit rule tests, and
hypothesis properties (one of them checks ``matches`` against a recursive reference matcher).

How each vector list is used
=======================  =======================================================================
``match_cases``          all 61: ``match``/``no_match`` is the verdict of ``matches``; ``error``
                         means ``matches`` is False and the filter or the topic is invalid
                         (``validate_*`` raises ``ValueError`` for it)
``validity_cases``       all 108: ``topic_name`` -> ``is_valid_topic``/``validate_topic``;
                         ``topic_filter``, ``shared_filter`` -> ``is_valid_filter``/
                         ``validate_filter``; ``is_shared_subscription`` -> ``split_shared``
                         gives a group, or raises (a malformed ``$share/`` filter is invalid, not
                         an ordinary filter); ``is_dollar_topic`` (no helper is exported) -> the
                         observable rule: ``#`` and ``+/#`` match it iff it is not a ``$`` topic
``acl_cases``            not run: filter-vs-filter ACL containment; no ACL here (by design)
``pattern_cases``        not run: ACL ``%c``/``%u`` substitution; no ACL here (by design)
``non_normative_cases``  must stay empty until each case gets a test asserting that we do not
                         copy the peer's behaviour (the file lists none today)
=======================  =======================================================================

Vector cases that the contract overrides are listed in ``DISAGREEMENTS`` below (none today).
"""

from __future__ import annotations

import ast
import enum
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

import actors.topics as topics_module
from actors.topics import (
    is_valid_filter,
    is_valid_topic,
    levels,
    matches,
    split_shared,
    validate_filter,
    validate_topic,
)

_VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "mqtt-topics.json").read_text(encoding="utf-8")
)

# Vector cases where the contract (docs/ARCHITECTURE.md section 6) overrides the peers:
# case id -> (what we do instead, why). None today: every match and validity case agrees.
DISAGREEMENTS: dict[str, tuple[str, str]] = {}

_VALIDITY_KINDS = {"topic_name", "topic_filter", "shared_filter", "is_shared_subscription",
                   "is_dollar_topic"}
_OUT_OF_SCOPE = {
    "acl_cases": "filter-vs-filter ACL containment; topics implements no ACL",
    "pattern_cases": "ACL %c/%u substitution; topics implements no ACL",
}

# Hypothesis caches (unicode tables, constants) go to ./.hypothesis by default even without an
# example database, and with pyproject's norecursedirs (which replaces pytest's defaults) a
# .hypothesis directory in the tree turns every later pytest run into a collection error under
# filterwarnings=error. Keep the caches outside the tree unless the caller chose a place.
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "streamvisor-hypothesis")

_PROPERTY = settings(max_examples=300, derandomize=True, database=None, deadline=None)


def _escaped(value: str) -> str:
    return value.encode("unicode_escape").decode("ascii")


def _match_params() -> list[Any]:
    params = []
    for index, case in enumerate(_VECTORS["match_cases"]):
        shown = f"{_escaped(case['filter'])}~{_escaped(case['topic'])}"
        case_id = f"m{index:02d}-{case['test']}-{shown}"
        expect = DISAGREEMENTS.get(case_id, (case["expect"], ""))[0]
        params.append(pytest.param(case["filter"], case["topic"], expect, id=case_id))
    return params


def _validity_params() -> list[Any]:
    params = []
    for index, case in enumerate(_VECTORS["validity_cases"]):
        case_id = f"v{index:03d}-{case['kind']}-{case['test']}-{_escaped(case['value'])}"
        valid = DISAGREEMENTS.get(case_id, (case["valid"], ""))[0]
        params.append(pytest.param(case["kind"], case["value"], valid, id=case_id))
    return params


_MATCH_PARAMS = _match_params()
_VALIDITY_PARAMS = _validity_params()


# -- peer vectors ------------------------------------------------------------------------------


@pytest.mark.parametrize(("filter_", "topic", "expect"), _MATCH_PARAMS)
def test_peer_match_vector_gives_the_expected_verdict(
    filter_: str, topic: str, expect: str
) -> None:
    assert expect in {"match", "no_match", "error"}
    assert matches(filter_, topic) is (expect == "match")
    if expect == "error":
        assert not (is_valid_filter(filter_) and is_valid_topic(topic))
        _assert_validator_agrees(validate_filter, filter_, is_valid_filter(filter_))
        _assert_validator_agrees(validate_topic, topic, is_valid_topic(topic))
    else:
        validate_filter(filter_)
        validate_topic(topic)


@pytest.mark.parametrize(("kind", "value", "valid"), _VALIDITY_PARAMS)
def test_peer_validity_vector_gives_the_expected_verdict(
    kind: str, value: str, valid: bool
) -> None:
    if kind == "topic_name":
        assert is_valid_topic(value) is valid
        _assert_validator_agrees(validate_topic, value, valid)
    elif kind in {"topic_filter", "shared_filter"}:
        assert is_valid_filter(value) is valid
        _assert_validator_agrees(validate_filter, value, valid)
        if valid:
            assert (split_shared(value)[0] is not None) is (kind == "shared_filter")
    elif kind == "is_shared_subscription":
        if valid:
            group, inner = split_shared(value)
            assert group and inner
        else:
            assert not is_valid_filter(value)
            with pytest.raises(ValueError, match="share name"):
                split_shared(value)
    elif kind == "is_dollar_topic":
        assert is_valid_topic(value)
        assert matches("#", value) is not valid
        assert matches("+/#", value) is not valid
        assert matches(value, value)
    else:
        pytest.fail(f"unknown validity kind {kind!r}: map it in the module docstring table")


def _assert_validator_agrees(validator: Any, value: str, valid: bool) -> None:
    if valid:
        validator(value)
    else:
        with pytest.raises(ValueError):
            validator(value)


def test_every_vector_case_is_run_or_declared_out_of_scope() -> None:
    assert len(_MATCH_PARAMS) == len(_VECTORS["match_cases"]) == 61
    assert len(_VALIDITY_PARAMS) == len(_VECTORS["validity_cases"]) == 108
    assert {case["kind"] for case in _VECTORS["validity_cases"]} <= _VALIDITY_KINDS
    listed = {key for key, value in _VECTORS.items() if key.endswith("_cases") and value}
    assert listed == {"match_cases", "validity_cases", *_OUT_OF_SCOPE}
    assert _VECTORS["non_normative_cases"] == [], "add a test rejecting each non-normative case"
    ids = {param.id for param in _MATCH_PARAMS + _VALIDITY_PARAMS}
    assert set(DISAGREEMENTS) <= ids, "stale DISAGREEMENTS entry"


# -- wildcards and levels ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "expected"),
    [("sport/tennis", True), ("sport/", True), ("sport", False), ("sport/tennis/x", False)],
)
def test_plus_wildcard_matches_exactly_one_level(topic: str, expected: bool) -> None:
    assert matches("sport/+", topic) is expected


def test_plus_wildcard_matches_an_empty_level() -> None:
    assert matches("a/+/b", "a//b")
    assert matches("+/a", "/a")
    assert matches("+", "") is False  # the empty string is not a topic name
    assert matches("+/+", "/")


@pytest.mark.parametrize("topic", ["sport", "sport/", "sport/tennis", "sport/tennis/player1/x"])
def test_hash_wildcard_matches_the_parent_level_and_any_number_of_children(topic: str) -> None:
    assert matches("sport/#", topic)


def test_hash_wildcard_does_not_match_a_sibling_or_shorter_topic() -> None:
    assert not matches("sport/tennis/#", "sport")
    assert not matches("sport/#", "sports")
    assert not matches("sport/+/#", "sport")


@pytest.mark.parametrize(
    ("filter_", "message"),
    [
        ("a/#/b", "topic filter 'a/#/b': '#' must be the last level"),
        ("#/#", "topic filter '#/#': '#' must be the last level"),
        ("a/b#", "topic filter 'a/b#': '#' must occupy an entire level, not be part of 'b#'"),
        ("a/+b", "topic filter 'a/+b': '+' must occupy an entire level, not be part of '+b'"),
        ("", "topic filter '': must be at least one character"),
        ("a\x00", "topic filter 'a\\x00': must not contain U+0000 (NUL)"),
        ("$share//a", "topic filter '$share//a': the share name after '$share/' must not be empty"),
        ("$share/g+/a", "'$share/g+/a': the share name 'g+' must not contain '+' or '#'"),
        ("$share/g", "the share name 'g' must be followed by '/' and a non-empty filter"),
        ("$share/g/", "the share name 'g' must be followed by '/' and a non-empty filter"),
        ("$share/g/a/#/b", "in the shared filter 'a/#/b': '#' must be the last level"),
    ],
)
def test_validate_filter_names_the_exact_problem(filter_: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        validate_filter(filter_)
    assert message in str(raised.value)
    assert not is_valid_filter(filter_)
    assert not matches(filter_, "a/b")


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("a/+", "topic name 'a/+': wildcards '+' and '#' are not allowed in topic names"),
        ("#", "topic name '#': wildcards"),
        ("", "topic name '': must be at least one character"),
        ("\x00", "must not contain U+0000 (NUL)"),
        ("a" * 65_536, "is 65,536 bytes in UTF-8, more than the 65,535 allowed"),
    ],
)
def test_validate_topic_names_the_exact_problem(topic: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        validate_topic(topic)
    assert message in str(raised.value)
    assert len(str(raised.value)) < 200  # long values are shortened in messages


@pytest.mark.parametrize(
    ("filter_", "topic"),
    [("a//b", "a//b"), ("/a", "/a"), ("a/", "a/"), ("/", "/"), ("//", "//"), ("/#", "/"),
     ("+//+", "x//y"), ("/+", "/")],
)
def test_empty_levels_are_real_levels(filter_: str, topic: str) -> None:
    assert matches(filter_, topic)


@pytest.mark.parametrize(
    ("filter_", "topic"),
    [("a/b", "a//b"), ("/a", "a"), ("a", "a/"), ("+", "/a"), ("/#", "a/b"), ("a/+", "a")],
)
def test_a_missing_or_extra_empty_level_does_not_match(filter_: str, topic: str) -> None:
    assert not matches(filter_, topic)


def test_levels_are_compared_case_sensitively_with_spaces_significant() -> None:
    assert not matches("Sport", "sport")
    assert not matches("a/ b", "a/b")
    assert matches("a/ b /+", "a/ b / ")
    assert matches("ba\u211e/+", "ba\u211e/x")


# -- $ topics ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filter_", "topic", "expected"),
    [
        ("#", "$SYS/broker/load", False),
        ("+/broker/load", "$SYS/broker/load", False),
        ("+/#", "$SYS", False),
        ("+", "$", False),
        ("$SYS/#", "$SYS/broker/load", True),
        ("$SYS/#", "$SYS", True),
        ("$SYS/+/load", "$SYS/broker/load", True),
        ("$SYS/broker/load", "$SYS/broker/load", True),
        ("#", "a/$SYS", True),
        ("+/$SYS", "a/$SYS", True),
        ("#", "/$SYS", True),
    ],
)
def test_wildcard_first_filters_never_match_dollar_topics(
    filter_: str, topic: str, expected: bool
) -> None:
    assert matches(filter_, topic) is expected


# -- validity limits ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("char", "width"), [("a", 1), ("\u00e9", 2), ("\u20ac", 3), ("\U0001f600", 4)]
)
def test_limit_is_65535_bytes_of_utf8_not_characters(char: str, width: int) -> None:
    count = 65_535 // width
    at_limit = char * count + "a" * (65_535 - count * width)
    over = at_limit + "a"
    assert len(at_limit.encode("utf-8")) == 65_535
    assert is_valid_topic(at_limit) and is_valid_filter(at_limit)
    assert not is_valid_topic(over) and not is_valid_filter(over)
    assert matches(at_limit, at_limit) and matches("#", at_limit)
    assert not matches(over, over)
    assert not matches("#", over)
    with pytest.raises(ValueError, match="65,536 bytes"):
        validate_topic(over)


def test_a_too_long_wildcard_filter_never_matches_even_a_short_topic() -> None:
    long_filter = "/".join(["+"] * 32_768)  # 65,535 bytes: valid
    assert is_valid_filter(long_filter)
    assert matches(long_filter, "/" * 32_767)
    too_long = long_filter + "/#"
    assert not is_valid_filter(too_long)
    assert not matches(too_long, "/" * 32_767)
    assert not matches(long_filter + "/+", "/" * 32_768)


def test_shared_filter_limit_counts_the_whole_filter_including_the_prefix() -> None:
    inner = "a" * (65_535 - len("$share/g/"))
    assert is_valid_filter(f"$share/g/{inner}") and matches(f"$share/g/{inner}", inner)
    assert not is_valid_filter(f"$share/g/{inner}a")
    assert not matches(f"$share/g/{inner}a", inner + "a")


@pytest.mark.parametrize("value", ["\x00", "a\x00", "a/\x00/b", "\x00/#"])
def test_nul_anywhere_is_invalid_and_never_matches(value: str) -> None:
    assert not is_valid_topic(value)
    assert not is_valid_filter(value)
    assert not matches(value, value)
    assert not matches("#", value)
    assert not matches(f"$share/g/{value}", value)


def test_nul_in_a_share_name_makes_the_filter_invalid() -> None:
    assert not is_valid_filter("$share/g\x00/a")
    assert not matches("$share/g\x00/a", "a")


def test_a_lone_surrogate_is_not_well_formed_utf8_and_never_matches() -> None:
    value = "a/\ud800"
    assert not is_valid_topic(value) and not is_valid_filter(value)
    assert not matches("#", value) and not matches("a/+", value) and not matches(value, value)
    with pytest.raises(ValueError, match="lone surrogate"):
        validate_topic(value)


def test_the_empty_string_is_neither_a_topic_nor_a_filter() -> None:
    assert not is_valid_topic("") and not is_valid_filter("")
    assert not matches("", "") and not matches("#", "") and not matches("", "a")


@pytest.mark.parametrize("topic", ["+", "#", "a/+", "a/#", "a+", "#a", "a/b#/c"])
def test_wildcards_are_invalid_in_topic_names_and_never_match(topic: str) -> None:
    assert not is_valid_topic(topic)
    assert not matches("#", topic) and not matches(topic, topic)


@pytest.mark.parametrize("value", [None, 1, 1.5, b"a/b", bytearray(b"#"), ["a"], object()])
def test_non_str_input_is_invalid_and_never_raises_from_predicates(value: object) -> None:
    assert not matches(value, "a") and not matches("#", value) and not matches(value, value)
    assert not is_valid_filter(value) and not is_valid_topic(value)
    with pytest.raises(TypeError, match="must be a str"):
        validate_filter(value)  # type: ignore[arg-type]  # the wrong type is the test
    with pytest.raises(TypeError, match="must be a str"):
        validate_topic(value)  # type: ignore[arg-type]  # the wrong type is the test
    with pytest.raises(TypeError, match="must be a str"):
        split_shared(value)  # type: ignore[arg-type]  # the wrong type is the test


def test_str_subclasses_are_treated_as_their_text() -> None:
    class Topic(enum.StrEnum):
        LOAD = "$SYS/load"
        ALL = "$SYS/#"

    assert matches(Topic.ALL, Topic.LOAD) and is_valid_topic(Topic.LOAD)
    assert split_shared(Topic.ALL) == (None, "$SYS/#")
    with pytest.raises(ValueError, match="^topic name '\\$SYS/#': wildcards"):
        validate_topic(Topic.ALL)


# -- shared subscriptions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filter_", "topic", "expected"),
    [
        ("$share/g/sport/#", "sport/tennis", True),
        ("$share/g/+", "a", True),
        ("$share/g/#", "$SYS/x", False),
        ("$share/g/$SYS/#", "$SYS/x", True),
        ("$share/g/a", "$share/g/a", False),
        ("$share/g/a", "a", True),
    ],
)
def test_shared_subscription_matches_like_its_inner_filter(
    filter_: str, topic: str, expected: bool
) -> None:
    assert matches(filter_, topic) is expected


@pytest.mark.parametrize(
    "filter_",
    ["$share/", "$share//a", "$share/g", "$share/g/", "$share/g+/a", "$share/#/a", "$share/+/a",
     "$share/g/a#", "$share/g/#/a", "$share/g/a/+b"],
)
def test_malformed_shared_subscription_is_invalid_and_never_matches(filter_: str) -> None:
    assert not is_valid_filter(filter_)
    for topic in ("a", "a/b", "g/a", filter_.replace("+", "p").replace("#", "h")):
        assert not matches(filter_, topic)
    with pytest.raises(ValueError):
        split_shared(filter_)


def test_nested_share_after_the_group_is_an_ordinary_filter() -> None:
    nested = "$share/g/$share/h/x"
    assert split_shared(nested) == ("g", "$share/h/x")
    assert matches(nested, "$share/h/x")
    assert not matches(nested, "x")
    assert is_valid_filter("$share/g/$share/+/x") and matches("$share/g/$share/+/x", "$share/h/x")
    assert is_valid_filter("$share/g/$share") and matches("$share/g/$share", "$share")


def test_share_without_a_following_slash_is_an_ordinary_dollar_filter() -> None:
    assert split_shared("$share") == (None, "$share")
    assert matches("$share", "$share")
    assert not matches("#", "$share")


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ("$share/group/a/+/b", ("group", "a/+/b")),
        ("$share/g/#", ("g", "#")),
        ("$share/g/", None),
        ("a/+/b", (None, "a/+/b")),
        ("$SYS/#", (None, "$SYS/#")),
        ("#", (None, "#")),
    ],
)
def test_split_shared_returns_group_and_inner_filter(
    filter_: str, expected: tuple[str | None, str] | None
) -> None:
    if expected is None:
        with pytest.raises(ValueError, match="must be followed by '/' and a non-empty filter"):
            split_shared(filter_)
    else:
        assert split_shared(filter_) == expected


def test_split_shared_rejects_an_invalid_non_shared_filter_with_the_problem() -> None:
    with pytest.raises(ValueError, match="'#' must be the last level"):
        split_shared("a/#/b")


# -- helpers and module shape ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("a/b", ["a", "b"]), ("/a//b", ["", "a", "", "b"]), ("a/", ["a", ""]), ("#", ["#"])],
)
def test_levels_splits_on_every_slash_keeping_empty_levels(value: str, expected: list[str]) -> None:
    assert levels(value) == expected


def test_module_exports_exactly_the_contract() -> None:
    assert sorted(topics_module.__all__) == [
        "is_valid_filter", "is_valid_topic", "levels", "matches", "split_shared",
        "validate_filter", "validate_topic",
    ]


def test_module_uses_no_regular_expressions() -> None:
    tree = ast.parse(Path(topics_module.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 if node.module}
    assert not imported & {"re", "regex", "fnmatch"}


# -- properties --------------------------------------------------------------------------------

_SMALL_LEVELS = st.sampled_from(["", "a", "b", "A", " ", "$", "$SYS", "$share", "\u211e"])
_ANY_LEVELS = st.text(
    alphabet=st.characters(exclude_characters="/+#\x00", exclude_categories=("Cs",)), max_size=6
)
_TOPIC_LEVELS = st.lists(st.one_of(_SMALL_LEVELS, _ANY_LEVELS), min_size=1, max_size=6)
_TOPICS = _TOPIC_LEVELS.map("/".join).filter(bool)
_FILTER_LEVELS = st.one_of(_SMALL_LEVELS, st.just("+"), st.just("#"))
_FILTERS = st.lists(_FILTER_LEVELS, min_size=1, max_size=6).map("/".join).filter(bool)
_SMALL_TOPICS = st.lists(_SMALL_LEVELS, min_size=1, max_size=6).map("/".join).filter(bool)
_NASTY_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(["/", "+", "#", "$", "\x00", "a", " ", "\u211e", "\U0001f600"]),
        st.characters(),
    ),
    max_size=24,
)
_NASTY = st.one_of(
    _NASTY_TEXT,
    _NASTY_TEXT.map(lambda text: "$share/" + text),
    st.none(), st.integers(), st.binary(max_size=8),
)


def _reference_matches(filter_: str, topic: str) -> bool:
    """The rules transcribed directly (recursive, for valid inputs only): an independent oracle."""
    if filter_.startswith("$share/"):
        filter_ = filter_.split("/", 2)[2]
    if topic.startswith("$") and filter_[0] in "+#":
        return False

    def walk(filter_levels: list[str], topic_levels: list[str]) -> bool:
        if not filter_levels:
            return not topic_levels
        head, rest = filter_levels[0], filter_levels[1:]
        if head == "#":
            return True
        if not topic_levels:
            return False
        return head in ("+", topic_levels[0]) and walk(rest, topic_levels[1:])

    return walk(filter_.split("/"), topic.split("/"))


@st.composite
def _topic_and_plus_mask(draw: st.DrawFn) -> tuple[list[str], list[bool]]:
    topic_levels = draw(_TOPIC_LEVELS.filter(lambda parts: "/".join(parts) != ""))
    mask = draw(st.lists(st.booleans(), min_size=len(topic_levels), max_size=len(topic_levels)))
    return topic_levels, mask


@_PROPERTY
@given(_topic_and_plus_mask())
def test_replacing_any_levels_of_a_topic_with_plus_gives_a_matching_filter(
    drawn: tuple[list[str], list[bool]],
) -> None:
    topic_levels, mask = drawn
    topic = "/".join(topic_levels)
    filter_ = "/".join("+" if plus else level for level, plus in zip(topic_levels, mask))
    # A filter starting with "$share/" would be read as a shared subscription, not a literal.
    assume(not (topic_levels[0] == "$share" and not mask[0]))
    first_is_wildcard_on_dollar = mask[0] and topic.startswith("$")
    assert matches(filter_, topic) is not first_is_wildcard_on_dollar
    for keep in range(1, len(topic_levels) + 1):  # a '#' after any prefix matches too
        prefix = "/".join("+" if plus else level for level, plus in zip(topic_levels, mask[:keep]))
        assert matches(prefix + "/#", topic) is not first_is_wildcard_on_dollar


@_PROPERTY
@given(_TOPICS)
def test_hash_matches_every_valid_topic_not_starting_with_dollar(topic: str) -> None:
    assert is_valid_topic(topic)
    assert matches("#", topic) is not topic.startswith("$")


@_PROPERTY
@given(_NASTY, _NASTY)
def test_predicates_never_raise_and_invalid_input_never_matches(
    filter_: object, topic: object
) -> None:
    result = matches(filter_, topic)
    valid_filter = is_valid_filter(filter_)
    valid_topic = is_valid_topic(topic)
    if not (valid_filter and valid_topic):
        assert result is False
    else:
        assert result is _reference_matches(str(filter_), str(topic))
    for value in (filter_, topic):
        if isinstance(value, str):
            _assert_validator_agrees(validate_filter, value, is_valid_filter(value))
            _assert_validator_agrees(validate_topic, value, is_valid_topic(value))


@_PROPERTY
@given(_FILTERS, _SMALL_TOPICS)
def test_shared_prefix_does_not_change_what_a_filter_matches(filter_: str, topic: str) -> None:
    # A filter that itself starts with "$share/" is excluded: nested after a group it is an
    # ordinary filter (MQTT 5 section 4.8.2), so the equivalence does not hold for it by design.
    assume(is_valid_filter(filter_) and not filter_.startswith("$share/"))
    assert matches(f"$share/g/{filter_}", topic) is matches(filter_, topic)


@_PROPERTY
@given(_FILTERS, _SMALL_TOPICS)
def test_matches_agrees_with_a_direct_transcription_of_the_rules(filter_: str, topic: str) -> None:
    if is_valid_filter(filter_):
        assert matches(filter_, topic) is _reference_matches(filter_, topic)
    else:
        assert not matches(filter_, topic)
