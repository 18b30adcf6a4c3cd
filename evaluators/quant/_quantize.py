"""Quantization kernels on the CPU: fake quantization and torch's real low-bit matmuls.

Formats (see ``evaluators/quant/_plan.py``): ``bf16``; ``int8`` symmetric per output channel;
``fp8`` e4m3 with a per-output-channel scale; ``int4-g{32,64,128}`` asymmetric per group of
input features (scale + zero point, torch's int4 pack layout); ``int4-ch`` asymmetric per
output channel. Activations at 8 bits are quantized per token, dynamically (int8 symmetric, or
fp8 e4m3 when the weights are fp8).

``QuantLinear`` runs the real torch kernel where one exists on the CPU (for latency) and an
emulation with the same rounded numbers (for the quality pass):

=============  ==============  ============================================================
weights        activations     kernel
=============  ==============  ============================================================
bf16           16              ``F.linear`` in bf16
int8           16              ``aten._weight_int8pack_mm`` (weight-only int8)
int8           8               ``torch._int_mm`` (int8 x int8 -> int32), per-token scales
fp8            16              fp8 storage, upcast to bf16 per call, ``F.linear``
fp8            8               ``torch._scaled_mm`` (fp8 x fp8, row-wise scales)
int4-g*        16 / 8          ``aten._weight_int4pack_mm_for_cpu`` (8: activations
                               fake-quantized to int8 first, no W4A8 CPU kernel in torch)
int4-ch        16 / 8          no CPU kernel (groups must be 32..256): dequantized to bf16
                               at build time, ``F.linear``; size counts the packed bits
=============  ==============  ============================================================
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0  # largest finite e4m3fn value (OCP FP8 spec)
EPS = 1e-8


# -- weights -----------------------------------------------------------------------------

def int8_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: ``w ~= q * scale[:, None]``."""
    scale = w.abs().amax(dim=1).clamp(min=EPS) / 127.0
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


def fp8_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fp8 e4m3 with a per-row scale that maps the row's max to 448."""
    scale = w.abs().amax(dim=1).clamp(min=EPS) / FP8_MAX
    return (w / scale[:, None]).to(FP8), scale


def int4_groups(w: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric int4 per group of ``group`` input features (-1: the whole row).

    Returns codes in 0..15 (int32, shape of ``w``), scales and minima (rows x groups):
    ``w ~= q * scale + minimum``.
    """
    rows, cols = w.shape
    g = cols if group == -1 else group
    wg = w.reshape(rows, cols // g, g)
    lo, hi = wg.amin(dim=-1), wg.amax(dim=-1)
    scale = (hi - lo).clamp(min=EPS) / 15.0
    q = torch.round((wg - lo[..., None]) / scale[..., None]).clamp(0, 15)
    return q.to(torch.int32).reshape(rows, cols), scale, lo


def dequant_int4(q: torch.Tensor, scale: torch.Tensor, lo: torch.Tensor) -> torch.Tensor:
    rows, cols = q.shape
    g = cols // scale.shape[1]
    return (q.reshape(rows, -1, g).float() * scale[..., None] + lo[..., None]).reshape(rows, cols)


def fake_weight(w: torch.Tensor, fmt: str) -> torch.Tensor:
    """``w`` rounded through ``fmt`` and back to float32."""
    if fmt == "bf16":
        return w.bfloat16().float()
    if fmt == "int8":
        q, s = int8_rows(w)
        return q.float() * s[:, None]
    if fmt == "fp8":
        q, s = fp8_rows(w)
        return q.float() * s[:, None]
    group = -1 if fmt == "int4-ch" else int(fmt.rsplit("g", 1)[1])
    return dequant_int4(*int4_groups(w, group))


# -- activations and KV ------------------------------------------------------------------

def int8_tokens(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic symmetric per-token int8 of a (tokens x features) tensor."""
    scale = x.abs().amax(dim=-1, keepdim=True).clamp(min=EPS) / 127.0
    return torch.round(x / scale).clamp(-127, 127).to(torch.int8), scale


def fake_act(x: torch.Tensor, fp8: bool = False) -> torch.Tensor:
    """Per-token dynamic 8-bit round trip (int8, or fp8 e4m3)."""
    if fp8:
        scale = x.abs().amax(dim=-1, keepdim=True).clamp(min=EPS) / FP8_MAX
        return (x / scale).to(FP8).to(x.dtype) * scale
    q, scale = int8_tokens(x)
    return q.to(x.dtype) * scale


def fake_kv(x: torch.Tensor, bits: int) -> torch.Tensor:
    """K or V (..., head_dim) through the cache format: fp8 with a per-tensor scale at 8 bits,
    int4 with a scale and zero per head vector at 4 bits (see ``kv_bits_per_value``)."""
    if bits == 16:
        return x.bfloat16().float()
    if bits == 8:
        scale = x.abs().amax().clamp(min=EPS) / FP8_MAX
        return (x / scale).to(FP8).float() * scale
    lo, hi = x.amin(dim=-1, keepdim=True), x.amax(dim=-1, keepdim=True)
    scale = (hi - lo).clamp(min=EPS) / 15.0
    return torch.round((x - lo) / scale).clamp(0, 15) * scale + lo


# -- the linear layer --------------------------------------------------------------------

class QuantLinear(torch.nn.Module):
    """``y = x W^T + b`` with ``W`` stored in ``fmt`` and inputs at ``act_bits``.

    ``forward`` runs the real kernel (used for latency). ``emulate`` computes the same rounded
    numbers (the stored codes and bf16 scales, the same activation rounding) with a dense
    matmul, which is faster on the CPU for the long quality pass: the two differ only in
    accumulation order. Both take and return float32 so that the rest of the network (norms,
    softmax, GELU) stays in float32 as in the reference model.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, fmt: str,
                 act_bits: int = 16) -> None:
        super().__init__()
        self.fmt, self.act_bits = fmt, act_bits
        self.out_features, self.in_features = weight.shape
        self.bias = None if bias is None else bias.float()
        w = weight.float()
        if fmt == "bf16":
            self.w = w.bfloat16()
        elif fmt == "int8":
            self.q, self.scale = int8_rows(w)
            self.scale_bf16 = self.scale.bfloat16()
            self.w = (self.q.float() * self.scale_bf16.float()[:, None]).bfloat16()
        elif fmt == "fp8":
            self.q, self.scale = fp8_rows(w)
            self.w = (self.q.float() * self.scale[:, None]).bfloat16()
        elif fmt == "int4-ch":
            self.w = dequant_int4(*int4_groups(w, -1)).bfloat16()
        elif fmt.startswith("int4-g"):
            self.group = int(fmt.rsplit("g", 1)[1])
            q, scale, lo = int4_groups(w, self.group)
            self.packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
            # torch's layout: w = (q - 8) * scale + zero, so zero = minimum + 8 * scale
            sz = torch.stack([scale.t(), (lo + 8 * scale).t()], dim=-1).contiguous().bfloat16()
            self.scales_zeros = sz
            s_, z_ = sz[..., 0].t().float(), sz[..., 1].t().float()  # rows x groups
            g = self.group
            self.w = ((q.reshape(self.out_features, -1, g).float() - 8) * s_[..., None]
                      + z_[..., None]).reshape(self.out_features, -1).bfloat16()
        else:
            raise ValueError(f"unknown weight format {fmt!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply(x, self._kernel)

    def emulate(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply(x, self._dense)

    def _apply(self, x: torch.Tensor, matmul) -> torch.Tensor:
        shape = x.shape
        y = matmul(x.reshape(-1, shape[-1]))
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)

    def _dense(self, x: torch.Tensor) -> torch.Tensor:
        if self.act_bits == 8 and self.fmt != "bf16":
            if self.fmt == "fp8":  # products of fp8 values, fp32 accumulation
                return F.linear(fake_act(x, fp8=True), self.q.float() * self.scale[:, None])
            if self.fmt == "int8":  # integer products, exact in fp32 for K <= 1536
                xq, sx = int8_tokens(x)
                return F.linear(xq.float(), self.q.float()) * sx * self.scale
            x = fake_act(x)
        return F.linear(x.bfloat16(), self.w).float()

    def _kernel(self, x: torch.Tensor) -> torch.Tensor:
        a8 = self.act_bits == 8
        if self.fmt == "int8" and a8:
            xq, sx = int8_tokens(x)
            return torch._int_mm(xq, self.q.t()).float() * sx * self.scale
        if self.fmt == "fp8" and a8:
            sx = x.abs().amax(dim=-1, keepdim=True).clamp(min=EPS) / FP8_MAX
            return torch._scaled_mm((x / sx).to(FP8), self.q.t(), scale_a=sx,
                                    scale_b=self.scale[None, :], out_dtype=torch.float32)
        if a8 and self.fmt != "bf16":  # int4 weights: no W4A8 CPU kernel in torch
            x = fake_act(x)
        xb = x.bfloat16()
        if self.fmt == "int8":
            return torch.ops.aten._weight_int8pack_mm(xb, self.q, self.scale_bf16).float()
        if self.fmt == "fp8":
            w = self.q.to(torch.bfloat16) * self.scale.bfloat16()[:, None]
            return F.linear(xb, w).float()
        if self.fmt.startswith("int4-g"):
            return torch.ops.aten._weight_int4pack_mm_for_cpu(
                xb, self.packed, self.group, self.scales_zeros).float()
        return F.linear(xb, self.w).float()
