"""Train a CapsNet on MNIST, or on MultiMNIST, with the paper's recipe; or the paper's baseline CNN.

    python -m capsules.train --out runs/mnist [--epochs 50] [--resume] ...
    python -m capsules.train --dataset multimnist --lr 1e-4 --out runs/multimnist ...   # section 6
    python -m capsules.train --model cnn --out runs/cnn ...   # the baseline CNN of Table 1
    torchrun --nproc_per_node N -m capsules.train --out runs/mnist ...   # DistributedDataParallel

Recipe (defaults): Adam, lr 1e-3 decayed exponentially (x0.9 per epoch), batch 128, 3 routing
iterations, margin loss + 0.0005 x SSE reconstruction with the decoder masked by the true label,
training images shifted by up to 2 pixels. MultiMNIST (section 6): a 36x36 CapsNet, two digits
of different classes overlaid, each shifted by up to 4 pixels, fresh pairs every epoch; margin
loss with both digits present and each digit reconstructed from its own capsule against its own
image; scored by the paper's metric (the two longest capsules are exactly the two digits).
The baseline CNN (``--model cnn``, section 5, MNIST only): the same data pipeline, shifts, Adam
and learning-rate schedule (the paper gives no recipe for it; the official code trains its
baseline with the optimizer and schedule of its CapsNet), cross-entropy, dropout active.

The output folder gets the ``last`` checkpoint (safetensors + JSON; with ``--ema-decay`` also
``last-ema``, the moving average of the weights; with ``--validation`` also ``best``, the epoch of the
highest validation accuracy so far), ``metrics.jsonl`` (one JSON line per epoch) and
``state.safetensors``, the resume state (weights, optimizer, moving average, random generator);
``--resume`` continues from it, bit-identical to a run that never stopped. The state is also saved
within an epoch every ``--save-minutes`` (10 by default), so a stopped run loses at most that much
work, not the epoch in progress (a baseline-CNN epoch is about an hour on a 2-core CPU). No
checkpoint is chosen by its test score: with no validation split that would select on the test set,
so ``best`` exists only with one.

The modules: :mod:`.config` (:class:`TrainConfig`, the CLI's options), :mod:`.datasets` (what
differs between data sets: batches, the validation split, the held-out score), :mod:`.step` (the
objective per model and data set, Adam, the learning rate), :mod:`.state` (resume, atomic saves,
the moving average), :mod:`.warm_start` (``--init-from``: weights from a checkpoint, across image
sizes), :mod:`.loop` (setup, the epochs, the checkpoints) and :mod:`.__main__` (the command line).
"""

from .config import TrainConfig, TrainingError
from .datasets import DataSet, epoch_batches, eval_size
from .loop import end_of_epoch, set_frozen, setup, train, train_epoch
from .state import WeightAverage, load_state, save_state
from .step import learning_rate, make_optimizer, model_objective, train_step, two_digit_objective
from .warm_start import init_from_checkpoint, source_record

__all__ = [
    "DataSet", "TrainConfig", "TrainingError", "WeightAverage", "end_of_epoch", "epoch_batches", "eval_size",
    "init_from_checkpoint", "learning_rate", "load_state", "make_optimizer", "model_objective", "save_state",
    "set_frozen", "setup", "source_record", "train", "train_epoch", "train_step", "two_digit_objective",
]
