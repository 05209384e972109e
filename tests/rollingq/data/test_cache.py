"""The decode-once cache: reuse, rebuilds of broken entries, and two processes at once."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from rollingq.data import cache, load_data
from rollingq.data.__main__ import main as data_main
from rollingq.data.clips import DataError
from tests.rollingq.data.fakes import config, make_cremad

REPO = Path(__file__).resolve().parents[3]


def entries(cache_dir: Path) -> list[Path]:
    return sorted(p for p in cache_dir.iterdir() if p.is_dir())


def test_a_second_load_decodes_nothing(tmp_path, private_cache):
    make_cremad(tmp_path)
    cfg = config("cremad", tmp_path).data
    first = load_data(cfg)
    assert cache.STATS["samples_decoded"] == 18 and cache.STATS["builds"] == 1
    (entry,) = entries(private_cache)
    mtimes = {f.name: f.stat().st_mtime_ns for f in entry.iterdir()}
    second = load_data(cfg)
    assert cache.STATS["samples_decoded"] == 18 and cache.STATS["builds"] == 1
    assert cache.STATS["reuses"] == 1
    assert {f.name: f.stat().st_mtime_ns for f in entry.iterdir()} == mtimes
    torch.testing.assert_close(first.test.batch(), second.test.batch())
    manifest = json.loads((entry / "manifest.json").read_text())
    assert manifest["version"] == cache.CACHE_VERSION and entry.name.startswith("cremad-")
    assert manifest["files"]["train_visual"]["dtype"] == "uint8"
    assert manifest["files"]["train_audio"]["dtype"] == "float16"


def test_other_settings_get_their_own_entry(tmp_path, private_cache):
    make_cremad(tmp_path)
    load_data(config("cremad", tmp_path).data)
    small = load_data(config("cremad", tmp_path, **{"data.decode_size": 64}).data)
    assert len(entries(private_cache)) == 2 and cache.STATS["builds"] == 2
    assert small.test.inputs["visual"].shape[-2:] == (64, 64)
    # the model-side frame size is a transform setting, not a cache key
    load_data(config("cremad", tmp_path, **{"data.frame_size": 32}).data)
    assert cache.STATS["builds"] == 2


@pytest.mark.parametrize("damage", ["truncate", "no_manifest", "wrong_header"])
def test_a_broken_entry_is_rebuilt(tmp_path, private_cache, damage, caplog):
    make_cremad(tmp_path)
    cfg = config("cremad", tmp_path).data
    before = load_data(cfg).test.batch()
    (entry,) = entries(private_cache)
    target = entry / "test_visual.npy"
    if damage == "truncate":
        with target.open("r+b") as f:
            f.truncate(target.stat().st_size // 2)
    elif damage == "no_manifest":
        (entry / "manifest.json").unlink()
    else:
        target.write_bytes(b"\x93NUMPY garbage" + b"\0" * (target.stat().st_size - 14))
    after = load_data(cfg).test.batch()
    assert cache.STATS["builds"] == 2 and cache.STATS["samples_decoded"] == 36
    assert "rebuilding cache entry" in caplog.text
    torch.testing.assert_close(before, after)
    assert entries(private_cache) == [entry]


def test_a_failed_build_leaves_no_entry_and_stale_builds_are_cleared(tmp_path, private_cache):
    rows = make_cremad(tmp_path)
    jpg = next((tmp_path / "Image-01-FPS" / rows["test"][0][0]).iterdir())
    good = jpg.read_bytes()
    jpg.write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DataError, match=f"cannot decode JPEG {jpg}"):
        load_data(config("cremad", tmp_path).data)
    assert entries(private_cache) == []
    jpg.write_bytes(good)
    (private_cache / "cremad-0123.tmp-1-dead").mkdir()  # another recipe's: left alone
    load_data(config("cremad", tmp_path).data)
    (entry,) = [p for p in entries(private_cache) if ".tmp-" not in p.name]
    stale = private_cache / f"{entry.name}.tmp-99999-beef"
    stale.mkdir()
    (stale / "train_audio.npy").write_bytes(b"half")
    load_data(config("cremad", tmp_path, **{"data.on_missing": "error"}).data)  # reuse
    assert stale.exists(), "a reader never touches a build in progress"
    data_main(["prepare", "--data.name", "cremad", "--data.root", str(tmp_path), "--force",
               "--quiet"])
    assert not stale.exists(), "a builder (holding the lock) clears dead builds"


def test_prepare_cli_and_verify(tmp_path, private_cache, capsys):
    make_cremad(tmp_path)
    argv = ["prepare", "--data.name", "cremad", f"--data.root={tmp_path}", "--quiet"]
    assert data_main(argv) == 0
    assert "cremad: built" in capsys.readouterr().out
    assert data_main([*argv, "--data.decode_size", "224"]) == 0
    assert "cremad: reused" in capsys.readouterr().out
    (entry,) = entries(private_cache)
    audio = entry / "train_audio.npy"
    raw = bytearray(audio.read_bytes())
    raw[-100] ^= 0xFF  # same size: only the checksum sees it
    audio.write_bytes(bytes(raw))
    assert data_main([*argv, "--verify"]) == 0
    out = capsys.readouterr()
    assert "checksum mismatch" in out.err and "cremad: built" in out.out
    assert data_main(["prepare", "--data.name", "synthetic"]) == 2
    assert "needs no preparing" in capsys.readouterr().err
    assert data_main(["prepare", "--data.name", "cremad", "--data.root", "/nonexistent"]) == 2
    assert "does not exist" in capsys.readouterr().err


SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    import rollingq.data.clips as clips
    from rollingq.config import build_config
    from rollingq.data import cache, cremad

    decode = clips.decode_frame
    def slow(path, size):  # a slow decoder, so the two builds would overlap without the lock
        time.sleep(0.02)
        return decode(path, size)
    clips.decode_frame = slow
    barrier = Path(sys.argv[2])
    (barrier / f"ready-{os.getpid()}").touch()
    while len(list(barrier.glob("ready-*"))) < 2:
        time.sleep(0.005)
    cfg = build_config(overrides={"data.name": "cremad", "data.root": sys.argv[1]}).data
    entry = cremad.prepare(cfg, progress=False)
    print(json.dumps({"built": entry.built, "decoded": cache.STATS["samples_decoded"],
                      "path": str(entry.path)}))
""")


@pytest.mark.integration
def test_two_processes_preparing_at_once_decode_once(tmp_path, private_cache):
    make_cremad(tmp_path / "data")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "ROLLINGQ_CACHE": str(private_cache), "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path / "data"),
                               str(barrier)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["built"] for r in results) == [False, True]
    assert sorted(r["decoded"] for r in results) == [0, 18]
    assert results[0]["path"] == results[1]["path"]
    (entry,) = entries(private_cache)
    assert cache.verify(cache.Entry(entry, {}, {})) == []
    assert len(load_data(config("cremad", tmp_path / "data").data).test) == 6
    assert cache.STATS["builds"] == 0
