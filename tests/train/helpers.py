"""What the training tests share: a tiny run on a few digits, a small baseline CNN."""

from capsules import BaselineCNNConfig
from capsules.train import TrainConfig, train


def tiny_run(tmp_path, data_dir, name, **kwargs):
    cfg = dict(out=str(tmp_path / name), data_dir=str(data_dir), train_subset=32, test_subset=8, batch_size=32,
               epochs=1, precision="fp32", eval_batch_size=8)
    return train(TrainConfig(**{**cfg, **kwargs}))


SMALL_CNN = BaselineCNNConfig(conv_channels=(4, 4, 2), fc_hidden=(8, 8))
