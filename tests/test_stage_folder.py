"""The one stage skeleton (`StageFolder`: check → claim → result.json last) and the run folder's
named paths (`RunLayout`)."""

import json

import pytest

from elasticlm.errors import ElasticLMError
from elasticlm.run_layout import RunLayout
from elasticlm.stage_folder import StageFolder, first_difference, input_path


class Recorder:
    """A stand-in for `Dist`: main or not, counting barriers."""

    def __init__(self, main: bool = True):
        self.main, self.barriers = main, 0

    def barrier(self) -> None:
        self.barriers += 1


def test_free_folder_is_claimed_then_finished_atomically(tmp_path):
    out = tmp_path / "stage"
    folder = StageFolder(out, "search", {"seed": 0})
    assert folder.done() is None and not out.exists()  # checking touches nothing
    dist = Recorder()
    folder.claim(dist)
    assert json.loads((out / "run_config.json").read_text()) == {"stage": "search", "config": {"seed": 0}}
    assert dist.barriers == 1
    assert folder.done() is None  # claimed, unfinished: resumed
    result = {"stage": "search", "best": 0.5}
    assert folder.finish(result, dist) == result
    assert (out / "result.json").read_text() == json.dumps(result, indent=2) + "\n"
    assert sorted(p.name for p in out.iterdir()) == ["result.json", "run_config.json"]  # no temporary left
    assert StageFolder(out, "search", {"seed": 0}).done() == result  # finished: skipped


def test_another_config_or_a_foreign_folder_is_refused(tmp_path):
    out = tmp_path / "stage"
    StageFolder(out, "heads", {"eta": 0.9}).claim()
    with pytest.raises(ElasticLMError, match=r"holds a heads run made with another config \(config.eta: 0.9 there, "
                                             r"0.5 now\)") as err:
        StageFolder(out, "heads", {"eta": 0.5}).done()
    assert "\n" not in str(err.value)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ElasticLMError, match="is not empty and holds no elasticlm retrain run"):
        StageFolder(foreign, "retrain", {}).done()


def test_only_the_main_process_writes(tmp_path):
    out = tmp_path / "stage"
    folder = StageFolder(out, "pretrain", {})
    other = Recorder(main=False)
    folder.claim(other)
    folder.finish({"stage": "pretrain"}, other)
    assert other.barriers == 1 and not out.exists()


def test_input_paths_are_relative_and_differences_are_named(tmp_path):
    assert input_path(tmp_path / "run" / "supernet-ft", tmp_path / "run" / "search") == "../supernet-ft"
    assert first_difference({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}}) == "a.c: 2 there, 3 now"


def test_run_layout_names_the_run_folder(tmp_path):
    run = RunLayout(tmp_path)
    assert run.supernet == tmp_path / "supernet" and run.supernet_ft == tmp_path / "supernet-ft"
    assert run.done(run.search) == tmp_path / "search" / "result.json"
    assert run.model("found") == tmp_path / "models" / "found"
    assert run.model("found", 2) == tmp_path / "models" / "found" / "seed-2"
    assert run.path_pretrain("found", 2) == tmp_path / "pretrain" / "found" / "seed-2"
    assert run.model_latency("found") == tmp_path / "models" / "found" / "latency.json"
    assert [run.run_config.name, run.arch.name, run.metrics.name, run.timings.name, run.report.name] == [
        "run_config.json", "arch.json", "metrics.json", "timings.json", "report.md"]
    assert RunLayout().heads / "heads.json" == RunLayout("").heads / "heads.json"  # relative to the run folder
    assert (RunLayout().teacher_latency.as_posix(), RunLayout().tfidf.as_posix(), RunLayout().export.as_posix(),
            RunLayout().report_figures.as_posix()) == ("models/teacher-latency.json", "tfidf", "export", "report")


def test_execution_only_and_later_added_keys_do_not_make_another_run(tmp_path):
    from elasticlm.stage_folder import same_config

    old = {"stage": "retrain", "config": {"seed": 0, "retrain": {"train": {"lr": 1e-4}, "augment": 2}}}
    new = {"stage": "retrain", "config": {"seed": 0, "retrain": {"train": {"lr": 1e-4, "group_by_length": False},
                                                                 "augment": 2, "workers": 2},
                                          "finetune": {"augment": 0, "augment_p": 0.4}}}
    old["config"]["finetune"] = {}
    assert same_config(old, new) and same_config(new, old)
    grouped = json.loads(json.dumps(new))
    grouped["config"]["retrain"]["train"]["group_by_length"] = True
    assert not same_config(old, grouped)  # a later key away from its old behaviour is another run
    folder = StageFolder(tmp_path / "s", "retrain", old["config"])
    folder.claim()
    folder.finish({"ok": 1})
    assert StageFolder(tmp_path / "s", "retrain", new["config"]).done() == {"ok": 1}
    with pytest.raises(ElasticLMError, match="group_by_length: None there, True now"):
        StageFolder(tmp_path / "s", "retrain", grouped["config"]).done()
