"""DeepSpeed runs of `repro.train.ntp.train_causal_lm`, one after another in one process.

The paper scale trains under ZeRO-3 (configs/deepspeed/zero3.json, TrainConfig.deepspeed_config) several
times in one process: NTP, then every RA3 M-step round, with the E-step training the same model between
rounds. accelerate and DeepSpeed expect one engine per process; this module makes each run self-contained:

- `accelerator(cfg)` gives the run its `Accelerator` and, under DeepSpeed, owns accelerate's process-wide
  state for the run's duration, leaving nothing of DeepSpeed behind afterwards;
- `gather_fp32` and `give_back` return the model to the caller as a plain module holding the trained fp32
  master weights, and drop the references DeepSpeed keeps to a destroyed engine, so its memory is freed;
- `plain_copy` and `copy_fp32_into` keep a plain copy of the current weights beside a partitioned model, for
  the RA3 E-step's many small no-grad forwards (rollouts, scoring), which would all-gather every layer's
  weights on every forward of a partitioned model;
- `whole_model_leaf`, `leaf_hooks_off`, `hold_until_step` and `reduce_gradients` let the E-step's policy loss,
  which calls the output head a different number of times on each rank, train through the engine;
- `optimizer_state` and `load_optimizer_state` hand a schedule window's ZeRO-3 optimizer state (each
  rank's partition of the Adam moments) to the next window, without the previous window's weights.

On CPUs the engine runs on DeepSpeed's CPU backend over gloo, which is how
tests/pipeline/test_deepspeed_stages.py rehearses all of it with two processes. Written against accelerate
1.15 and DeepSpeed 0.19: each workaround says what it works around.
"""

import contextlib
import copy
import gc
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch

from repro.core import ranks
from repro.core.config import CONFIG_DIR
from repro.core.scale import TrainConfig
from repro.train import precision


def _deepspeed_plugin(cfg: TrainConfig, overrides: dict | None):
    from accelerate.utils import DeepSpeedPlugin

    plugin = DeepSpeedPlugin(hf_ds_config=str(CONFIG_DIR.parent / cfg.deepspeed_config))
    # No dataloader goes through `prepare`, so accelerate cannot fill these "auto" values itself.
    ds = plugin.deepspeed_config
    for key, value in (("train_micro_batch_size_per_gpu", cfg.batch_size),
                       ("gradient_accumulation_steps", cfg.grad_accum_steps),
                       ("gradient_clipping", cfg.max_grad_norm)):
        if ds.get(key, "auto") == "auto":
            ds[key] = value
    for key, value in (overrides or {}).items():  # a section (a dict) is updated, not replaced
        ds[key] = ds.get(key, {}) | value if isinstance(value, dict) else value
    return plugin


def start_process_group():
    """The run's process group, made before DeepSpeed starts; returns accelerate's distributed type.

    Under torchrun, accelerate's `PartialState` makes it as `repro.eval.barrier` does (gloo on CPUs, NCCL on
    GPUs): DeepSpeed's own start knows no CPU backend and would leave every rank a world of one. A process
    started without a launcher (plain `ra3-repro ...`) becomes rank 0 of a world of one, as a launcher would
    make it: LOCAL_RANK, RANK and WORLD_SIZE set (DeepSpeed's engine asserts LOCAL_RANK) and a process group
    of its own. Without them DeepSpeed looks for an MPI launcher instead and fails on a machine without
    mpi4py, then refuses to start.

    DeepSpeed's communication is then started on that group: transformers' ZeRO-3 `from_pretrained` (TRL's
    trainer loads its model so) sizes its partitions by DeepSpeed's world, which is one until started, and
    TrainingArguments starts it only on GPUs."""
    import deepspeed
    import torch.distributed as dist
    from accelerate import PartialState

    distributed_type = PartialState(cpu=not torch.cuda.is_available()).distributed_type
    if ranks.world_size() == 1 and not dist.is_initialized():
        for name in ("LOCAL_RANK", "RANK"):
            os.environ.setdefault(name, "0")
        os.environ.setdefault("WORLD_SIZE", "1")
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", store=dist.HashStore(), rank=0,
                                world_size=1)
    deepspeed.init_distributed()  # finds the group made above
    return distributed_type


@contextlib.contextmanager
def accelerator(cfg: TrainConfig, overrides: dict | None = None) -> Iterator:
    """The `Accelerator` of one training run; `overrides` replace values of the DeepSpeed JSON (a dict updates
    its section), where the RA3 E-step's engine differs from the M-step's (clipping, accumulation, micro-batch).

    Without DeepSpeed, accelerate's process-wide state carries over from run to run as it always has.
    With DeepSpeed the run owns it: accelerate holds one DeepSpeed plugin per process and refuses a
    second `Accelerator` given one (NotImplementedError), and an `Accelerator` made after a plain one
    would silently drop its plugin. So the state is reset before the run and again after it, once the
    engine is freed, leaving no DeepSpeed setting behind for later code (transformers' ZeRO-3 flag would
    partition every model `from_pretrained` loads; ACCELERATE_USE_DEEPSPEED would give TRL's trainer a
    default DeepSpeed plugin): transformers' Trainer resets the state the same way between
    hyperparameter trials. The process group (accelerate's `PartialState`) stays for the whole process.
    """
    from accelerate import Accelerator

    cfg = precision.effective(cfg)
    cpu = not torch.cuda.is_available()
    if not cfg.deepspeed_config:
        yield Accelerator(cpu=cpu, mixed_precision=cfg.mixed_precision,
                          gradient_accumulation_steps=cfg.grad_accum_steps)
        return
    run = None
    with owned_state(lambda: run):
        # cpu=False even on CPUs: accelerate drops the plugin when told cpu=True; DeepSpeed's CPU
        # accelerator then runs the engine on the CPU.
        run = Accelerator(cpu=False, mixed_precision=cfg.mixed_precision,
                          gradient_accumulation_steps=cfg.grad_accum_steps,
                          deepspeed_plugin=_deepspeed_plugin(cfg, overrides))
        yield run


@contextlib.contextmanager
def owned_state(run_of: Callable[[], Any]) -> Iterator[None]:
    """One DeepSpeed run owns accelerate's process-wide state for the block (see `accelerator`; TRL's GRPO
    trainer, which makes its own `Accelerator`, runs in one too): the process group started and the state
    reset before it; after it the run's `Accelerator` (`run_of()`, None when the block failed before making
    one) freed, and accelerate's state, transformers' ZeRO-3 flag and the environment put back."""
    from accelerate.state import AcceleratorState

    distributed_type = start_process_group()
    AcceleratorState._reset_state()
    use_deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED")
    try:
        yield
    finally:
        _release(run_of(), distributed_type, use_deepspeed)


def _release(run, distributed_type, use_deepspeed: str | None) -> None:
    """Free the run's engine and put accelerate's state and the environment back as `owned_state` found them.
    Until then transformers partitions every model `from_pretrained` loads (its ZeRO-3 flag), so an
    evaluation after the run would wait in collectives the other ranks never join."""
    from accelerate import PartialState
    from accelerate.state import AcceleratorState
    from transformers.integrations import unset_hf_deepspeed_config

    if run is not None:
        if run.deepspeed_engine_wrapped is not None:
            engine = run.deepspeed_engine_wrapped.engine
            # The engine's destroy (DeepSpeed 0.19) leaves these two hooks on the model: they would run the
            # dead engine's forward prologue on every later forward of the model and keep it all alive.
            for hook in (engine.module_forward_pre_hook, engine.module_forward_post_hook):
                if hook is not None:
                    hook.remove()
        run.free_memory()
    AcceleratorState._reset_state()
    # AcceleratorState wrote DEEPSPEED into the process group's state, where the next plain Accelerator
    # would read it and look for a plugin that is gone.
    PartialState._shared_state["distributed_type"] = distributed_type
    unset_hf_deepspeed_config()
    if use_deepspeed is None:
        os.environ.pop("ACCELERATE_USE_DEEPSPEED", None)
    else:
        os.environ["ACCELERATE_USE_DEEPSPEED"] = use_deepspeed


def stage(run) -> int | None:
    """The ZeRO stage of a DeepSpeed run, None without DeepSpeed."""
    plugin = run.state.deepspeed_plugin
    return None if plugin is None else plugin.zero_stage


def optimizer_state(optimizer) -> dict:
    """This rank's part of a ZeRO-3 optimizer's state: the wrapped torch optimizer's state dict (Adam's
    moments and step counts over this rank's partition), as DeepSpeed's checkpoints hold it, without the
    fp32 weights beside it. `optimizer` is the one `accelerator.prepare` returned."""
    from deepspeed.checkpoint.constants import OPTIMIZER_STATE_DICT

    return optimizer.optimizer.state_dict()[OPTIMIZER_STATE_DICT]


def load_optimizer_state(optimizer, state: dict, world: int) -> None:
    """Load this rank's `optimizer_state` into the ZeRO-3 optimizer, keeping its weights.

    DeepSpeed restores a checkpoint's fp32 weights with its optimizer state (`accelerator.load_state`,
    `engine.load_checkpoint`), which here would undo what happened to the model between the windows (the
    RA3 E-step trains it). So its loader gets the optimizer's own current fp32 partitions as "the saved
    weights" (copied onto themselves), inside the prologue and epilogue the engine puts around a load."""
    from deepspeed.checkpoint.constants import FP32_FLAT_GROUPS, LOSS_SCALER, OPTIMIZER_STATE_DICT

    zero = optimizer.optimizer
    saved = {LOSS_SCALER: zero.loss_scaler, "dynamic_loss_scale": zero.dynamic_loss_scale,
             "overflow": zero.overflow, OPTIMIZER_STATE_DICT: state,
             FP32_FLAT_GROUPS: zero.fp32_partitioned_groups_flat}
    zero.checkpoint_event_prologue()
    zero.load_state_dict([saved] * world, load_optimizer_states=True)  # each rank reads its own index
    zero.checkpoint_event_epilogue()


def gather_fp32(model) -> dict[int, torch.Tensor]:
    """Every parameter's whole fp32 master weights on every rank (by the parameter's id), from
    DeepSpeed's partitions: a collective, so every rank calls it, in the same parameter order."""
    from deepspeed.utils import safe_get_full_fp32_param

    weights = {}
    for name, param in model.named_parameters():
        full = safe_get_full_fp32_param(param)
        if full is None:
            raise RuntimeError(f"DeepSpeed holds no fp32 weights for {name}: train_causal_lm trains every parameter")
        weights[id(param)] = full.detach()
    return weights


def plain_copy(model, dtype: torch.dtype) -> torch.nn.Module:
    """A plain copy of `model` (not yet partitioned) whose parameters are `dtype` and need no gradient; its
    buffers stay as they are (bf16 rotary frequencies would shift positions). Each parameter is cast on
    its own, so the model is never held twice in fp32 (32 GB for an 8B model)."""
    memo = {id(p): torch.nn.Parameter(p.detach().to(dtype, copy=True), requires_grad=False)
            for p in model.parameters()}
    return copy.deepcopy(model, memo)


def copy_fp32_into(model, target) -> None:
    """Copy the whole fp32 master weights of DeepSpeed's partitioned `model` into the same-shaped plain
    `target` (cast to its dtype), one parameter at a time, so no whole fp32 copy is ever held: a collective
    (one all-gather per parameter), so every rank calls it."""
    from deepspeed.utils import safe_get_full_fp32_param

    with torch.no_grad():
        for (name, param), (_, out) in zip(model.named_parameters(), target.named_parameters(), strict=True):
            full = safe_get_full_fp32_param(param)
            if full is None:
                raise RuntimeError(f"DeepSpeed holds no fp32 weights for {name}: every parameter must train")
            out.copy_(full)


def whole_model_leaf(model) -> None:
    """Have ZeRO-3 hook `model` as one leaf module, none of its submodules: ZeRO-3 records each rank's sequence
    of module calls and requires it to be the same on every rank, which a submodule called a different number
    of times on each rank (the RA3 E-step's output head, once per chunk of positions) breaks. Set before
    `accelerator.prepare`; `give_back` removes the flag (an attribute the engine did not find). The leaf's
    gradients are then reduced by `reduce_gradients`, see `leaf_hooks_off`."""
    from deepspeed.utils import set_z3_leaf_module

    set_z3_leaf_module(model, True)


def leaf_hooks_off(engine) -> None:
    """Remove the hook that reduces a leaf module's gradients at the end of its backward: when the leaf's
    inputs need no gradient (token ids), PyTorch runs that hook at the start of the backward instead, before
    any gradient exists. `reduce_gradients` does its work after the backward."""
    zero = engine.optimizer
    for hook in zero._leaf_module_hooks:
        hook.remove()
    zero._leaf_module_hooks = []


def reduce_gradients(engine, model) -> None:
    """After a backward through the leaf `model` (`whole_model_leaf`), what the leaf's hook does: each
    parameter's gradient reduced into this rank's partition (zeros where none arrived) and removed, then
    ZeRO-3's end-of-backward bookkeeping (a collective: every rank calls it, in the same parameter order)."""
    zero = engine.optimizer
    for param in model.parameters():
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        zero.reduce_ready_partitions_and_remove_grads(param)
    zero.independent_gradient_partition_epilogue()


def hold_until_step(model) -> None:
    """Keep the partitioned leaf `model`'s weights (`whole_model_leaf`) whole on every rank from the forward
    that gathers them until the optimizer's step partitions everything again: ZeRO-3 releases a leaf's
    weights after its forward and gathers them again for its backward from a hook that PyTorch runs only
    when the leaf's inputs need a gradient. DeepSpeed's flag for parameters it does not own
    (`is_external_param`) is what its hooks skip when releasing. Set after `accelerator.prepare` (which
    resets it)."""
    for param in model.parameters():
        param.is_external_param = True


def module_state(model) -> dict:
    """What DeepSpeed changes on the model that `give_back` restores: its buffers (bf16 casts the whole
    module, rotary frequencies included) and the names of each module's own attributes (ZeRO-3 adds
    its own, some holding the partitioned parameters). Taken before `accelerator.prepare`."""
    return {"buffers": {name: b.detach().clone() for name, b in model.named_buffers()},
            "attributes": {id(m): set(vars(m)) for m in model.modules()}}


def give_back(model, weights: dict[int, torch.Tensor], before: dict, device) -> None:
    """Make `model` a plain module again once the engine is freed: fresh parameters holding `weights`
    (tied ones still shared) on `device`, its buffers and attributes as they were (`module_state`), and no
    reference left from DeepSpeed to it. The caller keeps training or sampling from the model (the RA3
    E-step after an M-step) as after a run without DeepSpeed."""
    fresh: dict[int, torch.nn.Parameter] = {}
    for module in model.modules():
        plain = {}
        for name, param in module._parameters.items():
            if param is not None and id(param) not in fresh:
                fresh[id(param)] = torch.nn.Parameter(weights[id(param)].to(device), requires_grad=param.requires_grad)
            plain[name] = None if param is None else fresh[id(param)]
        module._parameters = plain  # also drops DeepSpeed's gathering dict type
        for name in set(vars(module)) - before["attributes"][id(module)]:
            delattr(module, name)
    for name, buffer in before["buffers"].items():
        owner, _, leaf = name.rpartition(".")
        model.get_submodule(owner)._buffers[leaf] = buffer.to(device)
    _drop_references(model)
    gc.collect()  # the old parameters held DeepSpeed's optimizer and partitions alive until now
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _drop_references(model) -> None:
    """Two references that DeepSpeed (0.19) keeps after its engine is destroyed, each holding the engine,
    its optimizer and their partitions alive for the rest of the process: ZeRO-3's module stack, on which
    it pushes the model at setup and never pops it, and an unbounded `functools.lru_cache` on a method of
    its parameter coordinator (keyed by the coordinator itself), under DeepSpeed's NVTX wrapper.
    tests/pipeline/test_deepspeed_stages.py counts the engines alive after each run."""
    from deepspeed.runtime.zero import parameter_offload, partitioned_param_coordinator

    stack = parameter_offload.FWD_MODULE_STACK
    stack[:] = [m for m in stack if m is not model]
    coordinator = partitioned_param_coordinator.PartitionedParameterCoordinator
    release = vars(coordinator).get("_PartitionedParameterCoordinator__params_to_release")
    for cell in getattr(release, "__closure__", None) or ():
        if hasattr(cell.cell_contents, "cache_clear"):
            cell.cell_contents.cache_clear()
