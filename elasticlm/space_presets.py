"""The preset search spaces as plain data: each name's `SearchSpace` fields (the others keep their
defaults) and a line about what it is for. `elasticlm.space.PRESETS` / `get_preset` build the spaces;
each preset's whole run config is `elasticlm.presets.get_config`."""

from __future__ import annotations

PRESET_SPACES: dict[str, tuple[dict[str, int], str]] = {
    "small": ({"hidden_size": 528, "num_layers": 12, "param_ceiling": 15_700_000},
              "ELM-Small (paper): d=528, L=12, ceiling 15.7M"),
    "tiny": ({"hidden_size": 528, "num_layers": 12, "param_ceiling": 10_000_000},
             "ELM-Tiny (paper): d=528, L=12, ceiling 10M"),
    "micro": ({"hidden_size": 192, "num_layers": 6, "param_ceiling": 5_000_000},
              "ELM-Micro (paper): d=192, L=6, ceiling 5M"),
    "demo": ({"hidden_size": 192, "num_layers": 4, "max_position_embeddings": 128, "param_ceiling": 4_500_000},
             "laptop demo: d=192, L=4, N_max=128, ceiling 4.5M; the whole pipeline in minutes on 2 cores"),
}
"""Preset name -> (its `SearchSpace` fields, what it is for), in the order `elasticlm space` lists them."""
