"""Issue 25, case 4: OFA table YAML is parsed safely, within limits, and every malformed text is a ValueError
that gives the line and the reason."""

from __future__ import annotations

import time

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from nas.spaces import get_space
from predictors.latency.lut import MAX_YAML_CHARS, MAX_YAML_NODES, LookupTable, parse_ofa_yaml

SPACE = "ofa_mbv3_d234_e346_k357_32px"
BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)
"""A 'billion laughs' of 9^9 scalars in 306 bytes."""

HOSTILE = [
    ("a: !!python/object/apply:os.system ['true']\n", 1, "could not determine a constructor for the tag"),
    ("a: !!python/object:os.system {}\n", 1, "could not determine a constructor"),
    ("a: [1, 2\n", 2, "expected ',' or ']'"),
    ("a: {mean: 1\n", 2, "expected ',' or '}'"),
    ("a:\n\tmean: 1\n", 2, "found character '\\t' that cannot start any token"),
    ("a:\n  ? [1, 2]\n  : 3\n", 2, "found unhashable key"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", 1, "nested deeper than 8 levels"),
    ("a: \ud800\n", 1, "character #xd800 is not allowed"),
    (BOMB, 6, f"expands to more than {MAX_YAML_NODES} nodes through its aliases"),
    ("a: &a [*a]\n", 1, "an alias inside the node it names"),
    ("- 1\n- 2\n", 1, "expected a mapping of layer keys"),
    ("", 1, "expected a mapping of layer keys"),
    ("!!python/object:os.system {a: 1}\n", 1, "expected a mapping of layer keys"),
    ("a: 1\n---\nb: 2\n", 2, "expected a single document"),
]


@pytest.mark.parametrize(("text", "line", "reason"), HOSTILE)
def test_hostile_yaml_is_a_value_error_with_the_line_and_the_reason(text: str, line: int, reason: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ValueError) as error:
        parse_ofa_yaml(text, "tables.224")
    assert str(error.value).startswith(f"tables.224, line {line}, column ")
    assert reason in str(error.value)
    assert time.perf_counter() - started < 1.0


def test_a_text_longer_than_the_limit_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(ValueError, match=rf"tables\.224: {MAX_YAML_CHARS + 1} characters, more than the"):
        parse_ofa_yaml("#" * (MAX_YAML_CHARS + 1), "tables.224")


def test_entries_that_are_yaml_but_not_a_table_name_their_line() -> None:
    from predictors.latency.keys import table_layers

    space = get_space(SPACE)
    first = next(iter(table_layers(space.backbone, [32])))
    cases = {
        f"{first}:\n  mean: 2020-01-01\n": r"line 1: mean of .* must be a number of milliseconds, got datetime\.date",
        f"{first}:\n  mean: 1\n  count: [1, 2]\n": r"line 1: entry .* count must be a whole number of runs",
        f"{first}:\n  mean: 1\n  std: .nan\n": r"line 1: entry .* std must be a finite number of ms >= 0",
        f"{first}:\n  mean: 1\n2020-01-01:\n  mean: 1\n": r"line 3: key datetime\.date\(2020, 1, 1\) is not a layer",
        f"{first}:\n  mean: 1\n? [1, 2]\n: {{mean: 1}}\n": r"line 3: key \[1, 2\] is not a layer",
        f"{first}: 0.5\n": r"line 1: entry .* must be a mapping with a 'mean'",
    }
    for text, message in cases.items():
        with pytest.raises(ValueError, match=rf"^tables\.32, {message}"):
            LookupTable.from_ofa_texts({32: ("tables.32", text)}, space)


def test_a_table_with_anchors_within_the_limits_still_loads() -> None:
    from predictors.latency.keys import table_layers

    space = get_space(SPACE)
    keys = list(table_layers(space.backbone, [32]))
    text = f"{keys[0]}: &e {{count: 10, mean: 0.5, std: 0.01}}\n" + "".join(f"{k}: *e\n" for k in keys[1:])
    table = LookupTable.from_ofa_texts({32: ("tables.32", text)}, space)
    assert len(table) == len(keys) and table.stats[32][keys[-1]] == {"count": 10, "std": 0.01}


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!?|>'\"#\t\n ,.0123456789\\%@`~<=\ud800é")), max_size=200))
def test_any_text_parses_or_is_a_value_error(text: str) -> None:
    try:
        entries = parse_ofa_yaml(text, "t")
    except ValueError as error:
        assert str(error).startswith("t")
    else:
        assert isinstance(entries, list)


NO_SURROGATE = st.characters(exclude_categories=["Cs"])
SCALARS = st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(NO_SURROGATE, max_size=10)
"""What safe_dump writes as a YAML scalar (a lone surrogate cannot be written)."""


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(NO_SURROGATE, max_size=5), c, max_size=4)
    )
)
def test_yaml_that_safe_dump_writes_round_trips(value: object) -> None:
    document = {"k": value}
    text = yaml.safe_dump(document, allow_unicode=True)
    try:
        entries = parse_ofa_yaml(text, "t")
    except ValueError as error:  # only for values nested deeper than the limit
        assert "nested deeper than" in str(error)
    else:
        assert entries[0][1:] == ("k", yaml.safe_load(text)["k"])
