"""`VirtualAccelerator`: the CPU as if the model's parameters lived on a GPU, for tests that prove a code
path puts its tensors on the model's device without one (tests/unit/test_devices.py, and the small scale's
rehearsal, tests/pipeline/test_small_rehearsal.py, around a whole claim run)."""

import weakref

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves


class WrongDevice(AssertionError):
    pass


class VirtualAccelerator(TorchFunctionMode):
    """The CPU as if the model's parameters lived on an accelerator. A tensor is on the host when it was
    made without `device=` (torch.tensor(...), torch.zeros(n), a tokenizer's return_tensors="pt"), by
    `.cpu()`, or computed from host tensors only; it is on the accelerator when it is a parameter or
    buffer (made before entering), was made with `device=` or moved with `.to(device)`, or computed from
    one that is. An operation that mixes a host tensor of more than one element with an accelerator
    tensor (the model's forward included), writes accelerator values into a host tensor in place, or
    draws for accelerator tensors from a generator made without `device=`, raises WrongDevice: on a GPU
    it would fail. Host scalars (0-dim) and host indices are allowed where PyTorch allows them. Only
    tensors and generators made while the mode is on can be on the host, and any `device=` counts as
    the model's (on the CPU the two cannot be told apart). A model loaded inside the mode with
    `from_pretrained` is on the host, as transformers loads it, until moved with `.to(device)` (its
    forward on the host raises WrongDevice too: on a GPU machine it would run on the CPU); what loading
    does inside is not checked (it is all on the host)."""

    MIXING_ALLOWED = ("__getitem__", "__setitem__")

    def __init__(self):
        super().__init__()
        self.host: dict[int, weakref.ref] = {}  # id -> the host tensor (tensors compare by value, not identity)
        self.host_generators: dict[int, weakref.ref] = {}
        self.patch = pytest.MonkeyPatch()
        self.loading = 0  # from_pretrained calls under way

    @staticmethod
    def _has(table: dict[int, weakref.ref], item) -> bool:
        return item is not None and id(item) in table and table[id(item)]() is item

    def _mark(self, tensor: torch.Tensor, on_host: bool) -> None:
        if on_host:
            self.host[id(tensor)] = weakref.ref(tensor)
        else:
            self.host.pop(id(tensor), None)

    def __enter__(self):
        mode = self

        class Generator(torch.Generator):  # remembers whether it was made for a device
            def __init__(self, device=None):  # torch.Generator.__new__ makes it
                if device is None:
                    mode.host_generators[id(self)] = weakref.ref(self)

        self.patch.setattr(torch, "Generator", Generator)
        from transformers import PreTrainedModel

        load = PreTrainedModel.from_pretrained.__func__

        def from_pretrained(cls, *args, **kwargs):  # a model as transformers returns it: on the host
            mode.loading += 1
            try:
                model = load(cls, *args, **kwargs)
            finally:
                mode.loading -= 1
            for tensor in (*model.parameters(), *model.buffers()):
                mode._mark(tensor, on_host=True)
            return model

        self.patch.setattr(PreTrainedModel, "from_pretrained", classmethod(from_pretrained))
        return super().__enter__()

    def __exit__(self, *exc):
        self.patch.undo()
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.loading:
            return out
        name = getattr(func, "__name__", repr(func))
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        generator = kwargs.get("generator")
        if name in ("to", "cuda", "cpu"):
            on_host = self._moved_to_host(name, args, kwargs)
        elif generator is not None and not inputs:  # a random factory: on its generator's device
            on_host = self._has(self.host_generators, generator)
        elif not inputs:  # a factory: on the device it names, else on the host
            on_host = kwargs.get("device") is None
        else:
            host = [t for t in inputs if self._has(self.host, t)]
            accelerated = [t for t in inputs if not self._has(self.host, t)]
            in_place = name.endswith("_") or name.startswith("__i")  # the first argument is the result
            first = args[0] if args else next(iter(kwargs.values()))  # init.normal_(tensor=...) names it
            if accelerated and in_place and self._has(self.host, first):
                raise WrongDevice(f"{name}: writes the model's device's values into a host tensor")
            if accelerated and any(t.dim() > 0 for t in host) and name not in self.MIXING_ALLOWED:
                raise WrongDevice(f"{name}: a host tensor of shape {tuple(next(t for t in host if t.dim()).shape)} "
                                  "meets the model's device")
            table = args[1] if len(args) > 1 else kwargs.get("weight")
            if name == "embedding" and self._has(self.host, table):  # every causal LM's forward starts here
                raise WrongDevice("embedding: the model runs on the host (loaded and never moved to the device)")
            on_host = not accelerated
        if self._has(self.host_generators, generator) and not on_host:
            raise WrongDevice(f"{name}: a generator made without `device=` draws for the model's device")
        for tensor in (t for t in tree_leaves(out) if isinstance(t, torch.Tensor)):
            self._mark(tensor, on_host)
        return out

    def _moved_to_host(self, name: str, args, kwargs) -> bool:
        if name == "cpu":
            return True
        if name == "cuda":
            return False
        target = next((a for a in args[1:] if isinstance(a, torch.Tensor)), kwargs.get("other"))
        if target is not None:
            return self._has(self.host, target)
        device = torch._C._nn._parse_to(*args[1:], **{k: v for k, v in kwargs.items() if k != "copy"})[0]
        return self._has(self.host, args[0]) if device is None else False
