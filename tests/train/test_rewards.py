"""GRPO's rewards one kind at a time, their weighted sum, and a bad reward spec as one config line."""

from __future__ import annotations

import re

import pytest

from tunelab.config import GrpoSection, build_config
from tunelab.errors import ConfigError
from tunelab.train import rewards


def test_exact_compares_to_the_reference_up_to_spaces():
    assert rewards.exact("  Paris ", "Paris") == 1.0
    assert rewards.exact("Paris.", "Paris") == 0.0
    assert rewards.exact("paris", "Paris") == 0.0  # case counts: it is an exact match
    assert rewards.exact("4", 4) == 1.0  # a number in the row compares as its text
    assert rewards.exact("Rome", ["Paris", "Rome"]) == 1.0  # any of several references
    assert rewards.exact("anything", None) == 0.0


def test_exact_with_a_pattern_compares_what_it_captures():
    group = re.compile(r"answer:\s*(\S+)")
    assert rewards.exact("Let me think. answer: 42", "42", group) == 1.0
    assert rewards.exact("Let me think. answer: 41", "42", group) == 0.0
    assert rewards.exact("42", "42", group) == 0.0  # nothing captured
    assert rewards.exact("the year 1999 ended", "1999", re.compile(r"\d{4}")) == 1.0  # no group: the whole match


def test_regex_finds_the_pattern_anywhere():
    assert rewards.matches("Date: Monday", re.compile(r"Date: \w+")) == 1.0
    assert rewards.matches("no date here", re.compile(r"Date: \w+")) == 0.0


def test_json_wants_an_object_or_array():
    assert rewards.is_json(' {"event": "lunch", "time": "12 PM"} ') == 1.0
    assert rewards.is_json("[1, 2]") == 1.0
    assert rewards.is_json("4") == 0.0  # valid JSON, but not a structure
    assert rewards.is_json('{"event": "lunch"') == 0.0
    assert rewards.is_json("[" * 100_000) == 0.0


def test_length_is_one_inside_the_bounds_and_falls_off_outside():
    five = "one two three four five"
    assert rewards.length(five, 5, 10) == 1.0
    assert rewards.length("one two", 4, 10) == 0.5
    assert rewards.length(five + " six seven eight nine ten", None, 5) == 0.5
    assert rewards.length("", 2, None) == 0.0


def test_the_total_is_the_weighted_sum_and_each_reward_reads_its_field():
    section = GrpoSection(rewards=[{"kind": "exact", "field": "answer", "weight": 2},
                                   {"kind": "regex", "pattern": "^[0-9]+$", "weight": 0.5},
                                   {"kind": "length", "max": 1}, {"kind": "regex", "pattern": "x"}])
    built = rewards.build(section)
    assert [r.name for r in built] == ["exact_answer", "regex", "length", "regex_2"]
    assert rewards.required_fields(section) == ("answer",)
    prompts = [[{"role": "user", "content": "2+2?"}]] * 3
    fields = [{"answer": "4"}] * 3
    assert rewards.total(built, prompts, ["4", "5", "four four"], fields) == [3.5, 1.5, 0.5]
    held = rewards.HeldOut(built, fields).breakdown(prompts, ["4", "4", "4"], ["5", "5", "4"])
    assert held["exact_answer"] == {"weight": 2.0, "policy": 1.0, "reference": 0.3333}


def test_trl_sees_each_reward_under_its_name_with_the_rows_fields():
    reward = rewards.build(GrpoSection(rewards=[{"kind": "exact", "field": "answer"}]))[0]
    score = rewards.for_trainer(reward)
    assert score.__name__ == "exact_answer"
    completions = [[{"role": "assistant", "content": "4"}], [{"role": "assistant", "content": "5"}]]
    prompts = [[{"role": "user", "content": "2+2?"}]] * 2
    assert score(prompts=prompts, completions=completions, fields=['{"answer": "4"}'] * 2, trainer_state=None) == [1.0, 0.0]


def test_reward_model_flag_adds_a_model_reward_once():
    section = GrpoSection(reward_model="runs/rm", rewards=[{"kind": "json"}])
    assert [(s.kind, s.run) for s in rewards.specs(section)] == [("json", None), ("model", "runs/rm")]
    section = GrpoSection(reward_model="runs/rm", rewards=[{"kind": "model", "run": "runs/rm", "weight": 3}])
    assert [(s.kind, s.weight) for s in rewards.specs(section)] == [("model", 3.0)]


@pytest.mark.parametrize("spec, message", [
    ("{kind: bleu}", "grpo.rewards.0.kind': Input should be 'exact', 'regex', 'json', 'length' or 'model'"),
    ("{kind: regex, pattern: '(unclosed'}", "'pattern' is not a valid regular expression (missing ), unterminated"),
    ("{kind: exact}", "kind 'exact' needs 'field'"),
    ("{kind: model}", "kind 'model' needs 'run'"),
    ("{kind: json, field: answer}", "kind 'json' takes no 'field' (it reads: weight)"),
    ("{kind: length}", "kind 'length' needs 'min', 'max' or both"),
    ("{kind: length, min: 9, max: 3}", "'min' is above 'max'"),
    ("{kind: json, wieght: 2}", "unknown config key 'grpo.rewards.0.wieght'"),
])
def test_a_bad_reward_spec_is_one_config_line(spec, message):
    with pytest.raises(ConfigError) as caught:
        build_config(sets=[f"grpo.rewards=[{spec}]"])
    assert message in str(caught.value) and "\n" not in str(caught.value)
