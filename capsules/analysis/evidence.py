"""Evidence maps: each primary capsule's vote for a digit, ``c[t, i, j] * |u_hat_{j|i}|``, spread over
its receptive field in the input (the ink it sees, or the whole field)."""

from __future__ import annotations

import functools

import numpy as np

from .inputs import MNIST, Geometry, as_image

EVIDENCE_MODES = ("votes", "projected", "change")  # c|u_hat|, c u_hat . v/|v|, c|u_hat| - iteration 1
EVIDENCE_SPREADS = ("ink", "mean", "sum")



# --------------------------------------------------------------------------------------------
# evidence maps


def receptive_field(row: int, col: int, geometry: Geometry = MNIST) -> tuple[slice, slice]:
    """Input pixels seen by the primary capsules at grid position (row, col).

    Conv1 (9x9, stride 1) maps 28 -> 20 and PrimaryCaps (9x9, stride 2) maps 20 -> 6, so the
    capsule at (row, col) sees rows 2*row .. 2*row + 16 and cols 2*col .. 2*col + 16.
    (Row and column 27 of the input are in no receptive field at all.)
    """
    g = geometry
    return slice(g.stride * row, g.stride * row + g.field), slice(g.stride * col, g.stride * col + g.field)


@functools.lru_cache(maxsize=8)
def _fields(geometry: Geometry) -> np.ndarray:
    """(side * side, grid * grid) float32: 1 where a pixel lies in a grid position's field.

    Spreading values over the fields is a product with this matrix, which for one image is far
    cheaper in numpy than a transposed convolution in torch (no thread start-up per call).
    """
    g = geometry
    member = np.zeros((g.side, g.side, g.grid, g.grid), np.float32)
    for row in range(g.grid):
        for col in range(g.grid):
            rows, cols = receptive_field(row, col, g)
            member[rows, cols, row, col] = 1.0
    member.flags.writeable = False
    return member.reshape(g.side * g.side, g.grid * g.grid)


def _spread(values: np.ndarray, geometry: Geometry) -> np.ndarray:
    """(N, grid, grid) values per grid position -> (N, side, side): each added over its field."""
    n = values.shape[0]
    flat = values.reshape(n, -1) @ _fields(geometry).T
    return flat.reshape(n, geometry.side, geometry.side)


def coverage(geometry: Geometry = MNIST) -> np.ndarray:
    """(side, side): how many of the grid's receptive fields contain each input pixel (0 .. 36)."""
    return _fields(geometry).sum(axis=1).reshape(geometry.side, geometry.side)


def field_ink(image, geometry: Geometry = MNIST) -> np.ndarray:
    """(grid, grid): the total ink (sum of the image) inside each grid position's field."""
    x = as_image(image).reshape(-1)
    if x.size != geometry.side * geometry.side:
        raise ValueError(f"expected one {geometry.side}x{geometry.side} image, got {x.size} pixels")
    return (x @ _fields(geometry)).reshape(geometry.grid, geometry.grid)


def evidence_maps(c, u_hat, geometry: Geometry = MNIST, spread: str = "mean", image=None,
                  along=None) -> np.ndarray:
    """Project the primary capsules' votes back onto the input.

    ``c`` (..., 1152, 10) coupling coefficients (any leading axes, e.g. iterations) and ``u_hat``
    (1152, 10, 16) prediction vectors. The vote of primary ``i`` for digit ``j`` is
    ``c_ij * |u_hat_{j|i}|``, the length of its term in ``s_j = sum_i c_ij u_hat_{j|i}`` (eq. 2).
    With ``along`` (..., 10, 16), the digit capsules ``v`` (one set per leading index), the vote
    is instead the signed projection ``c_ij * u_hat_{j|i} . v_j / |v_j|``: these add up to
    ``|s_j|`` exactly (``v_j`` is parallel to ``s_j``), so the map decomposes the capsule's
    length over the input; negative values push ``s_j`` backwards.

    The votes of the 32 types at one grid position are summed, then ``spread`` over that
    position's 17x17 receptive field:

    - ``"ink"``: shared among the field's pixels in proportion to their ink (``image``, needed),
      so the map lies on the strokes and adds up to the votes of all fields that hold ink (a
      field without ink has no pixel to give its vote to). A field that holds only the tip of a
      stroke puts its whole vote on that tip: stroke ends can look strong.
    - ``"mean"``: each pixel gets the mean vote of the fields covering it (1 at the corners up
      to 36 in the middle); the border, seen by few fields, shows single fields' votes.
    - ``"sum"``: each pixel gets the sum of the votes of the fields covering it (favours the
      centre); the map totals 289 times the votes.

    Pixels in no field (row and column 27) are 0. Returns (..., 10, 28, 28) float32,
    non-negative unless ``along`` is given.
    """
    if spread not in EVIDENCE_SPREADS:
        raise ValueError(f"unknown spread {spread!r}; one of {', '.join(EVIDENCE_SPREADS)}")
    if spread == "ink" and image is None:
        raise ValueError("spread='ink' needs the input image")
    g = geometry
    c = np.asarray(c, dtype=np.float32)
    u_hat = np.asarray(u_hat, dtype=np.float32)
    lead = c.shape[:-2]
    n_caps, n_digits = c.shape[-2:]
    if along is None:
        votes = c * np.linalg.norm(u_hat, axis=-1)  # (..., 1152, 10)
    else:
        v = np.asarray(along, dtype=np.float32)  # (..., 10, 16)
        unit = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
        votes = c * np.einsum("ijm,...jm->...ij", u_hat, unit)
    per_pos = votes.reshape(-1, n_caps // (g.grid * g.grid), g.grid, g.grid, n_digits).sum(1)
    per_pos = per_pos.transpose(0, 3, 1, 2).reshape(-1, g.grid, g.grid)  # (N * 10, grid, grid)
    if spread == "ink":
        # pixel p of field f gets vote_f * x_p / ink_f: summed over the fields covering p
        x = as_image(image)
        ink = field_ink(x, g)
        share = np.where(ink > 0, per_pos / np.maximum(ink, 1e-12), 0.0)
        maps = _spread(share, g) * x
    else:
        maps = _spread(per_pos, g)
        if spread == "mean":
            cov = coverage(g)
            maps = np.where(cov > 0, maps / np.maximum(cov, 1), 0.0)
    return maps.reshape(*lead, n_digits, g.side, g.side).astype(np.float32)


def evidence_map(c, u_hat, digit: int, geometry: Geometry = MNIST, spread: str = "mean",
                 image=None) -> np.ndarray:
    """(28, 28) evidence map of one ``digit`` for one iteration's ``c`` (1152, 10); see
    :func:`evidence_maps`."""
    c = np.asarray(c)
    if c.ndim != 2:
        raise ValueError(f"evidence_map takes one iteration's c of shape (1152, 10), got {c.shape}")
    return evidence_maps(c[:, digit:digit + 1], np.asarray(u_hat)[:, digit:digit + 1], geometry,
                         spread=spread, image=image)[0]
