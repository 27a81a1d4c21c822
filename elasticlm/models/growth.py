"""Carrying optimizer state across FFN growth.

`FFN.grow` / `SuperNet.grow_ffn` replace parameters by wider ones and return
`[(old_param, new_param, dim)]`. `carry_optimizer_state` puts the new parameters in the old ones'
place in the optimizer's param groups and widens every state tensor shaped like the old parameter
(Adam's exp_avg / exp_avg_sq): the old slice keeps its values, the new slice starts at zero.
Scalar state (Adam's `step`) is kept as it is.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def carry_optimizer_state(optimizer: torch.optim.Optimizer, replaced: list[tuple]) -> None:
    for old, new, dim in replaced:
        for group in optimizer.param_groups:
            for i, p in enumerate(group["params"]):
                if p is old:
                    group["params"][i] = new
        state = optimizer.state.pop(old, None)
        if state is None:
            continue
        carried = {}
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == old.shape:
                wide = value.new_zeros(new.shape)
                wide.narrow(dim, 0, old.shape[dim]).copy_(value)
                value = wide
            carried[key] = value
        optimizer.state[new] = carried
