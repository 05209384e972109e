"""Search-space files and the spec format, without Ray: every file in searchspaces/ loads and
validates, says what it asks and how to run it, and has the trial count its axes imply; bad
specs stop ``python study/run.py`` with exit code 2 and one line before Ray starts; ``--set``
overrides, variants and the define-by-run Optuna space behave as documented in study/space.py.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from analysis.paper import paper_name
from rollingq.config import build_config
from rollingq.train import fit
from study.options import smoke
from study.space import (
    ROOT,
    VARIANT,
    OptunaSpace,
    Param,
    SpecError,
    apply_variant,
    parse_spec,
)
from study.specfile import SPACES_DIR, apply_overrides, available_spaces, load_spec

SPACE_FILES = sorted(SPACES_DIR.glob("*.yaml"))


def _mode(path: Path) -> str:
    tree = yaml.safe_load(path.read_text()) or {}
    return (tree.get("tune") or {}).get("mode", "grid")


GRID_FILES = [p for p in SPACE_FILES if _mode(p) == "grid"]
# The spaces issue 3 asks for, with the trial count of a complete study.
REQUIRED = {
    "smoke": 2,
    "rotation_ablation": (1 + 4 * 2) * 5,  # vanilla (no rotation kind) + caps x kinds
    "beta_rho_sensitivity": 5 * 5 * 3,
    "fusion_layers": 3 * 2 * 5,
    "statistic_modes": 2 * 2 * 3,
    "noise_robustness": 2 * 5,
    "paper_table1": 14 * 5,
    "paper_table1_text": 16 * 5,
    "hpo": 20,
    "balance_rollingq": 3 * 2 * 5,
}
FEATURES = ["data.name=features", "data.root=/data/features"]


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def _implied_trials(tree: dict) -> int:
    """The trial count read off the file's axes, independently of study.space."""
    tune = tree.get("tune") or {}
    seeds = len(tree.get("seeds", [0]))
    if tune.get("mode", "grid") == "optuna":
        return tune.get("num_samples", 1) * seeds
    sizes, conditional = [], {}
    for key, raw in (tree.get("search") or {}).items():
        n = (len(raw["values"]) if raw["type"] == "choice"
             else int(round((raw["high"] - raw["low"]) / raw["step"])) + 1)
        if raw.get("when"):  # a parameter of one condition key: n values where it holds, else 1
            (on, allowed), = raw["when"].items()
            conditional[on] = (n, allowed)
        else:
            sizes.append((key, n, raw.get("values")))
    if tree.get("variants"):
        sizes.append(("variant", len(tree["variants"]["values"]), None))
    points = 1
    for key, n, values in sizes:
        if key in conditional:
            inner, allowed = conditional.pop(key)
            points *= sum(inner if v in allowed else 1 for v in values)
        else:
            points *= n
    assert not conditional, "a condition on a key this test does not enumerate"
    return points * seeds


def _trial_configs(spec) -> list[dict]:
    """Every grid trial's full dotted overrides, variants merged."""
    return [{**spec.fixed, **apply_variant(c, spec.variants)} for c in spec.grid_configs()]


# --- every file in searchspaces/ ---------------------------------------------------------------


def test_the_required_spaces_exist_with_their_trial_counts():
    spaces = available_spaces()
    assert set(REQUIRED) <= set(spaces), f"missing: {sorted(set(REQUIRED) - set(spaces))}"
    assert {name: load_spec(name).expected_trials() for name in REQUIRED} == REQUIRED


@pytest.mark.parametrize("path", SPACE_FILES, ids=_ids(SPACE_FILES))
def test_space_file_opens_with_its_question_and_command(path):
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# ") and "?" in lines[0], (
        f"{path.name}: line 1 must be the question the study asks, got {lines[0]!r}")
    assert lines[1] == f"# Run: python study/run.py --space {path.stem}", (
        f"{path.name}: line 2 must be the exact command, got {lines[1]!r}")
    assert available_spaces()[path.stem] == lines[0][2:].strip()


@pytest.mark.parametrize("path", SPACE_FILES, ids=_ids(SPACE_FILES))
def test_space_file_validates_with_the_trial_count_its_axes_imply(path):
    spec = load_spec(path.stem)
    tree = yaml.safe_load(path.read_text())
    assert spec.name == path.stem and spec.question
    assert spec.expected_trials() == _implied_trials(tree)
    if spec.grid:
        assert len(spec.grid_configs()) == spec.expected_trials()
        assert spec.tune["scheduler"] == "fifo", "ablation grids are never early-stopped"


@pytest.mark.parametrize("path", SPACE_FILES, ids=_ids(SPACE_FILES))
def test_the_design_a_study_writes_is_the_one_an_older_folder_gets_from_its_spec(path):
    """``design.json`` (``study.design.record``) against ``analysis.migrate.from_spec`` of the
    ``space.yaml`` the study writes beside it: the two readings of a spec must agree, or older
    folders would report differently from new ones."""
    from analysis.migrate import from_spec
    from study.design import record

    spec = load_spec(path.stem, ["data.name=cremad", "data.root=/data/cremad"])
    written = record(spec)
    legacy = from_spec(yaml.safe_load(yaml.safe_dump(spec.to_dict(), sort_keys=False)),
                       "elsewhere")
    assert written.classes == {"cremad": 6}
    assert {k: legacy.classes[k] for k in written.classes} == written.classes
    assert json.loads(written.to_json()) == json.loads(
        dataclasses.replace(legacy, classes=written.classes).to_json())


@pytest.mark.parametrize("path", SPACE_FILES, ids=_ids(SPACE_FILES))
def test_space_runs_on_synthetic_data_by_default_and_on_a_real_data_set(path):
    spec = load_spec(path.stem)
    assert "data.name" not in spec.fixed and "data.root" not in spec.fixed, (
        f"{path.name} must not hard-code the data set: --dataset/--data-root choose it")
    assert build_config(overrides={**spec.fixed, "train.seed": 0}).data.name == "synthetic"
    real = load_spec(path.stem, FEATURES)
    assert real.fixed["data.name"] == "features"
    assert real.expected_trials() == spec.expected_trials()


@pytest.mark.parametrize("path", GRID_FILES, ids=_ids(GRID_FILES))
def test_every_grid_trial_is_a_valid_config(path):
    spec = load_spec(path.stem)
    configs = _trial_configs(spec)
    for over in configs:
        build_config(overrides=over)
    distinct = {tuple(sorted((k, str(v)) for k, v in c.items())) for c in configs}
    assert len(distinct) == spec.expected_trials(), "two trials of a grid have the same config"


@pytest.mark.parametrize("path", SPACE_FILES, ids=_ids(SPACE_FILES))
def test_smoke_test_budget_of_every_space_is_at_most_two_trials(path):
    spec = smoke(load_spec(path.stem))
    assert 1 <= spec.expected_trials() <= 2
    assert spec.fixed["train.epochs"] <= 2
    reloaded = parse_spec(copy.deepcopy(spec.to_dict()), spec.name, "space.yaml", spec.question)
    assert reloaded.expected_trials() == spec.expected_trials()


# --- what the required spaces ask ---------------------------------------------------------------


def _search(spec) -> dict[str, Param]:
    return {p.key: p for p in spec.search}


def test_beta_rho_sensitivity_crosses_beta_and_rho_as_scientific_parameters():
    spec = load_spec("beta_rho_sensitivity")
    s = _search(spec)
    assert set(s) == {"rollingq.beta", "rollingq.rho"}
    assert all(p.role == "scientific" and len(p.grid_values()) >= 4 for p in s.values())
    assert spec.fixed["rollingq.enabled"] is True and len(spec.seeds) >= 3


def test_fusion_layers_crosses_depth_with_rollingq_on_and_off():
    s = _search(load_spec("fusion_layers"))
    assert s["model.fusion_layers"].grid_values() == [1, 2, 3]
    assert s["rollingq.enabled"].grid_values() == [False, True]


def test_statistic_modes_crosses_both_statistics():
    s = _search(load_spec("statistic_modes"))
    assert s["rollingq.air_stat"].grid_values() == ["last_batch", "epoch"]
    assert s["rollingq.anchor_stat"].grid_values() == ["full_pass", "running"]


def test_noise_robustness_sets_noise_levels_from_0_to_1_and_says_where_they_land():
    spec = load_spec("noise_robustness")
    levels = spec.fixed["train.noise_levels"]
    step = levels[1] - levels[0]
    assert levels[0] == 0 and levels[-1] == 1 and step in (0.1, 0.25)
    assert levels == pytest.approx([i * step for i in range(len(levels))])
    assert _search(spec)["rollingq.enabled"].grid_values() == [False, True]
    assert "noise_<modality>_<level>" in (SPACES_DIR / "noise_robustness.yaml").read_text()
    # the trainable's column names: noise_<modality>_<str(level)>
    assert build_config(overrides=spec.fixed).train.noise_levels == levels


@pytest.mark.parametrize("space,unimodal,extra", [
    ("paper_table1", {"audio", "visual"}, set()),
    ("paper_table1_text", {"text", "visual"}, {"mult"}),
])
def test_paper_table1_has_every_row_and_enables_rollingq_only_on_attention(space, unimodal,
                                                                            extra):
    spec = load_spec(space)
    rows = {name: build_config(overrides={**spec.fixed, **values})
            for name, values in spec.variants.items()}
    fusions = {cfg.model.fusion for cfg in rows.values()}
    assert fusions == unimodal | extra | {"concat", "sum", "mbt", "attn", "jmt", "mmml"}
    names = {paper_name({**spec.fixed, **values}) for values in spec.variants.values()}
    assert names - {None} == {"Audio only" if "audio" in unimodal else "Text only",
                              "Visual only", "Concat", "OGM", "PMR", "Vanilla MT", "Vanilla MT*",
                              "MBT", "JMT", "MMML", "Vanilla MT + RollingQ",
                              "Vanilla MT* + RollingQ", "MMML + RollingQ"} | (
        {"MulT", "MulT + RollingQ"} if extra else set())
    attn = {(c.model.fusion_layers, c.rollingq.enabled) for c in rows.values()
            if c.model.fusion == "attn"}
    assert attn == {(1, False), (1, True), (2, False), (2, True)}
    assert all(not c.rollingq.enabled for c in rows.values()
               if c.model.fusion != "attn" and c.model.readout != "attn")
    for name in ("mmml_rollingq", "mult_rollingq") if extra else ("mmml_rollingq",):
        assert rows[name].rollingq.enabled and rows[name].model.readout == "attn"
    assert {n: c.balance.method for n, c in rows.items() if c.balance.method != "none"} == {
        "ogm": "ogm_ge", "pmr": "pmr"}
    assert rows["ogm"].model.fusion == rows["pmr"].model.fusion == "concat"
    assert _search(spec)[VARIANT].role == "scientific"
    first = next(iter(spec.variants))  # the paper's order: the unimodal rows first
    assert first in unimodal and spec.grid_configs()[0] == {VARIANT: first, "train.seed": 0}


@pytest.mark.parametrize("space", ["paper_table1", "paper_table1_text"])
def test_every_row_of_the_paper_tables_trains(space):
    """Each variant's config builds its model and trains an epoch on the synthetic data."""
    spec = load_spec(space)
    tiny = {"train.epochs": 1, "data.train_size": 64, "data.test_size": 32,
            "train.batch_size": 32, "train.checkpoint_every": 0}
    for name, values in spec.variants.items():
        r = fit(build_config(overrides={**spec.fixed, **values, **tiny}))
        assert r.status == "finished" and r.history[-1]["train_loss"] > 0, name


def test_hpo_is_tpe_with_asha_over_beta_rho_lr_and_weight_decay():
    spec = load_spec("hpo")
    t, s = spec.tune, _search(spec)
    assert (t["mode"], t["scheduler"], spec.seeds) == ("optuna", "asha", [0])
    assert 16 <= t["num_samples"] <= 32
    assert {"rollingq.beta", "rollingq.rho", "optim.lr", "optim.weight_decay"} <= set(s)
    assert all(s[k].type == "float" for k in s)
    assert s["optim.lr"].log and s["optim.weight_decay"].log
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    space = OptunaSpace(spec.search, spec.fixed)
    study.optimize(lambda trial: (space(trial), 0.0)[1], n_trials=12)
    for trial in study.trials:
        for key, value in trial.params.items():
            assert s[key].low <= value <= s[key].high
        build_config(overrides={**spec.fixed, **trial.params})


# --- bad specs: exit 2, one line, before Ray -----------------------------------------------------

HEADER = "# A question?\n# Run: python study/run.py --space {name}\n"
GOOD_TUNE = "tune: {mode: grid, metric: val_acc, scheduler: fifo}\n"
BAD_SPECS = {
    "unknown_key": (
        "fixed:\n  rollingq.betta: 0.1\n" + GOOD_TUNE,
        ["unknown config key 'rollingq.betta'", "valid keys:", "rollingq.beta"],
    ),
    "misplaced_key": (
        "fixed:\n  model.beta: 0.1\n" + GOOD_TUNE,
        ["unknown config key 'model.beta'", "did you mean rollingq.beta?"],
    ),
    "low_above_high": (
        "search:\n  optim.lr: {role: nuisance, type: float, low: 0.1, high: 0.01, log: true}\n"
        "tune: {mode: optuna, num_samples: 4}\n",
        ["`low <= high` must hold, but got low=0.1, high=0.01", "search.optim.lr"],
    ),
    "log_low_zero": (
        "search:\n  optim.lr: {role: nuisance, type: float, low: 0.0, high: 0.01, log: true}\n"
        "tune: {mode: optuna, num_samples: 4}\n",
        ["`low > 0` must hold with log: true, but got low=0.0", "search.optim.lr"],
    ),
    "empty_choices": (
        "search:\n  rollingq.beta: {role: scientific, type: choice, values: []}\n" + GOOD_TUNE,
        ["`values` must be a non-empty list, but got values=[]", "search.rollingq.beta"],
    ),
    "unknown_balance_method": (
        "fixed:\n  balance.method: ogm_gee\n" + GOOD_TUNE,
        ["balance.method='ogm_gee' is not a valid choice", "valid: none, ogm, ogm_ge, pmr"],
    ),
    "balance_window_backwards": (
        "fixed:\n  balance.method: ogm_ge\n  balance.ogm_window: [0.6, 0.2]\n" + GOOD_TUNE,
        ["0 <= start <= end <= 1", "balance.ogm_window=[0.6, 0.2]"],
    ),
    "pmr_on_one_modality": (
        "fixed:\n  balance.method: pmr\n  model.fusion: audio\n  rollingq.enabled: false\n"
        + GOOD_TUNE,
        ["balances two or more modalities", "model.fusion='audio'"],
    ),
    "rollingq_on_concat": (
        "fixed:\n  model.fusion: concat\n  rollingq.enabled: true\n" + GOOD_TUNE,
        ["joint [cls] attention over every modality when rollingq.enabled", "model.fusion='concat'",
         "model.fusion=mmml or mult with model.readout=attn"],
    ),
    "pareto_with_asha": (
        "search:\n  rollingq.beta: {role: scientific, type: float, low: 0.0, high: 0.5}\n"
        "tune: {mode: optuna, metric: [val_acc, val_abs_air], metric_mode: [max, min], "
        "scheduler: asha}\n",
        ["tune.scheduler='asha' with tune.metric=['val_acc', 'val_abs_air']",
         "a scheduler stops trials on one metric", "set tune.scheduler: fifo"],
    ),
    "pareto_grid": (
        "search:\n  rollingq.beta: {role: scientific, type: choice, values: [0.1, 0.2]}\n"
        "tune: {mode: grid, metric: [val_acc, val_abs_air], metric_mode: [max, min]}\n",
        ["with tune.mode='grid'", "set tune.mode: optuna"],
    ),
    "pareto_modes_mismatch": (
        "search:\n  rollingq.beta: {role: scientific, type: float, low: 0.0, high: 0.5}\n"
        "tune: {mode: optuna, metric: [val_acc, val_abs_air], metric_mode: max}\n",
        ["tune.metric_mode='max'", "one mode per metric", "['max', 'max']"],
    ),
    "pareto_one_metric": (
        "search:\n  rollingq.beta: {role: scientific, type: float, low: 0.0, high: 0.5}\n"
        "tune: {mode: optuna, metric: [val_acc, val_acc], metric_mode: [max, max]}\n",
        ["two or more distinct metrics"],
    ),
    "unknown_mode": (
        "search:\n  rollingq.beta: {role: scientific, type: choice, values: [0.1]}\n"
        "tune: {mode: random}\n",
        ["tune.mode='random' is not valid", "valid: grid, optuna"],
    ),
    "claims_family": (
        "fixed:\n  model.fusion: attn\n" + GOOD_TUNE + "claims: {family: everything}\n",
        ["claims.family='everything' is not valid", "valid: dataset (the claims judged on one "
         "data set), report (every claim judged on every data set of the report)"],
    ),
    "claims_margin": (
        "fixed:\n  model.fusion: attn\n" + GOOD_TUNE + "claims: {margins: {6: 0}}\n",
        ["`claims.margins.6 > 0` must hold, but got 0", "(default 0.5)"],
    ),
    "claims_unknown_claim": (
        "fixed:\n  model.fusion: attn\n" + GOOD_TUNE + "claims: {margins: {7: 1.0}}\n",
        ["claims.margins: 7 is not a claim", "valid: 1, 2, 3, 4, 5, 6"],
    ),
}


def _run_cli(args: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "study/run.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    return proc, time.perf_counter() - t0


def _assert_one_line_exit_2(proc: subprocess.CompletedProcess, seconds: float) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Started a local Ray instance" not in out and "ray." not in out.lower(), out
    assert seconds < 10, f"took {seconds:.1f} s: the spec must fail before Ray starts"
    return lines[0]


@pytest.mark.integration
@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec_file_exits_2_with_one_line_before_ray(case, tmp_path):
    body, expected = BAD_SPECS[case]
    name = f"bad_{case}_{tmp_path.name}"
    path = tmp_path / f"{name}.yaml"
    path.write_text(HEADER.format(name=name) + body)
    proc, seconds = _run_cli(["--space", str(path)])
    line = _assert_one_line_exit_2(proc, seconds)
    for text in expected:
        assert text in line, line
    assert str(path) in line or path.name in line, f"the error must name the file: {line}"
    assert not (ROOT / "results" / name).exists(), "nothing may be written for a bad spec"


@pytest.mark.parametrize("where", ["fixed:\n  balance.alpha: 0.1\n",
                                   "search:\n  balance.alpha: {values: [0.1, 0.2]}\n"])
def test_a_spec_and_the_command_line_say_the_same_of_a_replaced_key(tmp_path, where):
    """One hint for an unknown key (``rollingq.config.unknown_key_hint``): a spec file that
    still names ``balance.alpha`` is told what replaced it, as ``--set balance.alpha=`` is."""
    path = tmp_path / "old.yaml"
    path.write_text(HEADER.format(name="old") + where + GOOD_TUNE)
    with pytest.raises(SpecError) as from_file:
        load_spec(str(path))
    with pytest.raises(SpecError) as from_set:
        load_spec("smoke", ["balance.alpha=0.1"])
    for e in (from_file, from_set):
        assert "it was replaced by balance.ogm_alpha (OGM, OGM-GE) or balance.pmr_alpha" in str(
            e.value), str(e.value)
        assert "valid keys" not in str(e.value)


@pytest.mark.integration
def test_malformed_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "malformed.yaml"
    path.write_text(HEADER.format(name="malformed")
                    + "fixed:\n  model.fusion: attn: oops\nseeds: [0]\n")  # line 4
    proc, seconds = _run_cli(["--space", str(path)])
    line = _assert_one_line_exit_2(proc, seconds)
    assert f"{path}:4: malformed YAML" in line, line


@pytest.mark.integration
def test_unknown_space_lists_the_available_ones():
    proc, seconds = _run_cli(["--space", "no_such_space"])
    line = _assert_one_line_exit_2(proc, seconds)
    assert "unknown space 'no_such_space'" in line
    assert all(name in line for name in available_spaces()), line


@pytest.mark.integration
def test_gpus_per_trial_above_one_is_refused():
    proc, seconds = _run_cli(["--space", "smoke", "--gpus-per-trial", "1.5"])
    line = _assert_one_line_exit_2(proc, seconds)
    assert "`0 <= --gpus-per-trial <= 1` must hold, but got 1.5" in line


@pytest.mark.integration
def test_bad_spec_never_imports_ray(tmp_path):
    """The exit happens before `import ray`, not merely before ray.init."""
    path = tmp_path / "bad.yaml"
    path.write_text(HEADER.format(name="bad") + BAD_SPECS["unknown_mode"][0])
    code = ("import sys; sys.path.insert(0, '.'); from study.run import main; "
            f"rc = main(['--space', {str(path)!r}]); print(rc, 'ray' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.stdout.split() == ["2", "False"], proc.stdout + proc.stderr


# --- --set overrides ---------------------------------------------------------------------------


def _tree(name: str) -> dict:
    return yaml.safe_load((SPACES_DIR / f"{name}.yaml").read_text())


def test_override_of_a_config_key_fixes_it_and_removes_it_from_the_search():
    tree = _tree("rotation_ablation")
    out = apply_overrides(tree, ["rollingq.max_rotations=2"])
    assert out["fixed"]["rollingq.max_rotations"] == 2
    assert "rollingq.max_rotations" not in out["search"]
    assert "rollingq.max_rotations" in tree["search"], "the input tree must not change"
    spec = load_spec("rotation_ablation", ["rollingq.max_rotations=2"])
    assert spec.expected_trials() == 2 * 5  # the rotation kinds, where a rotation is allowed
    vanilla = load_spec("rotation_ablation", ["rollingq.max_rotations=0"])
    assert vanilla.grid_points() == [{}] and vanilla.expected_trials() == 5


def test_override_of_spec_fields():
    out = apply_overrides(_tree("hpo"), ["tune.num_samples=8", "seeds=[3, 4]",
                                         "tune.resources.gpu=0.25"])
    assert out["tune"]["num_samples"] == 8 and out["seeds"] == [3, 4]
    assert out["tune"]["resources"] == {"cpu": 1, "gpu": 0.25}
    spec = load_spec("hpo", ["tune.num_samples=8", "tune.scheduler=fifo", "seeds=[3, 4]"])
    assert spec.expected_trials() == 16 and spec.seeds == [3, 4]


def test_override_of_the_claims_block_is_kept_in_the_merged_spec():
    """`--set claims.margins.6=1.0` replaces the Table 1 space's declared 0.5; the merged spec
    (space.yaml) carries the block, and a space that declares none gets the default family."""
    spec = load_spec("paper_table1", ["claims.margins.6=1.0", "claims.family=report"])
    assert spec.claims == {"family": "report", "margins": {6: 1.0}}
    assert load_spec("paper_table1").claims == {"family": "dataset", "margins": {6: 0.5}}
    tree = _tree("smoke")
    del tree["claims"]
    bare = parse_spec(tree, "smoke", "smoke.yaml")
    assert bare.to_dict()["claims"] == {"family": "dataset", "margins": {}}
    reloaded = parse_spec(yaml.safe_load(yaml.safe_dump(spec.to_dict())), "x", "space.yaml")
    assert reloaded.claims == spec.claims


def test_override_of_a_searched_parameter_field():
    spec = load_spec("beta_rho_sensitivity", ["search.rollingq.beta.values=[0, 0.1]"])
    assert _search(spec)["rollingq.beta"].grid_values() == [0, 0.1]
    assert spec.expected_trials() == 2 * 5 * 3


@pytest.mark.parametrize("override, message", [
    ("rollingq.betta=0.1", "not a config key nor a spec field"),
    ("search.rollingq.beta.vals=[0]", "expected search.<config key>.<field>"),
    ("rollingq.beta", "must look like key=value"),
    ("rollingq.beta=-1", "`beta >= 0` must hold"),
])
def test_bad_override_raises_spec_error(override, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        load_spec("beta_rho_sensitivity", [override])


# --- variants ------------------------------------------------------------------------------------

TABLE = {
    "concat": {"model.fusion": "concat", "rollingq.enabled": False},
    "attn": {"model.fusion": "attn", "rollingq.enabled": False},
    "attn_rollingq": {"model.fusion": "attn", "rollingq.enabled": True},
}


def _variant_tree(**extra) -> dict:
    tree = {"variants": {"role": "scientific", "values": copy.deepcopy(TABLE)},
            "seeds": [0, 1], "tune": {"mode": "grid"}}
    tree.update(extra)
    return tree


def test_variants_are_one_grid_axis_named_by_the_variant_parameter():
    spec = parse_spec(_variant_tree(search={"model.fusion_layers": {
        "role": "scientific", "type": "choice", "values": [1, 2]}}), "t", "t.yaml")
    assert spec.search[0].key == VARIANT and spec.variants == TABLE
    assert spec.expected_trials() == 3 * 2 * 2
    configs = spec.grid_configs()
    assert configs[0] == {VARIANT: "concat", "model.fusion_layers": 1, "train.seed": 0}
    assert apply_variant(configs[0], spec.variants) == {
        "model.fusion": "concat", "rollingq.enabled": False, "model.fusion_layers": 1,
        "train.seed": 0}
    tree = spec.to_dict()
    assert tree["variants"] == {"role": "scientific", "values": TABLE}
    assert VARIANT not in tree["search"]
    again = parse_spec(tree, "t", "space.yaml")
    assert again.grid_configs() == configs and again.variants == TABLE


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t["variants"]["values"].clear(), "`values` must be a non-empty mapping"),
    (lambda t: t["variants"].update(role="main"), "role='main' is not valid"),
    (lambda t: t["variants"].update(kind="x"), "unknown field 'kind'"),
    (lambda t: t["variants"]["values"]["attn"].update({"model.beta": 1}),
     "did you mean rollingq.beta"),
    (lambda t: t["variants"]["values"]["concat"].update({"rollingq.enabled": True}),
     r"joint \[cls\] attention over every modality when rollingq.enabled.*variants.concat"),
    (lambda t: t.update(fixed={"model.fusion": "attn"}),
     "model.fusion is set both in fixed and by variant 'concat'"),
    (lambda t: t.update(search={"rollingq.enabled": {
        "role": "scientific", "type": "choice", "values": [False, True]}}),
     "rollingq.enabled is set both in search"),
    (lambda t: t.update(search={"rollingq.beta": {
        "role": "scientific", "type": "choice", "values": [-1.0]}}), "`beta >= 0` must hold"),
])
def test_bad_variants_raise_spec_error(mutate, message):
    tree = _variant_tree()
    mutate(tree)
    with pytest.raises(SpecError, match=message):
        parse_spec(tree, "t", "t.yaml")


def test_a_set_of_a_key_the_variants_set_is_refused():
    with pytest.raises(SpecError, match="model.fusion is set both in fixed and by variant"):
        load_spec("paper_table1", ["model.fusion=attn"])


# --- the define-by-run Optuna space --------------------------------------------------------------

CONDITIONAL = {
    "rollingq.enabled": {"role": "scientific", "type": "choice", "values": [False, True]},
    "rollingq.rho": {"role": "nuisance", "type": "float", "low": 0.0, "high": 4.0,
                     "when": {"rollingq.enabled": True}},
    "optim.lr": {"role": "nuisance", "type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "train.batch_size": {"role": "nuisance", "type": "int", "low": 32, "high": 128, "step": 32},
}


def _conditional_spec():
    return parse_spec({"fixed": {"model.fusion": "attn"}, "search": copy.deepcopy(CONDITIONAL),
                       "tune": {"mode": "optuna", "num_samples": 10}}, "c", "c.yaml")


def test_optuna_space_with_fixed_trial_skips_a_parameter_whose_condition_fails():
    spec = _conditional_spec()
    space = OptunaSpace(spec.search, spec.fixed)
    off = optuna.trial.FixedTrial({"rollingq.enabled": False, "optim.lr": 1e-3,
                                   "train.batch_size": 64})
    space(off)  # rollingq.rho is not asked for: FixedTrial would raise if it were
    assert off.params == {"rollingq.enabled": False, "optim.lr": 1e-3, "train.batch_size": 64}
    on = optuna.trial.FixedTrial({"rollingq.enabled": True, "rollingq.rho": 2.0, "optim.lr": 1e-3,
                                  "train.batch_size": 64})
    space(on)
    assert on.params["rollingq.rho"] == 2.0
    with pytest.raises(ValueError, match="rollingq.rho"):  # asked for when enabled
        space(optuna.trial.FixedTrial({"rollingq.enabled": True, "optim.lr": 1e-3,
                                       "train.batch_size": 64}))


def test_optuna_space_in_a_real_study_draws_conditional_parameters_only_when_they_apply():
    spec = _conditional_spec()
    space = OptunaSpace(spec.search, spec.fixed)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda trial: (space(trial), 0.0)[1], n_trials=30)
    enabled = [t.params["rollingq.enabled"] for t in study.trials]
    assert True in enabled and False in enabled
    for t in study.trials:
        assert ("rollingq.rho" in t.params) == t.params["rollingq.enabled"]
        assert 1e-4 <= t.params["optim.lr"] <= 1e-2
        assert t.params["train.batch_size"] in (32, 64, 96, 128)
    assert spec.expected_trials() == 10


def test_optuna_space_sees_a_drawn_variants_values_in_conditions():
    spec = parse_spec({
        "variants": {"role": "scientific", "values": copy.deepcopy(TABLE)},
        "search": {"rollingq.beta": {"role": "nuisance", "type": "float", "low": 0.0,
                                     "high": 0.5, "when": {"rollingq.enabled": True}}},
        "tune": {"mode": "optuna", "num_samples": 4}}, "v", "v.yaml")
    space = OptunaSpace(spec.search, spec.fixed)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(lambda trial: (space(trial), 0.0)[1], n_trials=20)
    assert {t.params[VARIANT] for t in study.trials} == set(TABLE)
    for t in study.trials:
        assert ("rollingq.beta" in t.params) == (t.params[VARIANT] == "attn_rollingq")


# --- grids with conditional parameters --------------------------------------------------------

def test_a_grid_leaves_a_conditional_parameter_out_where_its_condition_fails():
    """The rotation kind exists only where a rotation is allowed: 0 rotations is one point,
    not one per kind, so vanilla trains once per seed."""
    spec = parse_spec({
        "fixed": {"model.fusion": "attn"}, "seeds": [0, 1],
        "search": {
            "rollingq.max_rotations": {"role": "scientific", "type": "choice",
                                       "values": [0, 1, 3]},
            "rollingq.rotation": {"role": "scientific", "type": "choice",
                                  "values": ["svd", "plane"],
                                  "when": {"rollingq.max_rotations": [1, 3]}}}},
        "g", "g.yaml")
    assert spec.grid_points() == [
        {"rollingq.max_rotations": 0},
        {"rollingq.max_rotations": 1, "rollingq.rotation": "svd"},
        {"rollingq.max_rotations": 1, "rollingq.rotation": "plane"},
        {"rollingq.max_rotations": 3, "rollingq.rotation": "svd"},
        {"rollingq.max_rotations": 3, "rollingq.rotation": "plane"}]
    assert spec.expected_trials() == len(spec.grid_configs()) == 5 * 2


def test_a_grid_condition_on_an_unknown_value_is_refused():
    with pytest.raises(SpecError, match="rollingq.max_rotations"):
        parse_spec({"fixed": {"model.fusion": "attn"}, "search": {
            "rollingq.max_rotations": {"role": "scientific", "type": "choice", "values": [0, 1]},
            "rollingq.rotation": {"role": "scientific", "type": "choice",
                                  "values": ["svd", "plane"],
                                  "when": {"rollingq.max_rotations": [1, 7]}}}}, "g", "g.yaml")


@pytest.mark.parametrize("path", GRID_FILES, ids=_ids(GRID_FILES))
def test_no_grid_space_trains_the_same_experiment_twice(path):
    """Two trials of one seed whose effective configurations (the keys that do nothing
    removed: the analysis's definition) are equal would train the same model twice."""
    from analysis.results import effective_config
    from study.trainable import arm

    spec = load_spec(path.stem)
    seen: dict[str, dict] = {}
    for config in _trial_configs(spec):
        values = {k: v for k, v in config.items() if k != "train.seed"}
        on = arm(build_config(overrides=values))["rollingq_on"]
        key = repr((config["train.seed"], sorted(effective_config(values, on).items())))
        assert key not in seen, (f"{path.name}: {config} trains the same experiment as "
                                 f"{seen[key]}")
        seen[key] = config


@pytest.mark.parametrize("value", [-1, "10", float("nan"), float("inf"), True])
def test_a_stall_limit_is_a_finite_number_of_minutes(value):
    """``tune.stall_minutes`` (study.stall): 0 (the default) is no limit, a positive number of
    minutes a limit; anything else is one line naming the key, the value and the rule."""
    tree = {"fixed": {"model.fusion": "attn"}, "tune": {"stall_minutes": 2.5}}
    assert parse_spec(tree, "t", "t.yaml").tune["stall_minutes"] == 2.5
    assert parse_spec({"fixed": {}}, "t", "t.yaml").tune["stall_minutes"] == 0
    tree["tune"]["stall_minutes"] = value
    with pytest.raises(SpecError, match=r"`tune.stall_minutes >= 0` must hold \(a finite number; "
                       rf"0: no limit\), but got {re.escape(repr(value))} \(t.yaml\)"):
        parse_spec(tree, "t", "t.yaml")
