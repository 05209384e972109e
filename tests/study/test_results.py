"""Result files: the study folder copied next to Ray's experiment folder on remote storage, and
a trial's status read from Ray's record and its ledger."""

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


def test_a_timed_out_trial_is_timed_out_whatever_ray_calls_it():
    """The ledger the stall limit wrote decides (``study.stall``): with its retries spent Ray
    records the killed trial as an error, with one left the retry replays the ledger and Ray
    records it as ended; an errored or finished trial without that ledger stays what it is."""
    from ray.tune.experiment import Trial

    from study.results import _error, _status
    from study.stall import timed_out_record

    ledger = timed_out_record({"epoch": 3, "val_acc": 0.8, "time_total_s": 9.0, "pid": 1}, 61.4)
    assert ledger == {"epoch": 3, "val_acc": 0.8, "final": True, "status": "timed_out",
                      "timed_out_after_s": 61.4}
    for ray_status, last in ((Trial.ERROR, {"epoch": 3}), (Trial.TERMINATED, ledger)):
        trial = Trial("train_trial", config={}, stub=True)
        trial.set_status(ray_status)
        assert _status(trial, last, False, ledger) == "timed_out"
        assert _error(trial, "timed_out", ledger) == "timed out: no epoch reported for 61 s"
    errored = Trial("train_trial", config={}, stub=True)
    errored.set_status(Trial.ERROR)
    assert _status(errored, {"epoch": 3}, False, None) == "errored"
    finished = Trial("train_trial", config={}, stub=True)
    finished.set_status(Trial.TERMINATED)
    done = {"final": True, "status": "finished"}
    assert _status(finished, done, False, done) == "finished"
