"""Run by tests/pipeline/test_deepspeed_stages.py under `torchrun --nproc_per_node 2` (gloo, DeepSpeed's CPU
backend): the paper scale's training sequence in one process, three `train_causal_lm` calls, NTP and then two
M-step windows of one schedule with the optimizer state handed from the first to the second and the model
changed between them (as the RA3 E-step changes it), once under ZeRO-3 (configs/deepspeed/zero3.json) and
once without DeepSpeed (DDP), with a tiny Llama.

Each rank writes `report-<rank>.json` (per call: the hash of the weights it holds in place, whether they are
the saved model's, what DeepSpeed left behind) and `writes-<rank>.jsonl` (every file it wrote under
ROOT/runs: Python-level opens for writing and renames, `torch.save` and safetensors writes), for the test.

    OMP_NUM_THREADS=1 python -m torch.distributed.run --standalone --nproc_per_node 2 \\
        tests/pipeline/deepspeed_runner.py ROOT
"""

import dataclasses
import gc
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import torch

from repro.core import ranks
from repro.core.scale import TinyModelConfig, TokenizerConfig, TrainConfig
from repro.eval.barrier import barrier
from repro.train.ntp import OPTIMIZER_STATE, train_causal_lm
from repro.train.pretrain import init_model, train_tokenizer

TEXTS = [f"def f{i}(x):\n    return x * {i} + {i % 7}\n" for i in range(300)]
MODEL = TinyModelConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=64)
NTP = TrainConfig(seq_len=32, batch_size=4, lr=3e-3, max_steps=8, warmup_steps=1, checkpoint_every=4, log_every=2)
MSTEP = dataclasses.replace(NTP, max_steps=6, checkpoint_every=0)
WINDOWS = ((0, 3), (3, 6))
MODES = {"zero3": "configs/deepspeed/zero3.json", "ddp": None}


class Writes:
    """Every file this process writes under `root`: an audit hook sees Python's opens for writing and
    renames; `torch.save` and safetensors' writers (C++ and Rust, unseen by the hook) are wrapped wherever a
    module holds them."""

    def __init__(self, root: Path):
        self.root, self.rows = str(root), []
        sys.addaudithook(self.audit)
        import safetensors.torch

        for name, original in (("save", torch.save), ("save_file", safetensors.torch.save_file)):
            wrapped = self.wrap(original)
            for module in list(sys.modules.values()):
                for attr, value in list(vars(module).items()):
                    if value is original and attr in (name, "safe_save_file", "save_file"):
                        setattr(module, attr, wrapped)

    def note(self, path, how: str) -> None:
        if isinstance(path, str | os.PathLike) and os.path.abspath(path).startswith(self.root):
            self.rows.append({"path": os.path.abspath(path), "how": how, "time": time.time()})

    def audit(self, event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else \
                bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if writing:
                self.note(path, "open")
        elif event == "os.rename":
            self.note(args[1], "rename")

    def wrap(self, original):
        def logged(obj, path, *args, **kwargs):
            self.note(path, original.__name__)
            return original(obj, path, *args, **kwargs)
        return logged


def weights_sha256(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def left_behind(model, saved: Path) -> dict:
    """What a call left in this process: is the model in place the saved one and plain, and is DeepSpeed gone
    (no engine or ZeRO optimizer alive, accelerate's state reset, no ZeRO-3 flag for transformers)."""
    from accelerate.state import AcceleratorState
    from safetensors.torch import load_file
    from transformers.integrations import is_deepspeed_zero3_enabled

    file = load_file(saved / "model.safetensors")
    state = model.state_dict()
    gc.collect()
    alive = sum(type(o).__name__ in ("DeepSpeedEngine", "DeepSpeedZeroOptimizer_Stage3") for o in gc.get_objects())
    return {"sha256": weights_sha256(model), "is_saved_model": all(torch.equal(state[k], file[k]) for k in file),
            "plain_fp32": all(p.dtype == torch.float32 and not hasattr(p, "ds_id") for p in model.parameters())
            and all(type(m._parameters) is dict for m in model.modules()),
            "deepspeed_objects_alive": alive, "zero3_flag": is_deepspeed_zero3_enabled(),
            "accelerate_state_kept": AcceleratorState._shared_state != {},
            "use_deepspeed_env": os.environ.get("ACCELERATE_USE_DEEPSPEED")}


def estep(model, round_: int) -> None:
    """A stand-in for the E-step's change to the model between two M-step windows."""
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(1 - 0.01 * (round_ + 1))


def main(root: Path) -> None:
    torch.set_num_threads(1)
    from transformers import AutoTokenizer

    if ranks.is_main():
        train_tokenizer(TEXTS, TokenizerConfig(vocab_size=320), root / "tokenizer")
    barrier()
    tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
    writes = Writes(root / "runs")
    report = {}
    for mode, deepspeed in MODES.items():
        base, calls = root / "runs" / mode, []
        model = init_model(tokenizer, MODEL, seed=0)
        started = time.monotonic()
        train_causal_lm(model, tokenizer, TEXTS, dataclasses.replace(NTP, deepspeed_config=deepspeed), base / "ntp",
                        desc=f"{mode} NTP")
        calls.append({"run": "ntp", "seconds": time.monotonic() - started,
                      **left_behind(model, base / "ntp" / "model")})
        for r, window in enumerate(WINDOWS):
            estep(model, r)
            infused = [f"# round {r}\n{text}" for text in TEXTS]
            started = time.monotonic()
            train_causal_lm(model, tokenizer, infused, dataclasses.replace(MSTEP, deepspeed_config=deepspeed),
                            base / f"round-{r}", desc=f"{mode} M-step {r}", steps=window,
                            optimizer_state=base / f"round-{r - 1}" / OPTIMIZER_STATE if r else None)
            calls.append({"run": f"round-{r}", "seconds": time.monotonic() - started,
                          **left_behind(model, base / f"round-{r}" / "model")})
        report[mode] = calls
    rank = ranks.rank()
    (root / f"report-{rank}.json").write_text(json.dumps(report, indent=2))
    (root / f"writes-{rank}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in writes.rows))


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
