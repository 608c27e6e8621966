"""oneDNN-packed linear layers on CPUs (CLIP_CPU_PACKED_WEIGHTS): the image tower in fp32 and bf16, the text
tower in bf16.

Each weight is reordered once, at load, into the blocked layout oneDNN's matrix kernels read (AMX or AVX-512
tiles), instead of on every pass, and CLIP's quick-GELU runs inside the first MLP layer's kernel as a swish
post-op. The op is `mkldnn::_linear_pointwise`, what torch.compile's CPU backend emits for the same layers.

oneDNN keeps 0.6-0.9 MB of kernels per input shape it meets, and does not give it all back when its cache evicts
(docs/performance.md). Image passes come in few shapes (257 rows per ViT-L/14 image, up to 8 images a pass); a
text pass has texts x tokens rows, thousands of shapes. So the text tower's layers round their rows up to a
short ladder (`bucket`). In fp32 the text tower stays on plain linears, whose MKL kernels keep no such state.
"""

from __future__ import annotations

import functools
import logging

import torch
from torch import nn
from transformers import CLIPModel
from transformers.models.clip.modeling_clip import CLIPMLP

log = logging.getLogger(__name__)

# quick_gelu(x) = x * sigmoid(1.702 x) = swish(1.702 x) / 1.702: the factor goes into fc1's weights (its swish
# post-op then gives 1.702 quick_gelu(x)) and its inverse into fc2's, so the activation costs no pass of its own.
QUICK_GELU_SLOPE = 1.702


@functools.cache
def supported(dtype: torch.dtype) -> bool:
    """Whether this torch and CPU run oneDNN's packed linear in `dtype` (bf16 needs AVX-512 at least), and it
    computes what the plain layer does."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return False
    try:
        with torch.no_grad():
            plain, x = nn.Linear(8, 8), torch.linspace(-1, 1, 16).reshape(2, 8)
            ours = PackedLinear(plain, dtype)(x.to(dtype)).float()
            return bool(torch.allclose(ours, plain(x), rtol=0.05, atol=0.05))
    except RuntimeError as exc:  # no oneDNN primitive for this dtype on this CPU
        log.info("oneDNN's packed linear is not available in %s: %s", dtype, exc)
        return False


def bucket(rows: int) -> int:
    """`rows` rounded up to a ladder: multiples of 16 up to 256, then quarter steps of each power of two (at most
    25% more rows). Texts' rows up to 256 x 77 meet 41 sizes."""
    step = 16 if rows <= 256 else 1 << (rows.bit_length() - 3)
    return -(-rows // step) * step


class PackedLinear(nn.Module):
    """A Linear layer, with an optional activation fused, on a weight held in oneDNN's blocked layout;
    `bucketed`: the rows are zero-padded to `bucket(rows)` for the kernel and cut back after."""

    def __init__(self, linear: nn.Linear, dtype: torch.dtype, weight_scale: float = 1.0, bias_scale: float = 1.0,
                 activation: str = "none", bucketed: bool = False):
        super().__init__()
        self.out_features, self.activation, self.bucketed = linear.out_features, activation, bucketed
        # Scaled in fp32, then rounded once into `dtype`.
        weight = (linear.weight.detach().float() * weight_scale).to(dtype)
        self.register_buffer("weight", torch.ops.mkldnn._reorder_linear_weight(weight, None), persistent=False)
        bias = None if linear.bias is None else (linear.bias.detach().float() * bias_scale).to(dtype)
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        count = rows.shape[0]
        if self.bucketed and bucket(count) != count:
            rows = nn.functional.pad(rows, (0, 0, 0, bucket(count) - count))
        out = torch.ops.mkldnn._linear_pointwise(rows, self.weight, self.bias, self.activation, [], "")
        return out[:count].reshape(*x.shape[:-1], self.out_features)


class PackedMLP(nn.Module):
    """CLIPMLP with quick-GELU folded into the layers around it (QUICK_GELU_SLOPE)."""

    def __init__(self, mlp: CLIPMLP, dtype: torch.dtype, bucketed: bool = False):
        super().__init__()
        self.fc1 = PackedLinear(mlp.fc1, dtype, QUICK_GELU_SLOPE, QUICK_GELU_SLOPE, "swish", bucketed)
        self.fc2 = PackedLinear(mlp.fc2, dtype, 1 / QUICK_GELU_SLOPE, bucketed=bucketed)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(hidden_states))


def pack(model: CLIPModel, dtype: torch.dtype) -> bool:
    """Swap the image tower's linear layers, and in bf16 the text tower's, for packed ones in `dtype` (the caller
    converts the rest); False, with the model untouched, where this CPU or torch cannot."""
    if not supported(dtype):
        return False
    _pack_tower(model.vision_model, model, "visual_projection", dtype, bucketed=False)
    if dtype == torch.bfloat16:
        _pack_tower(model.text_model, model, "text_projection", dtype, bucketed=True)
    return True


def _pack_tower(tower: nn.Module, model: CLIPModel, projection: str, dtype: torch.dtype, bucketed: bool) -> None:
    fold = tower.config.hidden_act == "quick_gelu"
    swaps = [(model, projection)]
    for parent in tower.modules():
        if fold and isinstance(parent, CLIPMLP):
            continue  # swapped whole
        swaps += [(parent, name) for name, child in parent.named_children()
                  if isinstance(child, nn.Linear) or (fold and isinstance(child, CLIPMLP))]
    for parent, name in swaps:  # one at a time: each plain weight is freed as its packed copy is made
        child = getattr(parent, name)
        setattr(parent, name, PackedMLP(child, dtype, bucketed) if isinstance(child, CLIPMLP)
                else PackedLinear(child, dtype, bucketed=bucketed))
