"""The resume state of a run (weights, Adam, the moving average, the random generators, how far
an epoch got), written atomically, and the configuration a resumed run continues with; the moving
average of the weights; the metrics log."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
from pathlib import Path

import torch
from torch import Tensor, nn

from ..checkpoint import CheckpointError, atomic_write_bytes, check_state, read_tensors
from .config import STATE_FORMAT, TrainConfig, TrainingError

# ------------------------------------------------------------------ moving average of the weights


class WeightAverage:
    """An exponential moving average of a model's weights (``--ema-decay``), kept in float32 in a
    copy of the model, ``.model``, which is evaluated and saved like the model itself:

        w_ema <- decay * w_ema + (1 - decay) * w        after every optimiser step,

    one fused ``torch._foreach_lerp_`` over all parameters (buffers, where a model has any, are
    copied). It starts at the model's weights when it is made (the seeded initialisation, or the
    ``--init-from`` weights), with no bias correction; ``decay`` 0 keeps an exact copy."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise TrainingError(f"--ema-decay must be at least 0 and below 1, got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).float().eval().requires_grad_(False)
        self._average = list(self.model.parameters())
        self._weights = [p.detach() for p in model.parameters()]  # views: they follow the optimiser
        self._buffers = list(zip(self.model.buffers(), model.buffers()))

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self._average, self._weights, 1.0 - self.decay)
        for mine, theirs in self._buffers:
            mine.copy_(theirs)


# ------------------------------------------------------------------------------ resume state


def save_state(path: Path, model, optimizer, generator: torch.Generator, meta: dict,
               average: WeightAverage | None = None, epoch_rng: Tensor | None = None) -> None:
    """Weights, Adam moments, the moving average (if any), the run's random generator and torch's
    global one (dropout draws from it; on a GPU, the GPU's) in one safetensors file, atomically.
    Within an epoch, also ``epoch_rng``: the run's generator as the epoch began, which gives the
    epoch's shuffle again (``meta["in_epoch"]`` says how far the epoch got)."""
    from safetensors.torch import save as st_save

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if average is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in average.model.state_dict().items()})
    opt = optimizer.state_dict()
    for idx, st in opt["state"].items():
        for name, value in st.items():
            tensors[f"optim.{idx}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng"] = generator.get_state()
    tensors["torch_rng"] = torch.get_rng_state()
    if epoch_rng is not None:
        tensors["epoch_rng"] = epoch_rng
    device = next(model.parameters()).device
    if device.type == "cuda":
        tensors["cuda_rng"] = torch.cuda.get_rng_state(device)
    header = {"format": STATE_FORMAT, "meta": json.dumps(meta),
              "param_groups": json.dumps(opt["param_groups"])}
    atomic_write_bytes(path, st_save(tensors, metadata=header))


def load_state(path: Path, model, optimizer, generator: torch.Generator, device,
               average: WeightAverage | None = None) -> dict:
    tensors, header, _ = read_tensors(path)
    if header.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not a capsules training state")
    meta = json.loads(header["meta"])
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    check_state(model, weights, path)
    model.load_state_dict(weights)
    if average is not None:
        averaged = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
        check_state(average.model, averaged, path)
        average.model.load_state_dict(averaged)
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v.to(device) if name != "step" else v
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(header["param_groups"])})
    generator.set_state(tensors["rng"])
    if "torch_rng" in tensors:  # absent from states written before it was saved
        torch.set_rng_state(tensors["torch_rng"])
    if "cuda_rng" in tensors and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(tensors["cuda_rng"], device)
    if "in_epoch" in meta:
        meta["in_epoch"]["rng"] = tensors["epoch_rng"]
    return meta


def _truncate_metrics(path: Path, upto_epoch: int) -> None:
    """Drop log lines of epochs that the resumed run will redo."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("epoch", 0) <= upto_epoch:
                keep.append(line)
        except ValueError:
            continue
    atomic_write_bytes(path, ("\n".join(keep) + "\n" if keep else "").encode())


def _append_line(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


# ---------------------------------------------------------------------------- phase 1: setup


def preflight(out: Path) -> None:
    """An unwritable folder or a nearly full disk is reported before any training."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise TrainingError(f"cannot write to the output folder {out}: {exc.strerror or exc}") from None
    free = shutil.disk_usage(out).free
    if free < 200 * 1024 * 1024:
        raise TrainingError(f"only {free / 2**20:.0f} MiB free in {out}; checkpoints need about 200 MiB")


# Options a resumed run takes from its new command line; everything else comes from its state file.
RESUME_OVERRIDES = frozenset({"out", "data_dir", "epochs", "device", "eval_batch_size", "save_minutes"})


def resumed_config(cfg: TrainConfig, given: set[str]) -> TrainConfig:
    """The saved configuration of the run in ``cfg.out``, with the options of :data:`RESUME_OVERRIDES`
    that were named on this command line (defaults never override a saved value).

    A resumed run continues the same trajectory, bit-identical to a run that never stopped, so
    everything that shapes the weights comes from the state file: the model, the data set, the
    recipe (lr and its decay, batch size, routing, loss weights, shift, precision, the moving
    average's decay), the seed, the starting weights (``init_from`` is recorded, not loaded again:
    the weights are in the state) and the data (both subsets, so that the metrics log stays one series). The
    overrides do not touch the weights: ``out`` (the folder may have moved; it is where the state
    was read), ``data_dir`` (where MNIST lives on this machine), ``device`` (to continue on other
    hardware; bit-identical only on the same kind), ``eval_batch_size`` (evaluation memory only),
    ``save_minutes`` (how often the state is saved within an epoch) and ``epochs`` (to extend or
    shorten the run: the learning rate follows the step, not the planned number of epochs). A state file written before an option existed resumes with that
    option's default. Any other option named with a value other than the run's (``--lr``, a
    ``--model`` ...) is refused, not dropped in silence; named with the run's own value it is
    accepted (``--precision auto`` too: the run keeps what auto chose), so that a resume command
    may repeat the run's first command line.
    """
    state_path = Path(cfg.out) / "state.safetensors"
    if not state_path.exists():
        raise TrainingError(f"--resume: no training state in {cfg.out} (expected {state_path})")
    _, header, _ = read_tensors(state_path)
    saved = json.loads(json.loads(header["meta"])["config"])
    run = {**dataclasses.asdict(TrainConfig()), **saved}  # an option the state predates: its default
    clashes = sorted(n for n in given - RESUME_OVERRIDES - {"resume"}
                     if getattr(cfg, n) != run[n]
                     and not (n == "precision" and cfg.precision == "auto"))  # auto: what auto chose
    if clashes:
        flags = "; ".join(f"--{n.replace('_', '-')} {getattr(cfg, n)} (the run has {run[n]})" for n in clashes)
        raise TrainingError(f"{flags}: --resume continues the run in {cfg.out} as it started, so only --epochs, "
                            "--device, --data-dir, --eval-batch-size and --save-minutes may change; for another "
                            "recipe start a new run, from these weights with --init-from")
    keep = RESUME_OVERRIDES & ({"out"} | given)
    return TrainConfig(**{**saved, **{k: getattr(cfg, k) for k in keep}, "resume": True})
