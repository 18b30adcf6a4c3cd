"""Pipeline layout: which decoder layers each pipeline rank holds, even or not.

``pp * v`` virtual stages (chunks) take the model's layers in order; rank ``r`` holds chunks
``r, r + pp, r + 2pp, ...`` (Megatron-LM's interleaved schedule). A layer count that does not
divide ``pp * v`` is laid out the ways real stacks do it:

* explicit first/last-stage layer counts (Megatron-LM ``--decoder-first-pipeline-num-layers``
  / ``--decoder-last-pipeline-num-layers``): the rest is divided evenly over the middle
  stages;
* the embedding and/or the loss counted as one layer each (Megatron-LM
  ``--account-for-embedding-in-pipeline-split`` / ``--account-for-loss-in-pipeline-split``;
  DeepSpeed's ``type:transformer|embedding`` partition): ``layers + 1 (+1)`` units are split
  evenly, so the first chunk holds the embedding and one layer fewer, the last the loss;
* a balanced split (DeepSpeed's and torchtitan's automatic partitions, profile
  ``pipeline_split = "balanced"``): chunks of ``floor`` or ``ceil(layers / (pp * v))``.

Otherwise (Megatron's default) the layers must divide ``pp * v``. The schedule's bubble and
the peak memory then follow the largest stage (Narayanan et al. 2021 assume equal stages; a
slower stage sets the pace of every micro-batch).
"""

from __future__ import annotations

from typing import NamedTuple


class Layout(NamedTuple):
    """Decoder layers per chunk and per rank; ``error`` says why no layout exists."""

    chunks: tuple[int, ...]  # decoder layers of virtual stage k (k = 0 .. pp*v-1)
    ranks: tuple[tuple[int, int], ...]  # per rank: (dense layers, MoE layers)
    error: str = ""
    #: the first rank of every distinct (dense, MoE, first, last) kind: where maxima occur
    #: (1F1B keeps ``pp - r`` micro-batches in flight, so the earliest rank of a kind is
    #: that kind's memory peak; time depends only on the kind)
    rep: tuple[int, ...] = ()

    def layers(self, rank: int) -> int:
        d, m = self.ranks[rank]
        return d + m


def _split(n: int, parts: int) -> list[int]:
    """``n`` items in ``parts`` consecutive groups, sizes differing by at most one."""
    q, r = divmod(n, parts)
    return [q + 1 if i < r else q for i in range(parts)]


def _chunks(layers: int, pp: int, v: int, first: int, last: int, emb: bool, loss: bool,
            balanced: bool) -> tuple[list[int], str]:
    n = pp * v
    if first or last:
        if pp < 2:
            return [], "pp_first_stage_layers / pp_last_stage_layers need pp > 1"
        if emb or loss:
            return [], ("give first/last-stage layer counts or count the embedding/loss as "
                        "layers, not both")
        f = first if first else -1
        l_ = last if last else -1
        middle = pp - 2
        rest = layers - max(f, 0) - max(l_, 0)
        unset = (f < 0) + (l_ < 0)
        if rest < 0:
            return [], (f"pp_first_stage_layers + pp_last_stage_layers = {max(f, 0) + max(l_, 0)}"
                        f" exceed num_layers {layers}")
        slots = middle + unset
        if slots == 0:
            if rest:
                return [], (f"with pp = 2 the first and last stage layers must add up to "
                            f"num_layers {layers}")
            per = 0
        elif rest % slots:
            return [], (f"the {rest} layers left after the first/last stages do not divide "
                        f"evenly over {slots} other stage(s)")
        else:
            per = rest // slots
        stage = [per] * pp
        stage[0] = f if f >= 0 else per
        stage[-1] = l_ if l_ >= 0 else per
        if 0 in stage:  # a stage of GPUs with nothing to run
            return [], (f"pp_first_stage_layers/pp_last_stage_layers leave {stage.count(0)} "
                        f"of the {pp} stages without layers (first {stage[0]}, others {per}, "
                        f"last {stage[-1]})")
        out = [0] * n
        for r in range(pp):
            for j, c in enumerate(_split(stage[r], v)):
                out[j * pp + r] = c
        return out, ""
    units = layers + int(emb) + int(loss)
    if units % n:
        if not balanced:
            what = "num_layers" if not (emb or loss) else "num_layers + embedding/loss units"
            return [], (f"{what} {units} is not divisible by pp*pp_interleave = {n} (set "
                        "pp_first_stage_layers/pp_last_stage_layers or count the embedding "
                        "and loss as layers with pp_embedding_as_layer/pp_loss_as_layer)")
        sizes = _split(units, n)
    else:
        sizes = [units // n] * n
    if emb:
        sizes[0] -= 1
    if loss:
        sizes[-1] -= 1
    if min(sizes) < 0:
        return [], f"{n} virtual stages leave a stage with fewer than zero layers"
    return sizes, ""


_CACHE: dict[tuple, Layout] = {}


def layout(layers: int, first_dense: int, pp: int, v: int, first: int = 0, last: int = 0,
           emb: bool = False, loss: bool = False, balanced: bool = False) -> Layout:
    """Layers of every chunk and rank; the leading ``first_dense`` layers are dense (MoE)."""
    key = (layers, first_dense, pp, v, first, last, emb, loss, balanced)
    out = _CACHE.get(key)
    if out is not None:
        return out
    chunks, err = _chunks(layers, pp, v, first, last, emb, loss, balanced)
    if err:
        out = Layout((), (), err)
    else:
        dense = [0] * pp
        total = [0] * pp
        start = 0
        for k, c in enumerate(chunks):
            r = k % pp
            total[r] += c
            dense[r] += max(0, min(first_dense, start + c) - start)
            start += c
        ranks = [(d, t - d) for d, t in zip(dense, total)]
        out = Layout(tuple(chunks), tuple(ranks), "", _representatives(ranks))
    if len(_CACHE) > 4096:
        _CACHE.clear()
    _CACHE[key] = out
    return out


def _representatives(ranks: list[tuple[int, int]]) -> tuple[int, ...]:
    pp = len(ranks)
    seen: set[tuple] = set()
    out = []
    for r, (d, m) in enumerate(ranks):
        kind = (d, m, r == 0, r == pp - 1)
        if kind not in seen:
            seen.add(kind)
            out.append(r)
    return tuple(out)


__all__ = ["Layout", "layout"]
