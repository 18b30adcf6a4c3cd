"""Triton kernels tuned by the kernel domain: a GEMM with GROUP_M swizzle and split-K, and a
FlashAttention-2-style forward pass.

Each kernel takes its tile sizes as compile-time constants, so one config is one compiled
binary. With ``TRITON_INTERPRET=1`` set before Triton is first imported, the same kernels run on
CPU tensors through Triton's interpreter, which is how the tests check correctness without a
GPU (Triton reads the variable when its own ``@triton.jit`` library functions are defined, so it
cannot be switched on later in a process; :func:`interpreting` tells which mode is active).

Interpreter caveat: Triton 3.x's interpreter computes ``tl.dot`` on bfloat16 operands with
numpy, which has no bfloat16, and returns garbage; the launchers therefore upcast bf16 operands
to fp32 inside the kernel (the ``UPCAST`` constant) when interpreting. Compiled GPU kernels never
upcast.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl


@triton.jit
def _gemm_kernel(a_ptr, b_ptr, c_ptr, M, N, K, k_per_split, group_m,
                 stride_am, stride_ak, stride_bk, stride_bn, stride_cs, stride_cm, stride_cn,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                 INPUT_PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """C[pid_k] = A[:, ks] @ B[ks, :] for the K slice ``ks`` of split ``pid_k``.

    ``group_m`` and the split (grid axis 1 with ``k_per_split``) are runtime values: configs
    that differ only in them share one compiled binary, which makes sweeps much cheaper.
    """
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    # GROUP_M swizzle (Triton matmul tutorial): GROUP_M rows of tiles run column by column, so
    # programs running at the same time share A rows and B columns in L2
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = group_m * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * group_m
    group_size_m = tl.minimum(num_pid_m - first_pid_m, group_m)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N
    k_start = pid_k * k_per_split
    k_end = tl.minimum(k_start + k_per_split, K)
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + (k_start + offs_k)[None, :] * stride_ak
    b_ptrs = b_ptr + (k_start + offs_k)[:, None] * stride_bk + offs_n[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(k_start, k_end, BLOCK_K):
        kk = k + offs_k
        a = tl.load(a_ptrs, mask=mask_m[:, None] & (kk[None, :] < k_end), other=0.0)
        b = tl.load(b_ptrs, mask=(kk[:, None] < k_end) & mask_n[None, :], other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    c_ptrs = c_ptr + pid_k * stride_cs + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def _splitk_reduce_kernel(ws_ptr, c_ptr, MN, SPLIT_K: tl.constexpr, BLOCK: tl.constexpr):
    """C = sum over splits of the fp32 partials ``ws[SPLIT_K, M*N]`` (deterministic order)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < MN
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for s in tl.static_range(SPLIT_K):
        acc += tl.load(ws_ptr + s * MN + offs, mask=mask, other=0.0)
    tl.store(c_ptr + offs, acc.to(c_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _attn_fwd_kernel(q_ptr, k_ptr, v_ptr, o_ptr, qk_scale, H, N_CTX,
                     stride_z, stride_h, stride_m,
                     HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                     CAUSAL: tl.constexpr, UPCAST: tl.constexpr):
    """One program: BLOCK_M query rows of one (batch, head); online softmax over key blocks.

    FlashAttention-2 (Dao 2023, Algorithm 1) with the causal split of the Triton tutorial: keys
    strictly left of the diagonal band need no mask; the band (BLOCK_M wide, whole BLOCK_N
    blocks because BLOCK_M % BLOCK_N == 0) and a ragged last block are masked.
    ``qk_scale`` is 1/sqrt(d) * log2(e) so that exp2 replaces exp.
    """
    start_m = tl.program_id(0)
    off_hz = tl.program_id(1)
    base = (off_hz // H) * stride_z + (off_hz % H) * stride_h
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < N_CTX
    q = tl.load(q_ptr + base + offs_m[:, None] * stride_m + offs_d[None, :],
                mask=row_ok[:, None], other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - float("inf")
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    kv_ptrs = base + offs_n[:, None] * stride_m + offs_d[None, :]

    # phase 1: whole key blocks that every query row of this program may see
    if CAUSAL:
        lo = start_m * BLOCK_M
    else:
        lo = (N_CTX // BLOCK_N) * BLOCK_N
    for start_n in range(0, lo, BLOCK_N):
        k = tl.load(k_ptr + kv_ptrs + start_n * stride_m)
        v = tl.load(v_ptr + kv_ptrs + start_n * stride_m)
        if UPCAST:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        qk = tl.dot(q, tl.trans(k)) * qk_scale
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.math.exp2(qk - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
        m_i = m_new

    # phase 2: the diagonal band (causal) or the ragged tail (non-causal), masked
    if CAUSAL:
        hi = tl.minimum((start_m + 1) * BLOCK_M, N_CTX)
    else:
        hi = N_CTX
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        col_ok = cols < N_CTX
        k = tl.load(k_ptr + kv_ptrs + start_n * stride_m, mask=col_ok[:, None], other=0.0)
        v = tl.load(v_ptr + kv_ptrs + start_n * stride_m, mask=col_ok[:, None], other=0.0)
        if UPCAST:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        qk = tl.dot(q, tl.trans(k)) * qk_scale
        keep = col_ok[None, :]
        if CAUSAL:
            keep = keep & (offs_m[:, None] >= cols[None, :])
        qk = tl.where(keep, qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        # rows with nothing visible yet keep m = -inf; subtract 0 there to avoid inf - inf
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.math.exp2(qk - m_safe[:, None])
        alpha = tl.math.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
        m_i = m_new

    l_safe = tl.where(l_i == 0.0, 1.0, l_i)  # padded rows past N_CTX are never stored
    out = acc / l_safe[:, None]
    tl.store(o_ptr + base + offs_m[:, None] * stride_m + offs_d[None, :],
             out.to(o_ptr.dtype.element_ty), mask=row_ok[:, None])


# -- launchers ----------------------------------------------------------------------------------
TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32,
                "tf32": torch.float32, "fp8": torch.float8_e4m3fn}
#: output dtype per input dtype (fp8 products accumulate in fp32 and are written as bf16)
TORCH_OUT = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32,
             "tf32": torch.float32, "fp8": torch.bfloat16}
_PRECISION = {"fp32": "ieee", "tf32": "tf32"}


def interpreting() -> bool:
    """True when Triton was imported in interpreter mode (``TRITON_INTERPRET=1``)."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_gemm_kernel, InterpretedFunction)


def _check_device(t: torch.Tensor) -> bool:
    interpret = interpreting()
    if t.device.type == "cpu" and not interpret:
        raise RuntimeError("CPU tensors need Triton's interpreter: set TRITON_INTERPRET=1 "
                           "before triton is first imported")
    return interpret


def gemm(a: torch.Tensor, b: torch.Tensor, dtype: str, block_m: int, block_n: int, block_k: int,
         group_m: int, num_warps: int, num_stages: int, split_k: int,
         out: torch.Tensor | None = None, workspace: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b`` with one tile config; CPU tensors run in Triton's interpreter.

    Args:
        a: (M, K) input; b: (K, N) input, both of ``TORCH_DTYPES[dtype]``.
        dtype: "bf16" | "fp16" | "fp8" | "fp32" (IEEE fp32 FMA) | "tf32" (tensor-core tf32).
        out: optional (M, N) output of ``TORCH_OUT[dtype]``.
        workspace: optional fp32 (split_k, M, N) buffer for the split-K partials.
    """
    m, k = a.shape
    k2, n = b.shape
    if k != k2:
        raise ValueError(f"inner dimensions differ: a is {tuple(a.shape)}, b {tuple(b.shape)}")
    upcast = _check_device(a) and dtype == "bf16"
    if out is None:
        out = torch.empty((m, n), dtype=TORCH_OUT[dtype], device=a.device)
    k_per_split = triton.cdiv(triton.cdiv(k, split_k), block_k) * block_k
    grid = (triton.cdiv(m, block_m) * triton.cdiv(n, block_n), split_k)
    target = out
    if split_k > 1:
        if workspace is None:
            workspace = torch.empty((split_k, m, n), dtype=torch.float32, device=a.device)
        target = workspace
    stride_cs = target.stride(0) if split_k > 1 else 0
    stride_cm, stride_cn = target.stride(-2), target.stride(-1)
    _gemm_kernel[grid](
        a, b, target, m, n, k, k_per_split, group_m, a.stride(0), a.stride(1), b.stride(0),
        b.stride(1), stride_cs, stride_cm, stride_cn, BLOCK_M=block_m, BLOCK_N=block_n,
        BLOCK_K=block_k, INPUT_PRECISION=_PRECISION.get(dtype, "tf32"), UPCAST=upcast,
        num_warps=num_warps, num_stages=num_stages)
    if split_k > 1:
        block = 1024
        _splitk_reduce_kernel[(triton.cdiv(m * n, block),)](
            workspace, out, m * n, SPLIT_K=split_k, BLOCK=block, num_warps=4)
    return out


def attention_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, block_m: int,
                  block_n: int, num_warps: int, num_stages: int,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v over contiguous [batch, heads, seq, head_dim] tensors."""
    batch, heads, seq, head_dim = q.shape
    if not (q.is_contiguous() and k.is_contiguous() and v.is_contiguous()):
        raise ValueError("q, k and v must be contiguous [batch, heads, seq, head_dim]")
    if causal and block_m % block_n:
        raise ValueError(f"causal needs block_m % block_n == 0, got {block_m}, {block_n}")
    upcast = _check_device(q) and q.dtype == torch.bfloat16
    if out is None:
        out = torch.empty_like(q)
    qk_scale = 1.0 / math.sqrt(head_dim) * 1.4426950408889634  # log2(e): exp -> exp2
    grid = (triton.cdiv(seq, block_m), batch * heads)
    _attn_fwd_kernel[grid](
        q, k, v, out, qk_scale, heads, seq, q.stride(0), q.stride(1), q.stride(2),
        HEAD_DIM=head_dim, BLOCK_M=block_m, BLOCK_N=block_n, CAUSAL=causal, UPCAST=upcast,
        num_warps=num_warps, num_stages=num_stages)
    return out


__all__ = ["TORCH_DTYPES", "TORCH_OUT", "attention_fwd", "gemm", "interpreting"]
