"""YAML and JSON with a key given twice refused (hinterval/strict_load.py)."""
import pytest

from hinterval.strict_load import DuplicateKey, load_json, load_yaml, read_json_file


@pytest.mark.parametrize("text, lines", [
    ("gamma: 1\nbeta: 2\ngamma: 3\n", (1, 3)),
    ("gamma: 1\ngamma: 1\n", (1, 2)),  # the same value twice is still two keys
    ("{gamma: 1, gamma: 2}\n", (1, 1)),
    ('gamma: 1\n"gamma": 2\n', (1, 2)),
    ("outer:\n  a: 1\n  a: 2\n", (2, 3)),
    ("1: a\n1.0: b\n", (1, 2)),  # equal keys of two spellings
])
def test_yaml_key_given_twice(text, lines):
    with pytest.raises(DuplicateKey) as exc:
        load_yaml(text)
    assert exc.value.lines == lines and "given twice" in str(exc.value)


def test_yaml_merge_keys_may_be_overridden_and_lists_may_repeat():
    assert load_yaml("base: &b {lr: 1, beta: 2}\nrun:\n  <<: *b\n  lr: 3\n")["run"] == {"lr": 3, "beta": 2}
    assert load_yaml("- {a: 1}\n- {a: 1}\n") == [{"a": 1}, {"a": 1}]


def test_yaml_is_still_safe():
    import yaml

    with pytest.raises(yaml.constructor.ConstructorError):
        load_yaml("!!python/object/apply:os.system ['true']\n")


def test_json_key_given_twice(tmp_path):
    with pytest.raises(DuplicateKey, match="'a' is given twice"):
        load_json('{"x": {"a": 1, "a": 2}}')
    assert load_json('[{"a": 1}, {"a": 2}]') == [{"a": 1}, {"a": 2}]
    (tmp_path / "s.json").write_text('{"a": 1, "a": 1}')
    with pytest.raises(ValueError):
        read_json_file(tmp_path / "s.json", "state")
