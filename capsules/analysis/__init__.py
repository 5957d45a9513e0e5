"""Model-side analysis behind the dashboard: routing traces, evidence maps, pose perturbations and
input transforms, as plain functions on tensors and numpy arrays (no Streamlit, no plotting).

Every function runs the model under :func:`torch.inference_mode` and returns CPU numpy arrays
(float32), one image at a time, batch axis removed. Notation follows Sabour, Frosst & Hinton
(2017): ``i`` is one of the 1152 primary capsules, ``j`` one of the 10 digit capsules, ``t`` the
routing iteration (0-based in arrays, "iteration t + 1" in words).

Quantities (all per image):

- ``c[t, i, j]``: the coupling coefficients iteration ``t + 1`` used (eq. 3); ``c[0] = 1/10``.
- ``b[t, i, j]``: their logits; ``agreement[t] = u_hat . v[t]`` so ``b[t + 1] = b[t] + agreement[t]``.
- ``mass[t, j] = sum_i c[t, i, j]``: how much of the 1152 primaries' coupling goes to digit ``j``
  (a count; sums to 1152 over ``j``, 115.2 per digit when uniform).
- ``vote_mass[t, j] = sum_i c[t, i, j] * |u_hat_{j|i}|``: the same weighted by the length of the
  prediction vectors, i.e. how much vote actually flows into ``s_j`` (eq. 2).
- ``entropy[t]``: the mean over primaries of ``-sum_j c log c`` in nats (``ln 10 = 2.3026`` when
  uniform).
- evidence maps: ``c[t, i, j] * |u_hat_{j|i}|`` of each primary capsule spread over its 17x17
  receptive field in the 28x28 input (see :func:`evidence_maps`).

Sizes (the 6x6 grid of 32 types, the 17x17 fields, the 28x28 input) come from the model's
:class:`~capsules.nn.CapsNetConfig` through :class:`Geometry`; the numbers above are the
paper's MNIST model. Every function takes the MultiMNIST CapsNet as well (36x36 input, a 10x10
grid: 3200 primaries); for its two digits, :func:`read_pair` decodes the two longest capsules
and one the model rejects (the paper's Fig. 5), :func:`match_sources` pairs reconstructions with
the digits they redraw and :func:`source_shares` splits an evidence map between the two digits'
ink.
"""

from .evidence import EVIDENCE_MODES, EVIDENCE_SPREADS, coverage, evidence_map, evidence_maps, field_ink, receptive_field
from .inputs import MNIST, Classification, Geometry, as_image, classify, prepare
from .pose import (POSE_KEY, POSE_QUANTILES, offset_pose, perturbation_deltas, perturbation_grid,
                   pose_distribution, reconstruct)
from .trace import (COUPLING_VIEWS, LONG, M_MINUS, M_PLUS, Analysis, CouplingView,
                    IterationSweep, Reading, RoutingStep, analyse, longest, reading, training_iterations)
from .transforms import (TRANSFORMS, TransformSweep, is_identity, transform_image, transform_images, transform_sweep,
                         transform_values)
from .two_digits import PairReading, match_sources, read_pair, source_shares

__all__ = [
    "Analysis", "COUPLING_VIEWS", "Classification", "CouplingView", "EVIDENCE_MODES", "EVIDENCE_SPREADS", "Geometry",
    "IterationSweep", "LONG", "M_MINUS", "M_PLUS", "MNIST", "POSE_KEY", "POSE_QUANTILES", "PairReading", "Reading",
    "RoutingStep", "TRANSFORMS", "TransformSweep", "analyse", "as_image", "classify", "coverage", "evidence_map",
    "evidence_maps", "field_ink", "is_identity", "longest", "match_sources", "offset_pose", "perturbation_deltas",
    "perturbation_grid", "pose_distribution", "prepare", "read_pair", "reading", "receptive_field", "reconstruct",
    "source_shares", "training_iterations", "transform_image", "transform_images", "transform_sweep",
    "transform_values",
]

