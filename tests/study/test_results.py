"""Result files on remote storage: the study folder is copied next to Ray's experiment folder."""

from study.storage import publish


def test_publish_copies_the_study_folder_to_a_storage_uri(tmp_path):
    folder = tmp_path / "local" / "20260101-000000"
    (folder / "figures").mkdir(parents=True)
    for name, text in {"trials.csv": "trial_id\na\n", "meta.json": "{}\n", "space.yaml": "x: 1\n",
                       "figures/air.png": "png"}.items():
        (folder / name).write_text(text)
    remote = tmp_path / "bucket" / "studies" / "smoke" / "run"
    publish(folder, f"file://{remote}")
    copied = sorted(p.relative_to(remote).as_posix() for p in remote.rglob("*") if p.is_file())
    assert copied == ["figures/air.png", "meta.json", "space.yaml", "trials.csv"]
    assert (remote / "trials.csv").read_text() == "trial_id\na\n"
