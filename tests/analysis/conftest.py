"""Results folders with planted effects, built once per test session (they are read-only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.analysis.studies import write_study

# β lowers the accuracy by 10 points from 0 to 0.3 (strong, negative); ρ does nothing;
# max_rotations = 3 adds 3 points over 1 and 2 (the pairs Tukey must find). Every cap rotates,
# so β and ρ act in every trial (a crossed grid, no structural copies).
PLANTED_SEARCH = {
    "rollingq.beta": {"role": "scientific", "type": "choice", "values": [0.0, 0.1, 0.3]},
    "rollingq.rho": {"role": "scientific", "type": "choice", "values": [0.5, 1.0, 2.0]},
    "rollingq.max_rotations": {"role": "scientific", "type": "choice", "values": [1, 2, 3]},
}


def planted_effect(p: dict) -> float:
    return 0.70 - 0.10 * p["rollingq.beta"] / 0.3 + (0.03 if p["rollingq.max_rotations"] == 3
                                                      else 0.0)


# The old rotation_ablation layout: vanilla (0 rotations) crossed with the rotation kind, so
# each seed trains vanilla twice (a structural copy); more rotations help.
ABLATION_SEARCH = {
    "rollingq.max_rotations": {"role": "scientific", "type": "choice", "values": [0, 1, 2]},
    "rollingq.rotation": {"role": "scientific", "type": "choice", "values": ["svd", "plane"]},
}


def ablation_effect(p: dict) -> float:
    return 0.60 + 0.02 * min(p["rollingq.max_rotations"], 1)


@pytest.fixture(scope="session")
def planted(tmp_path_factory):
    """A 3 × 3 × 3 grid × 3 seeds with one errored, one diverged and one incomplete trial."""
    return write_study(tmp_path_factory.mktemp("planted"), search=PLANTED_SEARCH,
                       effect=planted_effect, statuses={0: "errored", 5: "diverged",
                                                        7: "incomplete"})


@pytest.fixture(scope="session")
def ablation(tmp_path_factory):
    """A rotation-ablation grid (3 × 2 × 3 seeds), complete."""
    return write_study(tmp_path_factory.mktemp("ablation"), name="rotation_ablation",
                       search=ABLATION_SEARCH, effect=ablation_effect)


OPTUNA_SEARCH = {
    "rollingq.beta": {"role": "scientific", "type": "float", "low": 0.0, "high": 0.5},
    "rollingq.rho": {"role": "scientific", "type": "float", "low": 0.1, "high": 10.0,
                     "log": True},
    "rollingq.rotation": {"role": "scientific", "type": "choice", "values": ["svd", "plane"]},
    "optim.lr": {"role": "nuisance", "type": "float", "low": 1e-4, "high": 1e-2, "log": True},
}


@pytest.fixture(scope="session")
def optuna_study(tmp_path_factory):
    """An Optuna + ASHA study of 48 configurations where only β matters; 6 stopped by ASHA, one
    errored; a real optuna.journal beside it."""
    rng = np.random.default_rng(1)
    configs = [{"rollingq.beta": float(rng.uniform(0, 0.5)),
                "rollingq.rho": float(np.exp(rng.uniform(np.log(0.1), np.log(10)))),
                "rollingq.rotation": str(rng.choice(["svd", "plane"])),
                "optim.lr": float(np.exp(rng.uniform(np.log(1e-4), np.log(1e-2))))}
               for _ in range(48)]
    statuses = {i: "stopped" for i in (3, 9, 15, 21, 27, 33)} | {40: "errored"}
    return write_study(tmp_path_factory.mktemp("optuna"), name="hpo", search=OPTUNA_SEARCH,
                       effect=lambda p: 0.5 + 0.4 * p["rollingq.beta"], seeds=(0,),
                       mode="optuna", scheduler="asha", configs=configs, statuses=statuses,
                       noise_sd=0.01, journal=True)


PAPER_SEARCH = {
    "rollingq.enabled": {"role": "scientific", "type": "choice", "values": [False, True]},
    "model.fusion_layers": {"role": "scientific", "type": "choice", "values": [1, 2]},
}


@pytest.fixture(scope="session")
def paper_studies(tmp_path_factory):
    """The same study on CREMA-D and Kinetics-Sounds, two results folders."""
    root = tmp_path_factory.mktemp("paper")
    out = []
    for i, (ds, base) in enumerate((("cremad", 0.49), ("kinetics_sounds", 0.67))):
        out.append(write_study(
            root, name="fusion", timestamp=f"2026010{i + 1}-000000", search=PAPER_SEARCH,
            fixed={"model.fusion": "attn", "data.name": ds}, seeds=(0, 1, 2), rng_seed=i,
            effect=lambda p, b=base: b + 0.02 * p["rollingq.enabled"]
            + 0.01 * (p["model.fusion_layers"] - 1)))
    return out


@pytest.fixture(scope="session")
def paper_report(paper_studies, tmp_path_factory):
    """The richest report (two data sets, the paper's tables, every figure): report.html."""
    from analysis.report import generate

    return generate(paper_studies, out=tmp_path_factory.mktemp("paper_report"))


# The reports as data (analysis.report.sections), built once: test_report_sections.py reads
# their numbers, test_report_words.py their words.
DATA = Path(__file__).parent / "data"


def _sections(dirs, tmp_path_factory, name):
    from analysis.report import sections

    return sections(list(dirs), out=tmp_path_factory.mktemp(name))


@pytest.fixture(scope="session")
def planted_sections(planted, tmp_path_factory):
    return _sections([planted], tmp_path_factory, "planted_sections")


@pytest.fixture(scope="session")
def optuna_sections(optuna_study, tmp_path_factory):
    return _sections([optuna_study], tmp_path_factory, "optuna_sections")


@pytest.fixture(scope="session")
def smoke_sections(tmp_path_factory):
    """The driver's real output of a finished two-trial smoke study."""
    return _sections([DATA / "smoke_finished"], tmp_path_factory, "smoke_sections")


@pytest.fixture(scope="session")
def interrupted_sections(tmp_path_factory):
    """The driver's real output of an interrupted smoke study: two incomplete trials and an
    empty curves.csv."""
    return _sections([DATA / "smoke_interrupted"], tmp_path_factory, "interrupted_sections")


@pytest.fixture(scope="session")
def ablation_sections(ablation, tmp_path_factory):
    return _sections([ablation], tmp_path_factory, "ablation_sections")
