"""CREMA-D: the exact on-disk format -> shapes, labels, splits, published audio, frame rules."""

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

from rollingq.data import load_data
from rollingq.data.cremad import CLASSES, SPEC_SHAPE, wav_spectrogram
from rollingq.data.frames import IMAGENET_MEAN, IMAGENET_STD
from tests.rollingq.data.fakes import EMOTIONS, config, grey, make_cremad, write_wav

SMALL = {"data.decode_size": 32, "data.frame_size": 32}  # frames are flat colours: size is moot


def grey_of(frames: torch.Tensor) -> torch.Tensor:
    """Normalised (..., 3, H, W) frames -> the grey level of each (mean of channel 0)."""
    return (frames[..., 0, :, :].mean((-1, -2)) * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255


def numpy_log_stft(wave: np.ndarray) -> np.ndarray:
    """METHOD.md §4 written independently: tile x3, cut to 3 s, clip, centred STFT, log."""
    x = np.clip(np.tile(wave, 3)[: 22050 * 3], -1, 1).astype(np.float64)
    x = np.pad(x, 256)  # centred, zero padding (librosa >= 0.10)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(512) / 512)  # periodic Hann
    n = 1 + (len(x) - 512) // 353
    frames = np.stack([x[i * 353 : i * 353 + 512] * window for i in range(n)], axis=1)
    return np.log(np.abs(np.fft.rfft(frames, axis=0)) + 1e-7)


def test_label_map_is_the_published_one():
    assert CLASSES == {"NEU": 0, "HAP": 1, "SAD": 2, "FEA": 3, "DIS": 4, "ANG": 5}


def test_shapes_labels_and_splits(tmp_path):
    rows = make_cremad(tmp_path, n_train=24, n_test=6)
    data = load_data(config("cremad", tmp_path).data)
    assert data.num_classes == 6
    assert data.specs["audio"].kind == "spectrogram" and data.specs["audio"].shape == (257, 188)
    assert data.specs["visual"].kind == "frames"
    assert data.specs["visual"].shape == (3, 3, 224, 224)
    assert (len(data.train), len(data.val), len(data.test)) == (18, 6, 6)  # val: 1 a class
    assert sorted(data.val.labels.tolist()) == list(range(6))
    # the CSV has a BOM and CRLF; labels follow the map, in file order
    want = [CLASSES[emo] for _, emo in rows["test"]]
    assert data.test.labels.tolist() == want
    assert sorted(data.train.labels.tolist() + data.val.labels.tolist()) == sorted(
        CLASSES[emo] for _, emo in rows["train"])
    b = data.train.take(torch.arange(4)).batch()
    assert b["audio"].shape == (4, 257, 188) and b["audio"].dtype == torch.float32
    assert b["visual"].shape == (4, 3, 3, 224, 224) and b["visual"].dtype == torch.float32


def test_audio_is_the_published_log_stft(tmp_path):
    path = tmp_path / "tone.wav"
    write_wav(path, seconds=1.6, rate=16_000, freq=1000.0)
    spec = wav_spectrogram(path)
    assert spec.shape == SPEC_SHAPE == (257, 188)
    # 22,050 Hz and n_fft 512: 1 kHz sits in bin 1000 / 22050 * 512 = 23.2
    assert int(np.median(spec.argmax(0))) == 23
    wave, rate = soundfile.read(path, dtype="float32")
    ref = numpy_log_stft(AF.resample(torch.from_numpy(wave), rate, 22050).numpy())
    assert ref.shape == spec.shape
    loud = ref > -4  # where the magnitude is well above float32 rounding of the FFT
    np.testing.assert_allclose(spec[loud], ref[loud], atol=5e-3)


def test_stereo_and_other_rates_are_read(tmp_path):
    write_wav(tmp_path / "a.wav", channels=2, rate=44_100)
    assert wav_spectrogram(tmp_path / "a.wav").shape == (257, 188)


def test_cached_audio_equals_the_direct_computation(tmp_path):
    rows = make_cremad(tmp_path, n_train=12, n_test=6)
    data = load_data(config("cremad", tmp_path, **{"data.val_fraction": 0.0}).data)
    first = wav_spectrogram(tmp_path / "AudioWAV" / f"{rows['train'][0][0]}.wav")
    cached = data.train.inputs["audio"][0].float().numpy()
    np.testing.assert_allclose(cached, first, atol=1e-2, rtol=2e-3)  # stored fp16


def test_eval_frames_are_fixed_centres_of_thirds(tmp_path):
    make_cremad(tmp_path, n_train=12, n_test=6, frames=(2, 3))
    data = load_data(config("cremad", tmp_path, **SMALL).data)
    got = grey_of(data.test.batch()["visual"]).round()  # (6, 3)
    two, three = [grey(0), grey(1), grey(1)], [grey(0), grey(1), grey(2)]
    want = torch.tensor([two if i % 2 == 0 else three for i in range(6)], dtype=torch.float)
    torch.testing.assert_close(got, want, atol=3, rtol=0)  # JPEG rounding
    torch.testing.assert_close(data.test.batch()["visual"], data.test.batch()["visual"])
    torch.testing.assert_close(data.val.batch()["visual"], data.val.batch()["visual"])


def test_train_frames_are_drawn_from_the_clip_sorted(tmp_path):
    make_cremad(tmp_path, n_train=12, n_test=6, frames=(2, 3))
    data = load_data(config("cremad", tmp_path, **SMALL, **{"data.val_fraction": 0.0}).data)
    torch.manual_seed(0)
    seen = set()
    for _ in range(10):
        g = grey_of(data.train.batch()["visual"])  # (12, 3)
        assert (g.diff(dim=1) >= -3).all(), "frames are sorted by time"
        for i, row in enumerate(g.round().tolist()):
            allowed = [grey(k) for k in range(2 if i % 2 == 0 else 3)]
            assert all(min(abs(v - a) for a in allowed) <= 3 for v in row)
            seen.update(round(v / 10) * 10 for v in row)
    assert seen == {30, 70, 110}


def test_balancebench_pt_audio(tmp_path):
    make_cremad(tmp_path, n_train=12, n_test=6, audio="pt")
    data = load_data(config("cremad", tmp_path, **{"data.val_fraction": 0.0}).data)
    assert data.specs["audio"].shape == (257, 188)
    assert data.train.inputs["audio"][:, 0, 0].float().tolist() == [float(i) for i in range(12)]


def test_one_modality(tmp_path):
    make_cremad(tmp_path)
    data = load_data(config("cremad", tmp_path, **{"data.modalities": "visual"}).data)
    assert list(data.specs) == ["visual"] and set(data.train.batch()) == {"visual"}


def test_smaller_frames_for_quick_runs(tmp_path):
    make_cremad(tmp_path)
    data = load_data(config("cremad", tmp_path, **{"data.frame_size": 32}).data)
    assert data.specs["visual"].shape == (3, 3, 32, 32)
    assert data.train.batch()["visual"].shape[-2:] == data.test.batch()["visual"].shape[-2:]


def test_emotions_cover_the_map():
    assert set(EMOTIONS) == set(CLASSES)
