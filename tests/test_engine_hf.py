"""The transformers engine and its keyed sampler, on a random tiny Llama (fp32)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from anchor_service.config import ModelSpec
from anchor_service.core.rubric import judge_messages, parse_verdict_json, verdict_schema
from anchor_service.engines.base import (
    ChoiceQuery,
    Engine,
    EngineError,
    GenRequest,
    SamplingParams,
)
from anchor_service.engines.hf import HFEngine, cpu_has_native_bf16, resolve_dtype
from anchor_service.engines.json_constraint import UnsupportedSchemaError
from anchor_service.engines.registry import ModelNotFoundError
from anchor_service.engines.sampler import sample_keyed, top_p_filter

DIGITS = ["3", "2", "1", "0"]


def _engine(model_dir: Path, **spec) -> HFEngine:
    return HFEngine(ModelSpec(name=str(model_dir), dtype="float32", device="cpu", **spec))


@pytest.fixture(scope="module")
def engine(random_model_dir: Path) -> HFEngine:
    return _engine(random_model_dir, batch_size=5)


def _requests(n: int = 5) -> list[GenRequest]:
    """Chat and plain prompts of clearly different lengths."""
    lengths = [1, 9, 3, 20, 5, 14, 2][:n]
    reqs = []
    for i, k in enumerate(lengths):
        text = " ".join(f"word{j}" for j in range(k))
        prompt = text if i % 3 == 2 else [{"role": "user", "content": f"Question {i}: {text}"}]
        reqs.append(GenRequest(prompt=prompt, key=(7, f"demo/train/{i}", 0)))
    return reqs


# --- sampler ------------------------------------------------------------------------------


def test_keyed_draws_follow_the_tempered_softmax():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    temperature = 0.7
    keys = [(0, "p", i) for i in range(4000)]
    draws = sample_keyed(logits.expand(len(keys), -1), keys, 0, temperature)
    freq = torch.bincount(draws, minlength=4).float() / len(keys)
    expected = (logits / temperature).softmax(-1)
    # 4000 draws: the standard error of each frequency is below 0.008.
    assert torch.allclose(freq, expected, atol=0.03), (freq, expected)


def test_top_p_keeps_the_smallest_set_reaching_the_mass():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = torch.isfinite(top_p_filter(probs.log(), 0.75))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(top_p_filter(probs.log(), 0.1))
    assert kept.tolist() == [[True, False, False, False]]
    assert torch.isfinite(top_p_filter(probs.log(), 1.0)).all()


def test_sampling_never_draws_outside_top_p():
    logits = torch.tensor([3.0, 2.9, -5.0, -5.0]).expand(500, -1)
    keys = [(1, "q", i) for i in range(500)]
    # After temperature 5 the probabilities are about [0.42, 0.41, 0.085, 0.085]: top-p 0.8
    # keeps the first two only (temperature first, then top-p, as in vLLM and transformers).
    draws = sample_keyed(logits, keys, 0, temperature=5.0, top_p=0.8)
    assert set(draws.tolist()) == {0, 1}


# --- generation ---------------------------------------------------------------------------


def test_engine_satisfies_the_protocol(engine):
    assert isinstance(engine, Engine)
    assert engine.model_id == engine.spec.name


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_sample_is_the_same_alone_or_in_any_batch(random_model_dir, temperature):
    reqs = _requests(5)
    params = SamplingParams(temperature=temperature, top_p=0.95, max_tokens=10)
    batched = _engine(random_model_dir, batch_size=5).generate(reqs, params)
    single_engine = _engine(random_model_dir, batch_size=1)
    alone = [single_engine.generate([r], params)[0] for r in reqs]
    reversed_batch = single_engine.generate(list(reversed(reqs)), params)[::-1]
    assert [c.text for c in batched] == [c.text for c in alone]
    assert [c.text for c in batched] == [c.text for c in reversed_batch]
    assert [c.key for c in batched] == [r.key for r in reqs]
    assert all(c.num_tokens == 10 and c.finish_reason == "length" for c in batched)


def test_sampled_text_follows_the_key(engine):
    base = _requests(1)[0]
    params = SamplingParams(temperature=1.0, max_tokens=8)
    texts = {
        engine.generate([GenRequest(base.prompt, key=(0, "p", i))], params)[0].text
        for i in range(6)
    }
    assert len(texts) > 1  # different keys, different draws
    again = engine.generate([GenRequest(base.prompt, key=(0, "p", 0))], params)[0].text
    first = engine.generate([GenRequest(base.prompt, key=(0, "p", 0))], params)[0].text
    assert again == first


def test_greedy_equals_argmax_of_full_forward_passes(engine):
    req = _requests(2)[1]
    out = engine.generate([req], SamplingParams(temperature=0, max_tokens=6))[0]
    ids = engine._encode(engine.render(req.prompt))
    with torch.no_grad():
        for _ in range(6):
            logits = engine.model(torch.tensor([ids])).logits[0, -1]
            ids.append(int(logits.argmax()))
    expected = engine.tokenizer.decode(ids[-6:], skip_special_tokens=True)
    assert out.text == expected


def test_logprobs_are_the_full_forward_log_softmax_of_each_generated_token(engine):
    reqs = _requests(3)
    sampled = SamplingParams(temperature=0.8, max_tokens=6)
    plain = engine.generate(reqs, sampled)
    with_lp = engine.generate(reqs, SamplingParams(temperature=0.8, max_tokens=6, logprobs=4))
    # Asking for logprobs changes nothing of the text.
    assert [c.text for c in with_lp] == [c.text for c in plain]
    assert all(c.logprobs is None for c in plain)
    req = reqs[1]
    out = engine.generate([req], SamplingParams(max_tokens=6, logprobs=4))[0]
    ids = engine._encode(engine.render(req.prompt))
    assert len(out.logprobs) == 6 and "".join(t.token for t in out.logprobs) == out.text
    with torch.no_grad():
        for entry in out.logprobs:
            logp = engine.model(torch.tensor([ids])).logits[0, -1].log_softmax(-1)
            chosen = int(logp.argmax())
            assert entry.token == engine.tokenizer.decode([chosen])
            assert entry.logprob == pytest.approx(float(logp[chosen]), abs=1e-4)
            assert len(entry.top) == 4
            assert max(entry.top.values()) == pytest.approx(entry.logprob, abs=1e-6)
            ids.append(chosen)


def test_logprobs_stop_with_the_text_at_a_stop_string(engine):
    reqs = _requests(3)
    free = engine.generate(reqs, SamplingParams(max_tokens=12))
    target = free[1].text
    stop = target[len(target) // 2 : len(target) // 2 + 3]
    cut = engine.generate(reqs, SamplingParams(max_tokens=12, stop=[stop], logprobs=0))
    text = "".join(t.token for t in cut[1].logprobs)
    assert cut[1].text.startswith(text) and len(text) >= len(cut[1].text) - 8
    assert all(t.top == {} for t in cut[1].logprobs)


def test_checkpoint_generation_defaults_do_not_change_decoding(random_model_dir, tmp_path):
    copy = tmp_path / "opinionated"
    for f in random_model_dir.iterdir():
        (copy / f.name).parent.mkdir(exist_ok=True)
        (copy / f.name).write_bytes(f.read_bytes())
    gen_cfg = json.loads((copy / "generation_config.json").read_text())
    gen_cfg.update(do_sample=True, temperature=0.3, top_k=5, repetition_penalty=1.5)
    (copy / "generation_config.json").write_text(json.dumps(gen_cfg))
    reqs = _requests(3)
    for params in (SamplingParams(max_tokens=8), SamplingParams(temperature=0.9, max_tokens=8)):
        plain = _engine(random_model_dir).generate(reqs, params)
        assert [c.text for c in _engine(copy).generate(reqs, params)] == [c.text for c in plain]


def test_stop_string_cuts_the_text_and_reports_stop(engine):
    reqs = _requests(3)
    free = engine.generate(reqs, SamplingParams(max_tokens=12))
    target = free[1].text
    stop = target[len(target) // 2 : len(target) // 2 + 3]
    assert stop.strip(), "pick a visible stop string"
    cut = engine.generate(reqs, SamplingParams(max_tokens=12, stop=[stop]))
    assert cut[1].text == target[: target.find(stop)]
    assert cut[1].finish_reason == "stop"
    assert cut[1].num_tokens < 12
    # A stop string in one row never changes another row's text (beyond its own stops).
    for free_c, cut_c in zip(free, cut, strict=True):
        expected = free_c.text[: free_c.text.find(stop)] if stop in free_c.text else free_c.text
        assert cut_c.text == expected


def test_eos_token_ends_generation(random_model_dir, tmp_path):
    probe = _engine(random_model_dir)
    req = _requests(1)[0]
    prompt_ids = probe._encode(probe.render(req.prompt))
    out_ids = probe.model.generate(
        torch.tensor([prompt_ids]), max_new_tokens=6, do_sample=False, pad_token_id=probe.pad_id
    )[0, len(prompt_ids) :].tolist()
    k = next(i for i in range(2, 6) if out_ids[i] not in out_ids[:i])
    # A copy of the model whose end-of-sequence token is one it emits after k other tokens.
    copy = tmp_path / "eos-model"
    probe.model.save_pretrained(copy)
    probe.tokenizer.save_pretrained(copy)
    gen_cfg = json.loads((copy / "generation_config.json").read_text())
    gen_cfg["eos_token_id"] = [out_ids[k]]
    (copy / "generation_config.json").write_text(json.dumps(gen_cfg))
    out = _engine(copy).generate([req], SamplingParams(max_tokens=10))[0]
    assert out.finish_reason == "stop"
    assert out.num_tokens == k + 1
    assert out.text == probe.tokenizer.decode(out_ids[:k], skip_special_tokens=True)


def test_long_prompt_is_cut_from_the_left(random_model_dir):
    engine = _engine(random_model_dir, max_model_len=128)
    long = GenRequest(" ".join(f"w{i}" for i in range(400)), key=(0, "long", 0))
    out = engine.generate([long], SamplingParams(max_tokens=8))[0]
    assert out.num_tokens == 8
    ids = engine._encode(long.prompt)[-(128 - 8) :]
    short = GenRequest(engine.tokenizer.decode(ids), key=(0, "long", 0))
    assert engine._encode(short.prompt) == ids
    assert engine.generate([short], SamplingParams(max_tokens=8))[0].text == out.text


def test_empty_request_list_gives_no_completions(engine):
    assert engine.generate([], SamplingParams()) == []


# --- judge probabilities ------------------------------------------------------------------


def _queries() -> list[ChoiceQuery]:
    slots = [f"\nCriterion {i} ({name}) score: " for i, name in enumerate("abcde")]
    long_chat = [{"role": "user", "content": "Rate this explanation. " + "data " * 60}]
    return [
        ChoiceQuery(prefix=long_chat, slots=slots),
        ChoiceQuery(prefix="A short plain prefix.", slots=slots[:2] + ["", "x"]),
        ChoiceQuery(prefix=[{"role": "user", "content": "Mid-size prompt " * 7}], slots=slots),
    ]


def _naive_probs(engine: HFEngine, query: ChoiceQuery, tokens: list[str]):
    ids = [engine._encode(t)[0] for t in tokens]
    prefix = engine.render(query.prefix)
    result = []
    with torch.no_grad():
        for slot in query.slots:
            seq = engine._encode(prefix + slot)
            probs = engine.model(torch.tensor([seq])).logits[0, -1].float().softmax(-1)
            result.append({t: float(probs[i]) for t, i in zip(tokens, ids, strict=True)})
    return result


@pytest.mark.parametrize("batch_size", [1, 2, 16])
def test_choice_probs_equal_the_naive_full_sequence_computation(random_model_dir, batch_size):
    engine = _engine(random_model_dir, batch_size=batch_size)
    queries = _queries()
    got = engine.choice_probs(queries, DIGITS)
    assert [len(g) for g in got] == [len(q.slots) for q in queries]
    for query, per_slot in zip(queries, got, strict=True):
        for slot_got, slot_naive in zip(per_slot, _naive_probs(engine, query, DIGITS), strict=True):
            assert slot_got.keys() == set(DIGITS)
            for token in DIGITS:
                assert slot_got[token] == pytest.approx(slot_naive[token], abs=1e-4, rel=1e-3)
    # Not renormalised over the four digits: the rest of the vocabulary keeps its mass.
    assert sum(got[0][0].values()) < 0.99


def test_choice_probs_run_the_shared_prefix_once(engine):
    # Token counts, not seconds: speed is measured in bench/, never asserted in tests.
    query = ChoiceQuery(
        prefix=[{"role": "user", "content": "Judge: " + "long rubric text " * 120}],
        slots=[f"\ncriterion {name}: " for name in "abcde"],
    )
    seen: list[int] = []
    hook = engine.model.register_forward_pre_hook(
        lambda _m, args, kwargs: seen.append(kwargs["input_ids"].numel()), with_kwargs=True
    )
    try:
        engine.choice_probs([query], DIGITS)
    finally:
        hook.remove()
    prefix_len = len(engine._encode(engine.render(query.prefix)))
    assert sum(seen) < prefix_len + 5 * 20  # the prefix once, then only the slot tokens


def _rubric_queries() -> list[ChoiceQuery]:
    """Queries that share a long rubric and differ after it (as the judge's do)."""
    rubric = "Grade on these criteria. " + "criterion text " * 40
    slots = [f"\ncriterion {name}: " for name in "abcde"]
    items = ["short item", "a much longer item " * 9, "mid item " * 4, ""]
    return [
        ChoiceQuery(prefix=[{"role": "user", "content": rubric + item}], slots=slots)
        for item in items
    ]


@pytest.mark.parametrize("batch_size", [2, 16])
def test_choice_probs_with_a_batch_wide_prefix_equal_the_naive_computation(
    random_model_dir, batch_size
):
    engine = _engine(random_model_dir, batch_size=batch_size)
    queries = _rubric_queries() + _queries()
    got = engine.choice_probs(queries, DIGITS)
    for query, per_slot in zip(queries, got, strict=True):
        for slot_got, slot_naive in zip(per_slot, _naive_probs(engine, query, DIGITS), strict=True):
            for token in DIGITS:
                assert slot_got[token] == pytest.approx(slot_naive[token], abs=1e-4, rel=1e-3)


def test_choice_probs_run_a_batch_wide_prefix_once(engine):
    # The rubric every query shares is computed once per batch, not once per query.
    queries = _rubric_queries()
    seen: list[int] = []
    hook = engine.model.register_forward_pre_hook(
        lambda _m, args, kwargs: seen.append(kwargs["input_ids"].numel()), with_kwargs=True
    )
    try:
        engine.choice_probs(queries, DIGITS)
    finally:
        hook.remove()
    encoded = [engine._encode(engine.render(q.prefix)) for q in queries]
    lengths = [len(e) for e in encoded]
    common = 0
    while common < min(lengths) and len({e[common] for e in encoded}) == 1:
        common += 1
    assert common > 100
    # Padded forwards count pads too: bound by the common prefix once + each query's widest rest.
    own_width = max(lengths) - common
    assert sum(seen) <= common + len(queries) * own_width + len(queries) * 5 * 20


def test_check_single_tokens_names_each_offending_token(engine):
    engine.check_single_tokens(DIGITS)
    with pytest.raises(EngineError) as err:
        engine.check_single_tokens(["3", "Excellent work", "Unsatisfactory"])
    msg = str(err.value)
    assert "'Excellent work'" in msg and "'Unsatisfactory'" in msg and "'3'" not in msg
    with pytest.raises(EngineError, match="Unsatisfactory"):
        engine.choice_probs(_queries()[:1], ["3", "Unsatisfactory"])


# --- constrained decoding (SamplingParams.json_schema) -------------------------------------


def _judge_requests(n: int) -> list[GenRequest]:
    from anchor_service.scoring.sanity import load_checkset

    items = [item for pair in load_checkset() for item in pair][:n]
    return [GenRequest(judge_messages(it), key=(3, "judge", i)) for i, it in enumerate(items)]


def _assert_canonical_verdicts(completions) -> None:
    for c in completions:
        verdicts = parse_verdict_json(c.text)
        assert c.text == json.dumps(verdicts), c.text  # keys in CRITERIA order, json.dumps spacing
        assert c.finish_reason == "stop"


def test_constrained_greedy_completion_is_verdict_json_on_the_tiny_model(tiny_model_dir):
    engine = _engine(tiny_model_dir, batch_size=4)
    reqs = _judge_requests(4)
    free = engine.generate(reqs, SamplingParams(max_tokens=60))
    constrained = engine.generate(
        reqs, SamplingParams(max_tokens=200, json_schema=verdict_schema())
    )
    _assert_canonical_verdicts(constrained)
    # The tiny model was trained to explain, not to grade: left free it writes no verdicts.
    assert not any(c.text.lstrip().startswith('{"logical_coherence"') for c in free)


# Small, so that the keyed sampler (most of the time per step) runs few steps.
SMALL_SCHEMA = {
    "type": "object",
    "properties": {"ok": {"enum": ["yes", "no"]}, "hue": {"enum": ["red", "green", "blue"]}},
    "required": ["ok", "hue"],
}


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_constrained_sample_is_the_same_alone_or_in_any_batch(random_model_dir, temperature):
    reqs = _requests(4)
    params = SamplingParams(
        temperature=temperature, top_p=0.9, max_tokens=40, json_schema=SMALL_SCHEMA
    )
    batched = _engine(random_model_dir, batch_size=4).generate(reqs, params)
    single_engine = _engine(random_model_dir, batch_size=1)
    alone = [single_engine.generate([r], params)[0] for r in reqs]
    reversed_batch = _engine(random_model_dir, batch_size=3).generate(reqs[::-1], params)[::-1]
    for c in batched:
        value = json.loads(c.text)
        assert c.text == json.dumps(value) and list(value) == ["ok", "hue"]
        assert value["ok"] in ("yes", "no") and value["hue"] in ("red", "green", "blue")
        assert c.finish_reason == "stop"
    assert [c.text for c in batched] == [c.text for c in alone]
    assert [c.text for c in batched] == [c.text for c in reversed_batch]


def test_unsupported_json_schema_is_refused_naming_the_supported_shape(engine):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    with pytest.raises(UnsupportedSchemaError, match="enum-valued string properties") as info:
        engine.generate(_requests(1), SamplingParams(json_schema=schema))
    assert "'n'" in str(info.value) and "vllm or openai" in str(info.value)


# --- set-up -------------------------------------------------------------------------------


def test_hf_engine_imports_without_ray_or_pydantic():
    code = (
        "import sys; sys.modules['ray'] = None; sys.modules['pydantic'] = None\n"
        "import anchor_service.engines.hf, anchor_service.engines.registry\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_auto_dtype_is_bf16_on_gpus_and_native_bf16_cpus():
    assert resolve_dtype("auto", "cuda") == torch.bfloat16
    assert resolve_dtype("auto", "cpu") == (
        torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    )
    assert resolve_dtype("float32", "cuda") == torch.float32
    assert resolve_dtype("float16", "cpu") == torch.float16


def test_the_engine_leaves_torch_threads_to_the_process_start(random_model_dir):
    # Threads are set once per process (anchor_service.compute.start_threads), not per engine.
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    try:
        _engine(random_model_dir, torch_threads=other)
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)


def test_unknown_model_and_adapter_raise_model_not_found(random_model_dir, tmp_path):
    with pytest.raises(ModelNotFoundError):
        _engine(tmp_path / "nothing-here")
    with pytest.raises(ModelNotFoundError, match="adapter_config.json"):
        _engine(random_model_dir, adapter=str(tmp_path))


def test_lora_adapter_changes_outputs_as_peft_does(random_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = _engine(random_model_dir)
    torch.manual_seed(1)
    peft_model = get_peft_model(
        base.model,
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    peft_model.save_pretrained(tmp_path / "adapter")
    query = _queries()[1]
    ids = torch.tensor([base._encode(base.render(query.prefix) + query.slots[0])])
    with torch.no_grad():
        expected = peft_model(ids).logits[0, -1].softmax(-1)
    adapted = _engine(random_model_dir, adapter=str(tmp_path / "adapter"))
    assert adapted.model_id.endswith("adapter")
    got = adapted.choice_probs([query], DIGITS)[0][0]
    plain = _engine(random_model_dir).choice_probs([query], DIGITS)[0][0]
    digit_ids = [base._encode(d)[0] for d in DIGITS]
    for d, i in zip(DIGITS, digit_ids, strict=True):
        assert got[d] == pytest.approx(float(expected[i]), abs=1e-5)
    assert any(abs(got[d] - plain[d]) > 1e-6 for d in DIGITS)


# --- the real embedded model --------------------------------------------------------------


@pytest.mark.slow
def test_embedded_model_answers_an_explain_prompt(embedded_model_dir):
    from anchor_service.core.parsing import OK, parse_response
    from anchor_service.core.prompts import explain_prompt

    engine = HFEngine(ModelSpec(name="embedded", torch_threads=2))
    assert engine.tokenizer.chat_template
    options = ["10", "12", "13", "15"]
    out = engine.generate(
        [GenRequest(explain_prompt("What is 7 + 5?", options), key=(0, "slow", 0))],
        SamplingParams(max_tokens=48),
    )[0]
    assert out.text.strip()
    parsed = parse_response(out.text, options)
    assert parsed.parse_status == OK and parsed.answer in "ABCD", out.text


def test_trained_tiny_model_ends_its_turn_with_eos(tiny_model_dir):
    from anchor_service.core.parsing import OK, parse_response
    from anchor_service.core.prompts import explain_prompt
    from anchor_service.demo.task import generate_demo

    engine = _engine(tiny_model_dir, batch_size=4)
    examples = generate_demo(4, 5, "test")
    reqs = [
        GenRequest(explain_prompt(e.question, e.options), key=(5, e.prompt_id, 0)) for e in examples
    ]
    out = engine.generate(reqs, SamplingParams(temperature=0.8, top_p=0.95, max_tokens=200))
    assert [c.finish_reason for c in out] == ["stop"] * 4
    assert all("<|im_end|>" not in c.text for c in out)
    assert all(
        parse_response(c.text, e.options).parse_status == OK
        for c, e in zip(out, examples, strict=True)
    )


@pytest.mark.slow
def test_embedded_model_writes_verdict_json_under_the_schema(embedded_model_dir):
    # One thread: two OpenMP threads on 2 shared cores spin against other work (15x slower).
    engine = HFEngine(ModelSpec(name="embedded", dtype="float32", torch_threads=1, batch_size=2))
    reqs = _judge_requests(2)
    greedy = engine.generate(reqs, SamplingParams(max_tokens=120, json_schema=verdict_schema()))
    _assert_canonical_verdicts(greedy)
    sampled = SamplingParams(temperature=1.0, max_tokens=120, json_schema=verdict_schema())
    batched = engine.generate(reqs, sampled)
    _assert_canonical_verdicts(batched)
    assert engine.generate(reqs[1:], sampled)[0].text == batched[1].text


def test_top_p_filter_keeps_the_nucleus_of_every_row_wide_or_narrow():
    from anchor_service.engines.sampler import top_p_filter

    gen = torch.Generator().manual_seed(0)
    # row 0 peaked (nucleus in the top tokens), row 1 flat (nucleus wider than the fast path)
    logits = torch.stack(
        [torch.randn(5000, generator=gen) * 8, torch.randn(5000, generator=gen) * 0.1]
    )
    for top_p in (0.5, 0.9):
        out = top_p_filter(logits, top_p)
        for row in range(2):
            probs = logits[row].softmax(-1)
            kept = ~torch.isinf(out[row])
            order = probs.argsort(descending=True)
            n = int(kept.sum())
            # the kept tokens are the n most likely, their mass reaches top_p, one fewer's does not
            assert set(order[:n].tolist()) == set(kept.nonzero().flatten().tolist())
            assert probs[order[:n]].sum() >= top_p - 1e-5
            assert probs[order[: n - 1]].sum() < top_p + 1e-5
    assert int((~torch.isinf(top_p_filter(logits, 0.9)[1])).sum()) > 256


def test_explicit_bf16_on_a_cpu_without_native_bf16_is_kept_and_warned_about(monkeypatch, caplog):
    from anchor_service.engines import hf

    monkeypatch.setattr(hf, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="anchor_service.engines.hf"):
        assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
        assert resolve_dtype("auto", "cpu") == torch.float32
    warned = [r.getMessage() for r in caplog.records if "native bf16" in r.getMessage()]
    assert len(warned) == 1 and "'auto'" in warned[0]
    caplog.clear()
    monkeypatch.setattr(hf, "cpu_has_native_bf16", lambda: True)
    with caplog.at_level("WARNING", logger="anchor_service.engines.hf"):
        assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
        assert resolve_dtype("bfloat16", "cuda") == torch.bfloat16
    assert not caplog.records


def test_the_demo_config_lets_the_machine_choose_its_dtype():
    from anchor_service.config import load_config
    from anchor_service.resources import demo_config_path

    cfg = load_config(demo_config_path(), [])
    assert (cfg.policy.dtype, cfg.judge.model.dtype) == ("auto", "auto")
