"""Config: layering (defaults < preset < file < overrides), types, and readable errors."""

import pytest

from rollingq.config import (
    GROUPS,
    Config,
    ConfigError,
    ModelConfig,
    OptimConfig,
    build_config,
    valid_keys,
)


def test_defaults_follow_the_published_settings():
    m, o = ModelConfig(), OptimConfig()
    assert (m.dim, m.depth, m.heads, m.patch_size, m.fusion, m.fusion_layers) == (
        768,
        4,
        12,
        16,
        "attn",
        1,
    )
    assert (o.name, o.lr, o.weight_decay, o.momentum, o.warmup_epochs) == (
        "sgd",
        1e-3,
        1e-4,
        0.9,
        2.5,
    )
    cfg = Config()
    assert (cfg.train.batch_size, cfg.train.epochs, cfg.train.seed) == (64, 30, 0)
    assert (cfg.rollingq.air_stat, cfg.rollingq.anchor_stat, cfg.rollingq.rotation) == (
        "last_batch",
        "full_pass",
        "svd",
    )


def test_synthetic_preset_is_small_and_user_values_win():
    cfg = build_config()
    assert cfg.data.name == "synthetic" and cfg.model.dim < 768 and cfg.optim.name == "sgd"
    cfg = build_config(overrides={"model.dim": 32, "model.heads": 2})
    assert cfg.model.dim == 32 and cfg.model.heads == 2


def test_file_then_overrides(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text(
        "data: {name: synthetic}\nrollingq: {beta: 0.3, rotation: plane}\ntrain: {epochs: 3}\n"
    )
    cfg = build_config(f, ["rollingq.beta=0.05", "train.noise_levels=[0, 0.5]"])
    assert cfg.rollingq.beta == 0.05 and cfg.rollingq.rotation == "plane" and cfg.train.epochs == 3
    assert cfg.train.noise_levels == [0.0, 0.5]


def test_round_trip_through_dict():
    cfg = build_config(overrides={"rollingq.rho": 2.0})
    assert Config(**{g: GROUPS[g](**sub) for g, sub in cfg.to_dict().items()}) == cfg
    assert set(cfg.flat()) == set(valid_keys())


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"rollingq.bta": 0.1}, "unknown config key 'rollingq.bta'"),
        ({"model.fusion": "late"},
         "valid: attn, concat, sum, mbt, mmml, jmt, mult, audio, visual, text"),
        ({"model.fusion": "jmt"}, "model.fusion=mmml or mult with model.readout=attn"),
        ({"model.fusion": "jmt", "rollingq.enabled": False, "model.readout": "attn"},
         "readout == 'own' unless fusion in (mmml, mult)"),
        ({"model.mult_dim": 32}, "mult_dim % 5 == 0"),
        ({"data.modalities": "text"}, "two names for the synthetic data set"),
        ({"rollingq.rotation": "qr"}, "valid: svd, plane"),
        ({"rollingq.beta": -0.1}, "`beta >= 0` must hold, but got rollingq.beta=-0.1 (override)"),
        ({"model.heads": 5}, "dim % heads == 0"),
        ({"train.epochs": "many"}, "train.epochs='many' must be of type int"),
        ({"rollingq.enabled": "yes"}, "must be of type bool"),
        ({"model.fusion": "concat"}, "set rollingq.enabled=false"),
        ({"data.name": "features"}, "data.root"),
    ],
)
def test_errors_name_key_value_and_fix(overrides, expected):
    with pytest.raises(ConfigError, match=None) as e:
        build_config(overrides=overrides)
    assert expected in str(e.value)


def test_unknown_key_suggests_the_group():
    with pytest.raises(ConfigError, match="did you mean rollingq.beta"):
        build_config(overrides={"model.beta": 0.1})


def test_file_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  dim: 64\n   heads: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml line \d+ is not valid YAML"):
        build_config(bad)
    group = tmp_path / "group.yaml"
    group.write_text("modle: {dim: 64}\n")
    with pytest.raises(ConfigError, match="unknown group 'modle'.*valid groups: data, model"):
        build_config(group)
    with pytest.raises(ConfigError, match="does not exist"):
        build_config(tmp_path / "missing.yaml")
    src = tmp_path / "src.yaml"
    src.write_text("rollingq: {rho: -1}\n")
    with pytest.raises(ConfigError, match="src.yaml"):
        build_config(src)


def test_override_syntax():
    with pytest.raises(ConfigError, match="key=value"):
        build_config(overrides=["rollingq.beta"])


def test_the_favoured_modality_is_declared_and_checked():
    from rollingq.data import load_data

    cfg = build_config(overrides={"data.favoured": "visual", "data.train_size": 200,
                                  "data.test_size": 50})
    assert load_data(cfg.data).favoured == "visual"  # the declaration replaces the built-in
    assert load_data(build_config(overrides={"data.train_size": 200, "data.test_size": 50})
                     .data).favoured == "audio"
    with pytest.raises(ConfigError, match=r"data.favoured.*valid: audio, visual"):
        build_config(overrides={"data.favoured": "text"})
    with pytest.raises(ConfigError, match=r"valid: visual, text"):
        build_config(overrides={"data.name": "mosei", "data.root": "/x", "data.favoured": "audio"})
