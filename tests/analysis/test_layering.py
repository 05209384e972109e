"""The analysis stage reads files and nothing else (``analysis/__init__.py``):

1. Loading results folders and writing their report, old and new, imports neither Ray, torch,
   the training core nor the study driver, at call time as well as at import time (run in a
   subprocess, ``sys.modules`` read after the work); a planted ``import rollingq`` inside a
   function that ``load()`` calls is caught.
2. The study's ``design.json`` is what analysis reads: a folder with it reports without its
   ``space.yaml``, the same as a folder of an older driver that has only ``space.yaml``
   (``analysis.migrate``); a broken or foreign ``design.json`` is one line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from analysis import migrate
from analysis.design import DESIGN, Design, read
from analysis.results import ResultsError, load
from tests.analysis.studies import write_study

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
FORBIDDEN = ("ray", "torch", "rollingq", "study")


def imported(root: Path, folders: list[Path], out: Path | None) -> list[str]:
    """The forbidden top-level packages in ``sys.modules`` after ``load()`` of ``folders`` and
    (``out``) their report, run from the tree at ``root``."""
    code = ("import sys\n"
            "from pathlib import Path\n"
            "from analysis.report import generate\n"
            "from analysis.results import load\n"
            f"folders = [Path(p) for p in {[str(f) for f in folders]!r}]\n"
            "load(folders)\n"
            + (f"generate(folders, out=Path({str(out)!r}))\n" if out else "") +
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(FORBIDDEN)!r}))\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "PYTHONPATH": str(root),
                                         "MPLBACKEND": "Agg"})
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1].replace("'", '"'))


@pytest.fixture(scope="module")
def new_folder(tmp_path_factory) -> Path:
    """A planted study as today's driver writes it (``design.json``), its spec removed."""
    folder = write_study(tmp_path_factory.mktemp("layers"), name="layers",
                         search={"rollingq.enabled": {"values": [False, True]}},
                         effect=lambda p: 0.7 + 0.02 * p["rollingq.enabled"], seeds=(0, 1))
    (folder / "space.yaml").unlink()
    return folder


def test_loading_and_reporting_import_no_training_core_ray_or_torch(new_folder, tmp_path):
    folders = [new_folder, DATA / "smoke_finished"]  # today's files, and an older driver's
    assert imported(ROOT, folders, tmp_path) == []


def test_the_layer_check_catches_an_import_planted_where_load_calls(new_folder, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "analysis", tree / "analysis",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "rollingq").symlink_to(ROOT / "rollingq")
    path = tree / "analysis" / "migrate.py"
    source = path.read_text()
    head = ('    """An older folder\'s ``trials.csv`` with today\'s column names and bookkeeping '
            'columns."""\n')
    assert head in source
    path.write_text(source.replace(head, head + "    import rollingq.config  # planted\n"))
    assert imported(tree, [new_folder], None) == ["rollingq"]


def test_a_folder_with_its_design_reports_as_the_older_folder_with_only_its_spec(tmp_path):
    def study(root: Path, design: bool) -> Path:
        return write_study(root, name="same", seeds=(0, 1, 2), design=design,
                           search={"rollingq.beta": {"values": [0.1, 0.2]},
                                   "rollingq.max_rotations": {"values": [0, 1]}},
                           effect=lambda p: 0.7 + 0.03 * (p["rollingq.max_rotations"] > 0))

    new, old = study(tmp_path / "new", True), study(tmp_path / "old", False)
    (new / "space.yaml").unlink()
    assert not (old / DESIGN).exists()
    a, b = load([new]), load([old])
    assert a.designs == b.designs and a.designs[0].space == "same"
    assert [f.__dict__ for f in a.factors] == [f.__dict__ for f in b.factors]
    assert a.factors[0].levels == ["0.1", "0.2", "NA"]  # beta does nothing at 0 rotations
    same = ["study", "trial_dir"]  # where the folders are
    assert a.trials.drop(columns=same).equals(b.trials.drop(columns=same))
    assert a.notes == b.notes == []


def test_an_older_folder_gets_its_arm_from_the_defaults_of_its_time():
    res = load([DATA / "smoke_finished"])  # written before trials recorded their arm
    t = res.trials.set_index("rollingq.enabled")
    assert t.loc[False, "rollingq_on"] == False and t.loc[True, "rollingq_on"] == True  # noqa: E712
    assert t["rollingq_beta"].tolist() == [0.2, 0.2]  # the synthetic preset of the time
    assert res.designs[0].classes["synthetic"] == migrate.SYNTHETIC_CLASSES


@pytest.mark.parametrize("text,says", [
    ("{not json", "malformed JSON"),
    (json.dumps({"version": 99, "space": "x"}), "design version 99, this code reads version 1"),
    (json.dumps({"version": 1, "space": "x", "colour": "red"}), "not a study design"),
])
def test_a_broken_design_file_is_one_line(new_folder, tmp_path, text, says):
    folder = tmp_path / "study"
    shutil.copytree(new_folder, folder)
    (folder / DESIGN).write_text(text)
    with pytest.raises(ResultsError) as e:
        load([folder])
    assert says in str(e.value) and str(folder / DESIGN) in str(e.value)
    assert "\n" not in str(e.value)


def test_the_design_file_round_trips(new_folder):
    design = read(new_folder)
    assert isinstance(design, Design)
    assert Design.from_tree(json.loads(design.to_json())) == design
