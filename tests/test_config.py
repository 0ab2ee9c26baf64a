"""Config files and values: what is accepted (the refusals are in ``test_bad_inputs.py``)."""
from __future__ import annotations

import codecs

import pytest

from hinterval.config import MAX_CONFIG_VALUES, _expanded_size, load_config_file, make_config
from hinterval.errors import UserError, short


@pytest.mark.parametrize("encode", [
    lambda t: t.encode("utf-8"), lambda t: codecs.BOM_UTF8 + t.encode("utf-8"),
    lambda t: codecs.BOM_UTF16_LE + t.encode("utf-16-le"), lambda t: codecs.BOM_UTF16_BE + t.encode("utf-16-be"),
    lambda t: codecs.BOM_UTF32_LE + t.encode("utf-32-le")], ids=["utf8", "utf8-bom", "utf16le-bom", "utf16be-bom", "utf32-bom"])
def test_config_files_in_unicode_encodings_with_a_bom_are_read(tmp_path, encode):
    """PowerShell's ``>`` writes UTF-16 with a byte-order mark: such a file is as good as UTF-8."""
    (tmp_path / "c.yaml").write_bytes(encode("gamma: 0.5\nhnet_hidden: [50, 50]\n"))
    cfg = make_config(load_config_file(tmp_path / "c.yaml"))
    assert cfg.gamma == 0.5 and cfg.hnet_hidden == (50, 50)


def test_a_run_directory_config_json_is_a_valid_config_file(tmp_path):
    import json

    cfg = make_config(gamma=0.25)
    (tmp_path / "config.json").write_text(json.dumps({**cfg.to_dict(), "run_id": "abc"}))
    assert make_config(load_config_file(tmp_path / "config.json")) == cfg


def test_small_aliases_are_fine_and_expansion_is_bounded():
    import yaml

    data = yaml.safe_load("w: &w [100, 100]\nhnet_hidden: *w\ntarget_hidden: *w\n")
    assert _expanded_size(data, MAX_CONFIG_VALUES) == 13  # the mapping, 3 keys, 3 lists, 6 numbers
    loop: list = []
    loop.append(loop)
    assert _expanded_size(loop, 50) == 51  # stops at the budget instead of recursing forever


@pytest.mark.parametrize("value,widths", [("100,100", (100, 100)), ([100, 100.0], (100, 100)), (" 8 ", (8,)), (8, (8,)),
                                          ("", ()), (["16", 16], (16, 16))])
def test_widths_accept_whole_numbers(value, widths):
    assert make_config(target_hidden=value).target_hidden == widths


@pytest.mark.parametrize("value", [[1.9], [True], [[8]], ["8.5"], [None], {"a": 1}, 1.5, False])
def test_widths_refuse_fractions_booleans_and_structures(value):
    with pytest.raises(UserError, match="whole numbers"):
        make_config(target_hidden=value)


def test_seeds_span_64_bits():
    assert make_config(seed=2**64 - 1, data_seed=0).seed == 2**64 - 1
    assert make_config(seed="18446744073709551615").seed == 2**64 - 1
    with pytest.raises(UserError, match="2\\^64 - 1"):
        make_config(seed=2**64)


@pytest.mark.parametrize("field,value,expected", [("reg_bounds", "false", False), ("reg_bounds", "Yes", True),
                                                   ("lr", "1e-3", 1e-3), ("iters_per_task", 5.0, 5)])
def test_strings_and_whole_floats_are_coerced(field, value, expected):
    assert getattr(make_config(**{field: value}), field) == expected


def test_short_bounds_any_value():
    huge = ["x" * 1000] * 1000
    assert len(short(huge)) <= 80 and len(short("y" * 10**6)) <= 80
    nested: list = []
    for _ in range(1000):
        nested = [nested]
    assert len(short(nested)) <= 80


@pytest.mark.slow
def test_a_max_seed_trains(tmp_path):
    """The per-task seed derived from a 64-bit seed wraps instead of overflowing torch.manual_seed."""
    from hinterval.trainer import train_continual

    cfg = make_config(seed=2**64 - 1, num_tasks=1, iters_per_task=2, hnet_hidden="8", target_hidden="8", embedding_dim=2,
                      device="cpu")
    assert train_continual(cfg, progress=False)["tasks_done"] == 1


def test_preset_epoch_budget_applies_by_default():
    from hinterval.presets import PRESETS

    assert make_config(dict(benchmark="tinyimagenet")).epochs_per_task == PRESETS["tinyimagenet"]["epochs_per_task"]


@pytest.mark.parametrize("layers,overrides,epochs,iters", [
    ([dict(benchmark="tinyimagenet")], dict(iters_per_task=50), None, 50),               # a flag clears the preset's epochs
    ([dict(benchmark="tinyimagenet", epochs_per_task=2)], dict(iters_per_task=50), None, 50),  # ... and a file's
    ([dict(benchmark="tinyimagenet", iters_per_task=50)], dict(epochs_per_task=3), 3.0, 50),   # epochs given later win
    ([dict(benchmark="tinyimagenet")], dict(iters_per_task=50, epochs_per_task=3), 3.0, 50),   # both in one layer: epochs
    ([dict(benchmark="tinyimagenet")], dict(lr=1e-3), 10.0, 1000),                              # no budget given: preset
])
def test_the_highest_layer_that_sets_the_budget_decides_its_unit(layers, overrides, epochs, iters):
    cfg = make_config(*layers, **overrides)
    assert (cfg.epochs_per_task, cfg.iters_per_task) == (epochs, iters)


@pytest.mark.parametrize("over", [dict(), dict(iters_per_task=50), dict(epochs_per_task=1.5)])
def test_saved_config_rebuilds_the_same_config(over):
    """A checkpoint stores ``to_dict()``; rebuilding from it must not bring a cleared preset value back."""
    cfg = make_config(dict(benchmark="tinyimagenet"), **over)
    assert make_config(cfg.to_dict()) == cfg


def test_interval_scope_is_checked_and_cnn_targets_get_their_scoped_preset():
    from hinterval.presets import CNN_TARGET_PRESETS

    assert make_config().interval_scope == "all"
    assert make_config(interval_scope=" Last:2 ").interval_scope == "last:2"
    with pytest.raises(UserError, match="interval scope must be"):
        make_config(interval_scope="last:0")
    cnn = make_config(benchmark="split-fashion", target="resnet18")
    assert (cnn.interval_scope, cnn.gamma) == (CNN_TARGET_PRESETS["resnet18"]["interval_scope"],
                                               CNN_TARGET_PRESETS["resnet18"]["gamma"])
    assert make_config(benchmark="split-fashion", target="resnet18", gamma=0.3).gamma == 0.3  # flags win
    relaxed = make_config(benchmark="tinyimagenet", interval_mode="relaxed")
    assert relaxed.interval_scope == "all"  # the paper's relaxed mode keeps every layer
