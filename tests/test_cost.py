"""FLOPs against hand formulas for every family (a multiply-add is 2 FLOPs; matrix
products only; attention counted in full), on the CPU and on the meta device."""

import pytest
import torch

from growsearch.metrics.cost import TRAINING_FLOPS_PER_FORWARD, counted_flops, flops_per_example, training_flops
from growsearch.models import build


def _on_meta(spec: dict, example: torch.Tensor) -> int:
    with torch.device("meta"):
        model = build(spec)
    return flops_per_example(model, example.to("meta"))


def _counted_everywhere(spec: dict, example: torch.Tensor) -> int:
    cpu = flops_per_example(build(spec), example)
    assert _on_meta(spec, example) == cpu  # the meta device takes attention's math path (two bmm)
    return cpu


def test_mlp_dense_and_residual_layers():
    spec = {"family": "mlp", "in_dim": 40, "out_dim": 10, "hidden": [32, 16], "residual": [False, True]}
    hand = 2 * (40 * 32 + 32 * 16 + 16 * 32 + 32 * 10)
    assert _counted_everywhere(spec, torch.randn(3, 40)) == hand


def test_cnn_1d_with_strided_stage_and_shortcut():
    spec = {"family": "cnn", "in_channels": 1, "num_classes": 10, "channels": [8, 16], "blocks": [1, 1],
            "dims": 1, "length": 40, "kernel_size": 3}
    stem = 2 * 3 * 1 * 8 * 40
    stage0 = 2 * (2 * 3 * 8 * 8 * 40)  # two 3-tap convs 8 -> 8 at length 40
    stage1 = 2 * 3 * 8 * 16 * 20 + 2 * 3 * 16 * 16 * 20 + 2 * 1 * 8 * 16 * 20  # stride 2 -> 20; 1x1 shortcut
    head = 2 * 16 * 10
    assert _counted_everywhere(spec, torch.randn(2, 40)) == stem + stage0 + stage1 + head


def test_cnn_2d():
    spec = {"family": "cnn", "in_channels": 1, "num_classes": 10, "channels": [4], "blocks": [1],
            "dims": 2, "length": 8, "kernel_size": 3}
    hand = 2 * 9 * 1 * 4 * 64 + 2 * (2 * 9 * 4 * 4 * 64) + 2 * 4 * 10
    assert _counted_everywhere(spec, torch.randn(2, 8, 8)) == hand


def _gpt_hand(vocab: int, t: int, d: int, layers: int, heads: int, head_dim: int, mlp: int) -> int:
    inner = heads * head_dim
    qkvo = 4 * 2 * t * d * inner
    attention = 2 * (2 * t * t * inner)  # Q K^T and A V, every head, causal mask not discounted
    mlp_block = 2 * (2 * t * d * mlp)
    return layers * (qkvo + attention + mlp_block) + 2 * t * d * vocab


@pytest.mark.parametrize("heads,mlp", [(4, 64), (8, 64), (4, 128)])
def test_gpt_counts_attention_on_the_cpu(heads, mlp):
    spec = {"family": "gpt", "vocab_size": 100, "block_size": 64, "d_model": 32, "n_layers": 2,
            "n_heads": heads, "head_dim": 8, "mlp_hidden": mlp}
    example = torch.randint(0, 100, (2, 64))
    assert _counted_everywhere(spec, example) == _gpt_hand(100, 64, 32, 2, heads, 8, mlp)


def test_more_heads_and_wider_mlp_differ():
    # both add 8,192 parameters to each block; more heads also adds attention matmuls
    base = {"family": "gpt", "vocab_size": 100, "block_size": 64, "d_model": 32, "n_layers": 2, "head_dim": 8}
    example = torch.randint(0, 100, (1, 64))
    heads8 = flops_per_example(build({**base, "n_heads": 8, "mlp_hidden": 64}), example)
    mlp128 = flops_per_example(build({**base, "n_heads": 4, "mlp_hidden": 128}), example)
    assert (heads8, mlp128) == (5_652_480, 4_603_904)


def test_cpu_attention_backward_is_counted():
    spec = {"family": "gpt", "vocab_size": 20, "block_size": 8, "d_model": 16, "n_layers": 1, "n_heads": 2}
    model = build(spec)
    x = torch.randint(0, 20, (1, 8))
    attention = model.blocks[0].attn
    h = torch.randn(1, 8, 16, requires_grad=True)
    out = attention(h)
    backward = counted_flops(lambda: out.sum().backward())
    # backward of the four linears (grad input + grad weight) plus attention's backward (> 0)
    linears = 4 * 2 * (2 * 8 * 16 * 16)
    assert backward > linears
    assert flops_per_example(model, x) > 0


def test_training_flops_is_three_forwards():
    assert TRAINING_FLOPS_PER_FORWARD == 3
    assert training_flops(1000, 64) == 192_000
    assert training_flops(1000, 0.5) == 1500


def test_cpu_attention_rule_counts_what_torch_counts_for_the_gpu_kernels():
    from torch.utils.flop_counter import FlopCounterMode

    from growsearch.metrics.cost import _ATTENTION_RULES

    registry = FlopCounterMode(display=False, custom_mapping=_ATTENTION_RULES).flop_registry
    q, k, v = torch.randn(2, 4, 16, 8), torch.randn(2, 4, 16, 8), torch.randn(2, 4, 16, 8)
    cpu = registry[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu](q, k, v, out_val=None)
    assert cpu == 2 * (2 * 2 * 4 * 16 * 16 * 8)
    for gpu_kernel in (torch.ops.aten._scaled_dot_product_flash_attention,
                       torch.ops.aten._scaled_dot_product_efficient_attention,
                       torch.ops.aten._scaled_dot_product_cudnn_attention):
        assert registry[gpu_kernel](q, k, v, out_val=None) == cpu
