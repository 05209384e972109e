"""bench/gpu.sh's CPU fallback: every check runs at small shapes or says SKIP, none crashes, and
each writes its log; a check that crashes or hangs is a FAIL line, not a crashed run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import gpu_checks  # noqa: E402

LINE = re.compile(r"^(PASS|WARN|FAIL|SKIP|INFO) (\w+): (.+)$")


@pytest.mark.integration
def test_the_gpu_run_falls_back_to_the_cpu_without_a_crash(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "",  # a CPU run even on a GPU machine
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    p = subprocess.run(["bash", "bench/gpu.sh", str(tmp_path)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    lines = [LINE.match(ln) for ln in p.stdout.splitlines()[:-1]]
    assert all(lines), p.stdout
    status = {m[2]: m[1] for m in lines}
    expected = {n for n in gpu_checks.CHECKS if n != "resume"} | {
        f"resume_{b}" for b in gpu_checks.BALANCERS}
    assert set(status) == expected, p.stdout
    cuda_only = {n for n, (_, needs, _) in gpu_checks.CHECKS.items() if needs}
    assert {n for n, s in status.items() if s == "SKIP"} == cuda_only
    assert {s for n, s in status.items() if n not in cuda_only} <= {"PASS", "INFO"}, p.stdout
    assert re.fullmatch(r"cpu: 7 PASS, 6 SKIP, 1 INFO in \d+ s", p.stdout.splitlines()[-1])
    assert sorted(f.stem for f in tmp_path.glob("*.log")) == sorted(
        n for n in gpu_checks.CHECKS if n not in cuda_only)


def test_a_check_that_crashes_or_hangs_is_one_fail_line(tmp_path, monkeypatch, capsys):
    """The runner's own handling, with the child process replaced by a command that crashes
    and one that sleeps past its limit."""
    script = tmp_path / "child.py"
    monkeypatch.setitem(gpu_checks.CHECKS, "env", (gpu_checks.env, False, 2))
    monkeypatch.setitem(gpu_checks.CHECKS, "rotation", (gpu_checks.rotation, False, 2))
    real = subprocess.run

    def child(cmd, **kw):  # the check's process, made to crash or hang
        name = cmd[cmd.index("--one") + 1]
        body = "raise SystemExit('boom')" if name == "env" else "import time; time.sleep(30)"
        script.write_text(body)
        return real([sys.executable, str(script)], **kw)

    monkeypatch.setattr(gpu_checks.subprocess, "run", child)
    results = gpu_checks.run_all(tmp_path, "cpu", ["env", "rotation"], budget=60)
    assert [r[0] for r in results] == ["FAIL", "FAIL"]
    assert results[0][2].startswith("exit 1 without a result: boom")
    assert results[1][2].startswith("cut after 2 s (hung or too slow")
    assert "FAIL env: exit 1" in capsys.readouterr().out
