"""The experiment package's pure parts: the comparison table."""

import math

from elasticlm.experiment.compare import table


def test_table_has_a_row_per_model_and_a_column_per_split_and_metric():
    metrics = {"found": {"params": 2_500_000, "latency_ms": 1.5, "dev": {"accuracy": 0.75, "f1": 0.5},
                         "test": {"accuracy": 0.7}},
               "majority": {"params": 0, "latency_ms": 0.0, "dev": {"accuracy": 0.5}}}
    lines = table(metrics).splitlines()
    assert lines[0].split() == ["model", "params", "ms", "dev", "accuracy", "dev", "f1", "test", "accuracy",
                                "test", "f1", "seeds"]
    found = lines[1].split()
    assert found[:3] == ["found", "2.50M", "1.50"] and [float(x) for x in found[3:5]] == [0.75, 0.5]
    assert math.isnan(float(found[6])) and lines[2].split()[:4] == ["majority", "0.00M", "0.00", "0.5000"]
    metrics["found"].update(seeds=3, std={"dev": {"accuracy": 0.0125}})
    assert table(metrics).splitlines()[1].split()[3:5] == ["0.7500±0.0125", "0.5000"]
    assert table(metrics).splitlines()[1].split()[-1] == "3"


def test_ablation_notes_say_the_logit_term_is_the_same_on_two_class_tasks():
    from elasticlm.experiment.ablation import variant_notes
    from elasticlm.presets import get_config
    from elasticlm.report.tables import ablation_table

    cfg = get_config("demo")  # rt-polarity: two classes
    notes = variant_notes(cfg, ["full", "classic-kd"])
    assert "same KL" in notes["classic-kd"] and variant_notes(cfg, ["full", "fixed-dims"]) == {}
    cfg.task = "mnli"  # three classes: relational's logit term is a Pearson term there
    assert variant_notes(cfg, ["classic-kd"]) == {}
    rows = [{"variant": "full", "dev_mean": 0.8}, {"variant": "classic-kd", "dev_mean": 0.79}]
    _, said = ablation_table({"metric": "accuracy", "rows": rows, "notes": notes})
    assert said[-1].startswith("- Note on classic-kd: rt-polarity has two classes") and "same KL" in said[-1]


def test_ablation_table_says_a_difference_inside_its_interval_is_noise():
    from elasticlm.report.tables import ablation_table

    rows = [{"variant": "full", "dev_mean": 0.80, "test_mean": 0.81},
            {"variant": "classic-kd", "dev_mean": 0.79, "test_mean": 0.80,
             "vs_full": {"split": "test", "diff": -0.01, "ci95": [-0.025, 0.004], "verdict": "within noise"}},
            {"variant": "fixed-dims", "dev_mean": 0.78, "test_mean": 0.78,
             "vs_full": {"split": "test", "diff": -0.03, "ci95": [-0.045, -0.014], "verdict": "worse than full"}},
            {"variant": "no-sharing", "dev_mean": 0.78, "test_mean": 0.79}]  # no predictions: means only
    _, said = ablation_table({"metric": "accuracy", "rows": rows})
    assert said[0] == ("- classic-kd: dev -1.0 points, test -1.0 points [-2.5, +0.4] (95% paired bootstrap) against "
                       "the full method (within noise: the interval holds 0).")
    assert said[1].endswith("test -3.0 points [-4.5, -1.4] (95% paired bootstrap) against the full method "
                            "(switching it off hurts, beyond the interval).")
    assert said[2] == "- no-sharing: dev -2.0 points, test -2.0 points against the full method (switching it off hurts here)."


def test_every_ablation_variant_switches_something_off_in_the_demo_config():
    from elasticlm.config import override, to_dict
    from elasticlm.experiment.ablation import VARIANTS
    from elasticlm.presets import get_config

    full = to_dict(get_config("demo"))
    for name, overrides in VARIANTS.items():
        changed = to_dict(override(get_config("demo"), overrides))
        assert (changed == full) == (name == "full"), name
    layer = override(get_config("demo"), VARIANTS["layer-projection"])
    assert (layer.pretrain.distill.projection, layer.finetune.distill.projection) == ("layer", "layer")
    assert get_config("demo").pretrain.distill.projection == "block"
