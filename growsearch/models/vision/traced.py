"""Unit groups of a model with no adapter, derived by tracing it (torch-pruning's dependency graph).

torch-pruning runs one forward pass and follows the autograd graph to find which channel
slices are coupled -- through residual additions, depthwise convolutions, permutes,
LayerNorms, gates and per-channel parameters (ConvNeXt's layer scale) -- for pruning. A
coupled set is exactly a unit group: the convolutions and linears that *output* it produce
it, those that *read* it consume it, BatchNorm/LayerNorm normalise it. Depthwise convs and
per-channel parameters compute unit ``c`` from unit ``c`` only: they are copied like
producers. What this reading cannot grow exactly (a grouped conv, a concatenation, channels
flattened with space into a linear, a GroupNorm) is refused in one line naming the layer.

Why torch-pruning and not a torch.fx tracer of our own: it follows autograd, so it also
handles models that ``torch.fx.symbolic_trace`` cannot (data-dependent Python control
flow), it already knows timm's and torchvision's layers, and it is one small pure-Python
package. The growth itself stays growsearch's (``growsearch.grow``).

A traced model is rebuilt as its constructor's model with the grown layers resized
(:func:`resize`); depth growth needs an adapter (where a block may go, what makes it the
identity) and is refused.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from growsearch.errors import ConfigError
from growsearch.models.base import UnitGroup

BN = ("weight", "bias", "running_mean", "running_var")


def _refuse(model_name: str, layer: str, why: str) -> ConfigError:
    return ConfigError(f"traced: cannot grow {model_name}: layer {layer} {why}")


def trace_groups(model: nn.Module, example: torch.Tensor, model_name: str) -> list[UnitGroup]:
    """The unit groups of ``model`` (its outputs excluded), found by tracing one
    forward pass on ``example``; ConfigError naming the layer that cannot be grown."""
    try:
        import torch_pruning as tp
    except ImportError:
        raise ConfigError("traced: torch-pruning is not installed; pip install -e '.[vision]'") from None
    ops = tp.ops
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unwrapped parameters: their pruning dim is read below
        graph = tp.DependencyGraph().build_dependency(model.eval(), example_inputs=example, verbose=False)
        found = list(graph.get_all_groups(ignored_layers=_output_layers(model, example),
                                          root_module_types=(nn.modules.conv._ConvNd, nn.Linear)))
    names = {**{id(p): n for n, p in model.named_parameters()}, **{id(b): n for n, b in model.named_buffers()}}
    modules = {id(m): n for n, m in model.named_modules()}
    groups = []
    for found_group in found:
        items = list(found_group)
        group_name = modules[id(items[0][0].target.module)]
        size = len(items[0][1])
        producers: dict[tuple[str, int], None] = {}
        consumers: dict[tuple[str, int], None] = {}
        norms: dict[str, None] = {}
        normalized = False
        for dep, _ in items:
            target, handler = dep.target, dep.handler.__name__
            module, out = target.module, handler == "prune_out_channels"
            if isinstance(module, (ops._ElementWiseOp, ops._ReshapeOp)):
                continue
            if isinstance(module, nn.Parameter):
                producers[(names[id(module)], target.pruning_dim)] = None
                continue
            layer = modules.get(id(module), type(module).__name__)
            if isinstance(module, (ops._ConcatOp, ops._SplitOp, ops._SliceOp, ops._UnbindOp, ops._ExpandOp)):
                kind = type(module).__name__.strip("_").removesuffix("Op").lower()
                raise _refuse(model_name, group_name, f"outputs channels that a {kind} (torch.cat, split, slice) "
                              "places among others: new units would shift them")
            if isinstance(module, nn.modules.conv._ConvNd):
                if module.transposed:
                    raise _refuse(model_name, layer, "is a transposed convolution")
                depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
                if module.groups > 1 and not depthwise:
                    raise _refuse(model_name, layer, f"is a grouped convolution (groups={module.groups})")
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                norms.update(dict.fromkeys(f"{layer}.{k}" for k in BN if f"{layer}.{k}" in names.values()))
                continue
            elif isinstance(module, nn.LayerNorm):
                if len(module.normalized_shape) != 1:
                    raise _refuse(model_name, layer, f"normalises over {tuple(module.normalized_shape)}")
                norms.update(dict.fromkeys(f"{layer}.{k}" for k in ("weight", "bias")
                                           if f"{layer}.{k}" in names.values()))
                normalized = True
                continue
            elif not isinstance(module, nn.Linear):
                if any(True for _ in module.parameters(recurse=False)):
                    raise _refuse(model_name, layer, f"is a {type(module).__name__}, which growth does not know")
                continue
            weight = [(f"{layer}.weight", 0)] + ([(f"{layer}.bias", 0)] if module.bias is not None else [])
            if isinstance(module, nn.modules.conv._ConvNd) and depthwise:
                producers.update(dict.fromkeys(weight))  # unit c from unit c: copied like a producer
            elif out:
                producers.update(dict.fromkeys(weight))
            else:
                consumers[(f"{layer}.weight", 1)] = None
        state = dict(model.state_dict())
        for name, axis in [*producers, *consumers, *((n, 0) for n in norms)]:
            if state[name].shape[axis] != size:
                raise _refuse(model_name, name.rsplit(".", 1)[0], f"holds {state[name].shape[axis]} slices of "
                              f"the {size} channels of {group_name} (channels flattened or mixed with another axis)")
        groups.append(UnitGroup(group_name, size, tuple(producers), tuple(consumers), tuple(norms), normalized))
    return sorted(groups, key=lambda g: list(modules.values()).index(g.name))


def _output_layers(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """The layers whose outputs are the model's outputs (its classes: they do not grow)."""
    outputs: dict[int, nn.Module] = {}
    hooks = [m.register_forward_hook(lambda m, _, out: outputs.__setitem__(out.data_ptr(), m))
             for m in model.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    try:
        with torch.no_grad():
            y = model.eval()(example)
    finally:
        for hook in hooks:
            hook.remove()
    return [outputs[y.data_ptr()]] if y.data_ptr() in outputs else []


def resize(model: nn.Module, groups: list[UnitGroup], sizes: dict[str, int]) -> nn.Module:
    """Resize ``model``'s layers in place so that every group has ``sizes[group]`` units: the
    grown tensors are freshly initialised (``reset_parameters``; a bare per-channel parameter
    repeats its values), ready for the grown weights to be loaded."""
    shapes = {n: list(t.shape) for n, t in model.state_dict().items()}
    for group in groups:
        new = sizes.get(group.name, group.size)
        for name, axis in [*group.producers, *group.consumers, *((n, 0) for n in group.norms)]:
            shapes[name][axis] += (new - group.size) * group.block
    for module_name, module in model.named_modules():
        changed = False
        for kind, tensors in (("param", module._parameters), ("buffer", module._buffers)):
            for key, t in list(tensors.items()):
                full = f"{module_name}.{key}" if module_name else key
                if t is None or full not in shapes or list(t.shape) == shapes[full]:
                    continue
                changed = True
                grown = t.detach()
                for axis, n in enumerate(shapes[full]):  # repeat the old values cyclically
                    index = torch.arange(n, device=t.device) % grown.shape[axis]
                    grown = grown.index_select(axis, index)
                tensors[key] = nn.Parameter(grown.clone(), t.requires_grad) if kind == "param" else grown.clone()
        if changed:
            _update_attributes(module)
    return model


def _update_attributes(module: nn.Module) -> None:
    """Keep a resized layer's size attributes (used by its forward) equal to its tensors."""
    if isinstance(module, nn.modules.conv._ConvNd):
        depthwise = module.groups > 1
        module.out_channels = module.weight.shape[0]
        module.in_channels = module.weight.shape[0] if depthwise else module.weight.shape[1] * module.groups
        module.groups = module.out_channels if depthwise else module.groups
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        stats = module.running_mean if module.running_mean is not None else module.weight
        module.num_features = stats.shape[0]
    elif isinstance(module, nn.LayerNorm):
        module.normalized_shape = (module.weight.shape[0],)
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()
