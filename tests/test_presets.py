"""One config source per preset: `elasticlm.presets.get_config` is what `run`, the stage commands and
configs/*.yaml all hold; stage copies of top-level fields cannot disagree; KEY=VALUE overrides stand
anywhere on the command line."""

import json
from pathlib import Path

import pytest
import yaml

from elasticlm import cli
from elasticlm.config import to_dict
from elasticlm.errors import ElasticLMError
from elasticlm.presets import CONFIGS, get_config, to_yaml
from elasticlm.space import PRESETS

ROOT = Path(__file__).resolve().parents[1]
PRESET_NAMES = ("demo", "micro", "tiny", "small")


def test_every_search_space_has_one_config():
    assert set(CONFIGS) == set(PRESETS) == set(PRESET_NAMES)
    with pytest.raises(ElasticLMError, match="huge"):
        get_config("huge")


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_effective_settings_are_those_recorded_before_the_presets_moved(preset):
    """tests/data/preset_effective.json: `preset_config(p).resolved()` of the code before elasticlm.presets,
    i.e. what every stage of `elasticlm run --preset p` got (updated where an issue changed a default on purpose:
    issue 16, the teacher embedding and from-scratch pretraining); the run tree itself leaves out the stage
    fields that it derives from its own."""
    recorded = json.loads((ROOT / "tests" / "data" / "preset_effective.json").read_text())[preset]["run"]
    cfg = get_config(preset).resolved()
    for stage in ("pretrain", "finetune", "search", "retrain"):
        assert to_dict(getattr(cfg, stage)) == recorded[stage], stage
    top = to_dict(cfg)
    assert {k: v for k, v in recorded.items() if k not in ("pretrain", "finetune", "search", "retrain")} == \
        {k: v for k, v in top.items() if k not in ("pretrain", "finetune", "search", "retrain")}
    for stage in ("pretrain", "finetune", "search", "retrain"):  # the run tree lost only the derived fields
        gone = {p.split(".", 1)[1] for p in type(cfg).DERIVED if p.startswith(stage + ".")}
        assert _flat(recorded[stage]) == {**_flat(top[stage]), **{k: v for k, v in _flat(recorded[stage]).items()
                                                                  if k in gone}}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return out


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_config_files_are_generated_from_the_presets(preset):
    text = (ROOT / "configs" / f"{preset}.yaml").read_text()
    assert yaml.safe_load(text) == to_dict(get_config(preset))
    assert text == to_yaml(preset), f"configs/{preset}.yaml is stale: elasticlm config dump --preset {preset}"


def test_config_dump_prints_the_file(capsys):
    assert cli.main(["config", "dump", "--preset", "micro"]) == 0
    assert capsys.readouterr().out == (ROOT / "configs" / "micro.yaml").read_text()


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_stage_commands_take_the_run_trees_stage_config(preset):
    """`elasticlm supernet pretrain|finetune --preset P` train what `elasticlm run --preset P` trains."""
    from elasticlm.commands.supernet import _stage

    run = get_config(preset).resolved()
    parser = cli.build_parser()
    pre = parser.parse_args(["supernet", "pretrain", "--preset", preset, "--out", "o"])
    ft = parser.parse_args(["supernet", "finetune", "--preset", preset, "--supernet", "s", "--out", "o"])
    assert to_dict(_stage(pre, "pretrain")) == to_dict(run.pretrain)
    assert to_dict(_stage(ft, "finetune")) == to_dict(run.finetune)
    if preset == "demo":
        assert run.finetune.train.epochs == 2.0


def test_stage_options_and_overrides():
    from elasticlm.commands.supernet import _stage

    args = cli.build_parser().parse_args(["supernet", "finetune", "train.grad_accum=2", "--supernet", "s", "--task",
                                          "a", "--task", "b", "--epochs", "3", "--fp32", "--out", "o",
                                          "distill.alpha_attn=0"])
    cfg = _stage(args, "finetune")
    assert cfg.tasks == ["a", "b"] and cfg.train.epochs == 3.0 and cfg.train.precision == "fp32"
    assert cfg.train.grad_accum == 2 and cfg.distill.alpha_attn == 0.0


@pytest.mark.parametrize("path,top", [("pretrain.train.seed", "seed"), ("search.evolution.seed", "seed"),
                                      ("retrain.teacher_epochs", "finetune.teacher_epochs"),
                                      ("retrain.corpus", "corpus"), ("finetune.tasks", "task")])
def test_a_stage_field_the_run_derives_cannot_be_set_apart(path, top, tmp_path):
    from elasticlm.config import apply_yaml, from_dict, override
    from elasticlm.experiment.run import RunConfig

    with pytest.raises(ElasticLMError, match=f"^{path} is set by '{top}'"):
        override(get_config("demo"), [f"{path}=7"])
    old = to_dict(get_config("demo").resolved())
    for stage in ("pretrain", "finetune", "search", "retrain"):  # run_config.json as written before
        old[stage] = to_dict(getattr(get_config("demo").resolved(), stage))
    assert to_dict(from_dict(RunConfig, old)) == to_dict(get_config("demo"))  # agreeing copies are accepted
    stage, rest = path.split(".", 1)
    node = old[stage]
    *parents, name = rest.split(".")
    for part in parents:
        node = node[part]
    node[name] = ["other"] if name == "tasks" else 7
    with pytest.raises(ElasticLMError, match=f"{path} is set by '{top}'"):
        from_dict(RunConfig, old)
    f = tmp_path / "old.yaml"
    f.write_text(yaml.safe_dump(old))
    with pytest.raises(ElasticLMError, match=f"old.yaml: {path} is set by '{top}'"):
        apply_yaml(get_config("demo"), str(f))
    with pytest.raises(ElasticLMError, match=f"{path} is set by"):
        _set_on_construction(path)


def _set_on_construction(path: str):
    from elasticlm.experiment.run import RunConfig
    from elasticlm.train.engine import TrainConfig
    from elasticlm.train.retrain import RetrainConfig
    from elasticlm.train.supernet import FinetuneConfig, PretrainConfig
    from elasticlm.search.evolution import EvolutionConfig
    from elasticlm.search.search_stages import SearchConfig

    return RunConfig(**{"pretrain.train.seed": dict(pretrain=PretrainConfig(train=TrainConfig(seed=7))),
                        "search.evolution.seed": dict(search=SearchConfig(evolution=EvolutionConfig(seed=7))),
                        "retrain.teacher_epochs": dict(retrain=RetrainConfig(teacher_epochs=7.0)),
                        "retrain.corpus": dict(retrain=RetrainConfig(corpus="other")),
                        "finetune.tasks": dict(finetune=FinetuneConfig(tasks=["other"]))}[path])


def test_top_level_fields_reach_every_stage():
    from elasticlm.config import override

    cfg = override(get_config("demo"), ["seed=4", "finetune.teacher_epochs=2"]).resolved()
    assert cfg.pretrain.train.seed == cfg.finetune.train.seed == cfg.search.evolution.seed == 4
    assert cfg.retrain.teacher_epochs == 2.0


def test_overrides_after_out_readme_example():
    """README: `elasticlm run --preset demo --out runs/x retrain.seeds=[0,1,2]` (the first KEY=VALUE used
    to be taken for the CONFIG file)."""
    from elasticlm.commands.run import build_config

    parser = cli.build_parser()
    args = parser.parse_args(["run", "--preset", "demo", "--out", "runs/x", "retrain.seeds=[0,1,2]"])
    assert args.config is None and build_config(args).retrain.seeds == [0, 1, 2]
    args = parser.parse_args(["run", "search.mode=pareto", "--preset", "demo", "--out", "runs/x", "seed=3",
                              "retrain.seeds=[1]"])
    cfg = build_config(args)
    assert (cfg.search.mode, cfg.seed, cfg.retrain.seeds) == ("pareto", 3, [1])
    args = parser.parse_args(["run", str(ROOT / "configs" / "micro.yaml"), "--out", "runs/x", "search.mode=pareto"])
    cfg = build_config(args)
    assert (cfg.preset, cfg.search.mode) == ("micro", "pareto")
    args = parser.parse_args(["search", "population=3", "--supernet", "s", "--out", "o", "heads.eta=0.5",
                              "--population", "4"])
    assert args.overrides == ["population=3", "heads.eta=0.5"]


@pytest.mark.parametrize("command", [["run", "--preset", "demo"], ["ablate", "--preset", "demo"],
                                     ["supernet", "pretrain"], ["search", "--supernet", "s"],
                                     ["retrain", "--supernet", "s", "--arch", "a"]])
def test_an_unknown_key_after_out_is_a_one_line_error_naming_it(command, tmp_path, capsys):
    assert cli.main([*command, "--out", str(tmp_path / "o"), "retrain.nope=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope" in err
    assert not (tmp_path / "o").exists()


def test_flags_take_type_and_help_from_the_field_docstrings():
    from elasticlm.commands.options import field_info

    annotation, doc = field_info("elasticlm.train.supernet:PretrainConfig", "train.lr")
    assert doc == "Peak learning rate of AdamW." and annotation.id == "float"
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    assert "Seeds every stage (data order, paths, search, initialisation)." in " ".join(help_text.split())


def test_space_fields_can_be_overridden_by_key_and_a_bad_one_fails_before_the_run_folder(tmp_path, capsys):
    """`pretrain.space` is a free-form mapping checked by the search space itself: `pretrain.space.X=...`
    sets one field; an unknown or bad field is a one-line error naming `pretrain.space`, and no run
    folder is made."""
    from elasticlm.commands.run import build_config

    args = cli.build_parser().parse_args(["run", "--preset", "demo", "--out", "o", "pretrain.space.embedding_size=192",
                                          "pretrain.space.param_ceiling=6474144"])
    cfg = build_config(args)
    assert cfg.pretrain.space == {"embedding_size": 192, "param_ceiling": 6474144}
    assert cfg.resolved().pretrain.space["embedding_size"] == 192
    for bad, says in (("pretrain.space.embedding_sise=1", "unknown search-space field(s): embedding_sise"),
                      ("pretrain.space.num_layers=0", "num_layers must be positive")):
        assert cli.main(["run", "--preset", "demo", "--out", str(tmp_path / "o"), bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"pretrain.space: {says}" in err
        assert not (tmp_path / "o").exists()
    assert cli.main(["run", "--preset", "demo", "--out", str(tmp_path / "o"), "pretrain.trian.lr=1"]) == 2
    assert "unknown config key pretrain.trian.lr" in capsys.readouterr().err
