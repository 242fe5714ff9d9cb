"""Function-preserving depth growth: start a deeper model from a trained one (``grow.num_layers``).

A trained model that has stopped improving may lack capacity rather than data. Training a larger
model from random weights throws away what the small one learnt; growing it keeps it. Each new
decoder layer is a copy of the layer it follows, with the two matrices that write into the
residual stream (attention ``o_proj`` and MLP ``down_proj``) set to zero. A pre-norm block then
adds exactly nothing (``h + o_proj(...) = h``, ``h + down_proj(...) = h``), so the grown model
computes the same function as the trained one, logit for logit, and training starts from its
accuracy. The zeroed matrices get a gradient at once (the copied attention and MLP inputs are
live), the rest of the copy as soon as they are non-zero. This is the identity-initialised
stacking of Net2Net (Chen et al., 2016, "Net2DeeperNet") and of depth up-scaling studies
(Gong et al., 2019, "stacking"; Wang et al., 2023, LiGO), in its simplest form.

Copies are spread evenly: growing 6 layers to 12 follows every layer by its copy
(L0, L0', L1, L1', ...); 6 to 9 follows every second layer. Llama-family models only
(``model.model.layers`` of pre-norm decoder layers with ``self_attn.o_proj`` and ``mlp.down_proj``),
which covers the tiny from-scratch models and SmolLM/Qwen.
"""
from __future__ import annotations

import copy
import logging

import torch

__all__ = ["copy_plan", "grow_depth"]

log = logging.getLogger("tsm")


def copy_plan(n_layers: int, num_layers: int) -> list[int]:
    """For each layer of the grown model, the index of the trained layer it starts from; a layer
    that repeats its predecessor's index is a new (zero-output) copy."""
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < n_layers:
        raise ValueError(f"grow.num_layers must be an integer >= the model's {n_layers} layers, got {num_layers!r}")
    extra = num_layers - n_layers
    plan: list[int] = []
    for i in range(n_layers):
        copies = (i + 1) * extra // n_layers - i * extra // n_layers
        plan.extend([i] * (1 + copies))
    return plan


def grow_depth(model: torch.nn.Module, num_layers: int) -> torch.nn.Module:
    """``model`` with ``num_layers`` decoder layers (in place; returned for chaining), computing the
    same function as before. A no-op when it already has ``num_layers``."""
    try:
        layers = model.model.layers
    except AttributeError:
        raise ValueError(f"grow: {type(model).__name__} has no model.layers (Llama-family models only)") from None
    plan = copy_plan(len(layers), num_layers)
    if len(plan) == len(layers):
        return model
    grown = []
    for j, i in enumerate(plan):
        if j > 0 and plan[j - 1] == i:  # a new copy of layer i: identity at the start
            layer = copy.deepcopy(layers[i])
            for proj in (layer.self_attn.o_proj, layer.mlp.down_proj):
                with torch.no_grad():
                    proj.weight.zero_()
                    if proj.bias is not None:
                        proj.bias.zero_()
        else:
            layer = layers[i]
        grown.append(layer)
    for j, layer in enumerate(grown):  # the KV cache is indexed by layer
        if hasattr(layer.self_attn, "layer_idx"):
            layer.self_attn.layer_idx = j
        if hasattr(layer, "layer_idx"):
            layer.layer_idx = j
    model.model.layers = torch.nn.ModuleList(grown)
    config = model.config
    before = config.num_hidden_layers
    config.num_hidden_layers = num_layers
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and len(layer_types) == before:
        config.layer_types = [layer_types[i] for i in plan]
    log.info("Grew the model from %d to %d layers (new layers are zero-output copies): %s parameters",
             before, num_layers, f"{sum(p.numel() for p in model.parameters()):,}")
    return model
