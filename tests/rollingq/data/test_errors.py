"""Every data error names what is wrong, how many samples it affects and where."""

import logging
import re

import numpy as np
import pytest
import torch

from rollingq.config import ConfigError
from rollingq.data import load_data
from rollingq.data.clips import DataError
from tests.rollingq.data.fakes import config, make_cremad, make_ks, write_wav


def load(name, root, **kw):
    return load_data(config(name, root, **kw).data)


def test_missing_root_and_split_lists(tmp_path):
    with pytest.raises(DataError, match=r"cremad: data.root='.*nowhere' does not exist .* "
                                        r"should hold train.csv, test.csv"):
        load("cremad", tmp_path / "nowhere")
    make_cremad(tmp_path)
    (tmp_path / "test.csv").unlink()
    with pytest.raises(DataError, match=f"the test split list {tmp_path / 'test.csv'} does not "
                                        "exist, so no test sample can be loaded; set "
                                        "data.test_list"):
        load("cremad", tmp_path)
    with pytest.raises(DataError, match="kinetics_sounds: the train split list .*"
                                        "ks_train_overlap.txt does not exist"):
        load("kinetics_sounds", tmp_path)


def test_missing_files_one_error_with_counts_and_first_paths(tmp_path):
    rows = make_cremad(tmp_path)  # 12 train + 6 test
    gone = [rows["train"][i][0] for i in (0, 2, 4, 6, 8)]
    for clip in gone:
        (tmp_path / "AudioWAV" / f"{clip}.wav").unlink()
    frames = tmp_path / "Image-01-FPS" / rows["test"][1][0]
    for f in frames.iterdir():
        f.unlink()
    frames.rmdir()
    with pytest.raises(DataError) as err:
        load("cremad", tmp_path)
    msg = str(err.value)
    assert "cremad: 6 of 18 samples have missing files" in msg
    first = [str(tmp_path / "AudioWAV" / f"{c}.wav") for c in gone[:3]]
    assert f"5 audio files (.wav): {', '.join(first)} and 2 more" in msg
    assert f"1 frame folders: {frames}" in msg
    assert "data.on_missing=skip" in msg and "data.audio_dir" in msg


def test_skip_drops_reports_and_lists_ids(tmp_path, caplog):
    rows = make_cremad(tmp_path, n_train=24)
    gone = rows["train"][3][0]
    (tmp_path / "AudioWAV" / f"{gone}.wav").unlink()
    with caplog.at_level(logging.WARNING):
        data = load("cremad", tmp_path, **{"data.on_missing": "skip"})
    assert len(data.train) + len(data.val) == 23 and len(data.test) == 6
    assert "data.on_missing=skip drops 1 of 30 samples" in caplog.text
    path = re.search(r"ids and reasons: (\S+dropped.tsv)", caplog.text).group(1)
    lines = open(path).read().splitlines()
    assert lines[0] == "split\tid\treason" and lines[1].startswith(f"train\t{gone}\tmissing audio")


def test_a_whole_missing_folder_is_named(tmp_path):
    make_cremad(tmp_path)
    with pytest.raises(DataError, match=r"18 audio files \(.wav\) \(folder .*elsewhere does not "
                                        r"exist\)"):
        load("cremad", tmp_path, **{"data.audio_dir": str(tmp_path / "elsewhere")})


def test_unreadable_or_wrong_files_name_the_file(tmp_path):
    rows = make_cremad(tmp_path)
    wav = tmp_path / "AudioWAV" / f"{rows['train'][1][0]}.wav"
    wav.write_bytes(b"RIFF....WAVEfmt garbage")
    with pytest.raises(DataError, match=f"cannot read WAV {wav}"):
        load("cremad", tmp_path)
    write_wav(wav, seconds=0.3)
    with pytest.raises(DataError, match=f"WAV {wav} lasts 0.30 s; three copies must cover 3 s"):
        load("cremad", tmp_path)
    write_wav(wav)
    jpg = sorted((tmp_path / "Image-01-FPS" / rows["train"][2][0]).iterdir())[0]
    jpg.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(DataError, match=f"cannot decode JPEG {jpg}"):
        load("cremad", tmp_path)


def test_unknown_labels_name_the_line(tmp_path):
    make_cremad(tmp_path)
    text = (tmp_path / "train.csv").read_text(encoding="utf-8-sig").splitlines()
    text[2] = text[2].split(",")[0] + ",XYZ"
    (tmp_path / "train.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(DataError, match=r"train.csv line 3: unknown emotion 'XYZ' for clip "
                                        r"'1003_DFA_SAD_XX'; valid: NEU, HAP, SAD, FEA, DIS, ANG"):
        load("cremad", tmp_path)
    make_ks(tmp_path / "ks")
    lst = tmp_path / "ks" / "ks_test_overlap.txt"
    lst.write_text(lst.read_text() + "clipx 31\n")
    with pytest.raises(DataError, match=r"ks_test_overlap.txt line 4: expected '<id> ... "
                                        r"<label>' with an integer label in \[0, 31\), got "
                                        r"'clipx 31'"):
        load("kinetics_sounds", tmp_path / "ks")


def test_balancebench_pt_errors(tmp_path):
    rows = make_cremad(tmp_path, audio="pt")
    pt = tmp_path / "AudioWAV" / f"{rows['train'][4][0]}.pt"
    torch.save(torch.zeros(2, 3, 4), pt)
    with pytest.raises(DataError, match=rf"{pt}: expected a 2-D spectrogram tensor, got "
                                        r"shape \(2, 3, 4\)"):
        load("cremad", tmp_path)
    torch.save(torch.zeros(257, 100), pt)
    with pytest.raises(DataError, match=rf"{pt}: audio of shape \(257, 100\), expected "
                                        r"\(257, 188\)"):
        load("cremad", tmp_path)
    pt.write_bytes(b"junk")
    with pytest.raises(DataError, match=f"cannot read {pt}"):
        load("cremad", tmp_path)


def test_kinetics_file_errors(tmp_path):
    make_ks(tmp_path)
    npy = tmp_path / "train_spec" / "train_clip01.npy"
    np.save(npy, np.zeros((1000, 128), np.float32))
    with pytest.raises(DataError, match=rf"{npy}: expected a \(1024, 128\) float fbank array, "
                                        r"got float32 \(1000, 128\)"):
        load("kinetics_sounds", tmp_path)
    npy.write_bytes(b"junk")
    with pytest.raises(DataError, match=f"cannot read {npy}"):
        load("kinetics_sounds", tmp_path)
    np.save(npy, np.zeros((1, 1024, 128), np.float32))  # a leading 1 is fine
    frame = tmp_path / "train-frames-1fps/train/train_clip00/frame_00005.jpg"
    frame.unlink()
    with pytest.raises(DataError, match=rf"1 frame files: {frame}"):
        load("kinetics_sounds", tmp_path)
    data = load("kinetics_sounds", tmp_path, **{"data.on_missing": "skip"})
    assert len(data.train) + len(data.val) == 4


def test_config_rules():
    with pytest.raises(ConfigError, match="data.on_missing='drop' is not a valid choice"):
        config("cremad", "/x", **{"data.on_missing": "drop"})
    with pytest.raises(ConfigError, match=r"`data.root != ''` must hold.*cremad data set reads"):
        config("cremad", "")
    with pytest.raises(ConfigError, match="data.audio_format='mp3' is not a valid choice"):
        config("cremad", "/x", **{"data.audio_format": "mp3"})
    with pytest.raises(ConfigError, match="frame_size >= model.patch_size"):
        config("cremad", "/x", **{"data.frame_size": 8})


def test_a_modality_the_data_set_lacks(tmp_path):
    make_cremad(tmp_path)
    with pytest.raises(DataError, match="cremad has no modality text .*; it has: audio, visual"):
        load("cremad", tmp_path, **{"data.modalities": "audio,text"})


def test_empty_folders_lists_and_splits(tmp_path):
    rows = make_cremad(tmp_path)
    folder = tmp_path / "Image-01-FPS" / rows["train"][5][0]
    for f in folder.iterdir():
        f.unlink()
    with pytest.raises(DataError, match=f"1 frame folders without .jpg files: {folder}"):
        load("cremad", tmp_path)
    (tmp_path / "test.csv").write_text("\r\n")
    with pytest.raises(DataError, match="the test split list .*test.csv lists no clips"):
        load("cremad", tmp_path)
    (tmp_path / "test.csv").write_text(f"{rows['test'][0][0]},ANG\n")
    (tmp_path / "AudioWAV" / f"{rows['test'][0][0]}.wav").unlink()
    with pytest.raises(DataError, match="cremad: no test samples are left after dropping"):
        load("cremad", tmp_path, **{"data.on_missing": "skip"})
