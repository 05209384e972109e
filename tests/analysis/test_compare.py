"""``python -m analysis.compare A B`` on two real smoke studies (the study driver's output,
checked in): one before and one with ``data.test_size=300``, the one key that differs."""

from __future__ import annotations

from pathlib import Path

from analysis import claims, compare
from analysis.results import load

DATA = Path(__file__).parent / "data"
A, B = DATA / "smoke_finished", DATA / "smoke_test_size_300"


def test_two_smoke_studies_differing_in_one_key(tmp_path, capsys):
    assert compare.main([str(A), str(B), "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == f"comparison: {tmp_path / 'compare.md'}"
    md = (tmp_path / "compare.md").read_text()
    assert (tmp_path / "compare.html").read_text().startswith("<!DOCTYPE html>")
    assert "| fixed data.test_size | 200 | 300 |" in md
    assert md.count("| fixed ") == 1  # the one key that differs
    before = {j.claim.number: j.verdict for j in claims.judge(load([A]))}
    after = {j.claim.number: j.verdict for j in claims.judge(load([B]))}
    for number in range(1, 7):
        flag = "**changed**" if before[number] != after[number] else ""
        assert f"| ({number}) | synthetic | {before[number]} |" in md
        assert md.split(f"| ({number}) | synthetic |")[1].split("\n")[0].endswith(f"| {flag} |")
    for variant in ("False", "True"):
        assert f"| synthetic | {variant} | 1 |" in md
    assert "no interval: fewer than two seeds" in md  # one seed each


def test_studies_that_share_no_variant_exit_2_with_one_line(tmp_path, capsys):
    """The interrupted smoke study finished no trial: nothing to compare."""
    assert compare.main([str(A), str(DATA / "smoke_interrupted"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "share no variant on any data set" in err, err
    assert not (tmp_path / "compare.md").exists()
    assert compare.main([str(A), str(tmp_path / "missing")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
