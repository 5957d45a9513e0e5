"""The data: MNIST (:mod:`.mnist`: find, verify, fetch, batch, the 2-pixel shifts), MultiMNIST
(:mod:`.multimnist`: pairs of overlapping digits, section 6) and the dashboard's inputs
(:mod:`.drawing`: MNIST's recipe for a drawing, photo or scan; :mod:`.strokes`: the pad's strokes,
two digits drawn with two pens; :mod:`.uploads`: image files decoded safely)."""

from .mnist import (BESIDE_CHECKOUT, ENV_VAR, FILES, DatasetError, check, default_data_dir, fetch, load_mnist,
                    resolve_data_dir, shift_augment, to_float)
from .multimnist import (DIGIT_SIDE, MULTI_PAD, MULTI_SHIFT, MULTI_TEST_SEED, MultiMNIST, MultiMNISTBatch,
                         box_overlap, ink_boxes, load_multimnist_test, pair_overlap, place_digits)

__all__ = [
    "BESIDE_CHECKOUT", "DIGIT_SIDE", "ENV_VAR", "FILES", "MULTI_PAD", "MULTI_SHIFT", "MULTI_TEST_SEED",
    "DatasetError", "MultiMNIST", "MultiMNISTBatch", "box_overlap", "check", "default_data_dir", "fetch",
    "ink_boxes", "load_mnist", "load_multimnist_test", "pair_overlap", "place_digits", "resolve_data_dir",
    "shift_augment", "to_float",
]
