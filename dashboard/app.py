"""Streamlit dashboard of the MNIST CapsNet: draw a digit and watch the capsules route.

    streamlit run dashboard/app.py        # from the repository root

The model is loaded once per process (``st.cache_resource``) from the shipped checkpoint, or
``$CAPSULES_CHECKPOINT``, on ``pick_device($CAPSULES_DEVICE)`` (the GPU when there is one). All
arithmetic lives in :mod:`capsules.analysis` and all drawing in :mod:`dashboard.figures`; this
file reads widgets, calls them and lays the page out.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import streamlit as st  # noqa: E402
import torch  # noqa: E402

from capsules import CapsNet, analysis as A  # noqa: E402
from capsules.checkpoint import SHIPPED, CheckpointError, load_model  # noqa: E402
from capsules.device import describe, pick_device  # noqa: E402
from capsules.layers import primary_position  # noqa: E402
from dashboard import figures as F  # noqa: E402

SAMPLES = ROOT / "dashboard" / "samples.npz"
CANVAS_SIDE = 280
MAX_ITERATIONS = 10
PLOTLY_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}
TRANSFORM_LABELS = {"rotate": "Rotate (°)", "scale": "Scale (×)", "shift_x": "Shift x (px)",
                    "shift_y": "Shift y (px)", "shear": "Shear"}
TRANSFORM_STEPS = {"rotate": 1.0, "scale": 0.02, "shift_x": 0.5, "shift_y": 0.5, "shear": 0.05}

st.set_page_config(page_title="CapsNet explorer", page_icon=":material/blur_on:", layout="wide")
if os.environ.get("CAPSULES_THREADS"):  # e.g. 1 on a small machine that is busy with training
    torch.set_num_threads(max(1, int(os.environ["CAPSULES_THREADS"])))


# ------------------------------------------------------------------------------ loading


def checkpoint_path() -> Path:
    return Path(os.environ.get("CAPSULES_CHECKPOINT") or SHIPPED)


@st.cache_resource(show_spinner="Loading the CapsNet…", max_entries=1)
def get_model(path: str, stamp: float, device_name: str | None):
    """(model, device, note). ``stamp`` (the file's mtime) makes a replaced checkpoint reload."""
    device = pick_device(device_name)
    if Path(path).is_file():
        model = load_model(path, device)
        note = ""
    else:
        torch.manual_seed(0)
        model = CapsNet().to(device).eval()
        model.metadata = {}
        note = f"No checkpoint at `{path}`: this is an **untrained** CapsNet."
    return model, device, note


@st.cache_data(show_spinner=False)
def get_samples(path: str, stamp: float) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@st.cache_data(max_entries=64, show_spinner=False)
def cached_analysis(_model, model_key: str, image: np.ndarray, iterations: int) -> A.Analysis:
    return A.analyse(_model, image, iterations=iterations, sweep_iterations=MAX_ITERATIONS)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_grid(_model, model_key: str, pose: np.ndarray, digit: int) -> np.ndarray:
    return A.perturbation_grid(_model, pose, digit)


@st.cache_data(max_entries=32, show_spinner=False)
def cached_sweep(_model, model_key: str, image: np.ndarray, kind: str, base: tuple, digit: int,
                 iterations: int) -> A.TransformSweep:
    return A.transform_sweep(_model, image, kind, base=dict(base), digit=digit, iterations=iterations)


class Clock:
    """Wall time of the model work of one script run, by step."""

    def __init__(self):
        self.steps: dict[str, float] = {}

    def __call__(self, label: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.steps[label] = self.steps.get(label, 0.0) + (time.perf_counter() - t0) * 1e3
        return out

    @property
    def total(self) -> float:
        return sum(self.steps.values())


def chart(fig, key: str) -> None:
    st.plotly_chart(fig, key=key, config=PLOTLY_CONFIG)


def digit_picker(label: str, key: str, prediction: int) -> int:
    """A digit-capsule selectbox whose default follows the prediction."""
    choice = st.selectbox(label, [None, *range(10)], key=key,
                          format_func=lambda d: f"winning capsule ({prediction})" if d is None else f"capsule {d}")
    return prediction if choice is None else int(choice)


# ------------------------------------------------------------------------------ input


def read_canvas() -> np.ndarray | None:
    """The drawing canvas (white ink on black); its RGBA image, or None when it has none."""
    try:
        from streamlit_drawable_canvas import st_canvas
    except Exception:  # the component is optional: the dashboard works without it
        st.info("Install `streamlit-drawable-canvas` to draw digits here.")
        return None
    result = st_canvas(
        fill_color="rgba(0, 0, 0, 0)", stroke_width=20, stroke_color="#FFFFFF",
        background_color="#000000", height=CANVAS_SIDE, width=CANVAS_SIDE,
        drawing_mode="freedraw", update_streamlit=True, return_image_data=True, key="canvas",
    )
    try:
        return None if result is None else result.image_data
    except Exception:
        return None


def to_model_image(array) -> np.ndarray | None:
    """A drawing or photo as the 28x28 MNIST-style image, or None (no ink, or unreadable)."""
    if array is None:
        return None
    try:
        from capsules.preprocess import to_mnist
    except ImportError:
        return None
    try:
        return to_mnist(np.asarray(array))
    except Exception:
        return None


def read_upload(upload) -> tuple[np.ndarray | None, str]:
    """(28x28 image or None, message) for an uploaded file."""
    from capsules.preprocess import upload_to_mnist

    return upload_to_mnist(upload.getvalue(), upload.name)


def sample_label(samples, k: int) -> str:
    idx, label, pred = int(samples["indices"][k]), int(samples["labels"][k]), int(samples["predictions"][k])
    mark = "  ✗ misclassified" if pred != label else ""
    return f"test #{idx} · label {label} · predicted {pred}{mark}"


# ------------------------------------------------------------------------------ views

# ---- 2: capsule lengths (+ per-iteration change)
def view_lengths(res: A.Analysis, iterations: int) -> None:
    pred = res.prediction
    left, right = st.columns(2, gap="large")
    with left:
        chart(F.lengths_figure(res.lengths, pred), "fig_lengths")
        st.caption("The length of digit capsule j is the probability that digit j is present "
                   "(squash, eq. 1). The margin loss (eq. 4) pushes the true digit above m⁺ = 0.9 and "
                   "every other below m⁻ = 0.1.")
    with right:
        chart(F.lengths_per_iteration_figure(res.lengths_per_iteration,
                                             title=f"|v<sub>j</sub>| after each of the r = {iterations} iterations"),
              "fig_lengths_iter")
        if iterations > 1:
            chart(F.length_change_figure(res.length_change), "fig_length_change")
            st.caption("Change of every capsule's length from one routing iteration to the next: "
                       "routing moves the lengths only through the coupling coefficients c (eq. 2).")

# ---- 3: routing step by step
def view_routing(res: A.Analysis, iterations: int) -> None:
    pred = res.prediction
    c1, c2, c3 = st.columns([1.2, 1.0, 2.2])
    with c1:
        if iterations > 1:
            t = st.slider("Iteration", 1, iterations, iterations, key="routing_iteration",
                          help="Iteration t uses the coupling coefficients c = softmax(b) of that step.")
        else:
            t = 1
            st.caption("With r = 1 there is one iteration, with uniform coupling.")
    with c2:
        j = digit_picker("Digit capsule", "routing_digit", pred)
    with c3:
        view = st.radio("Show", ["c − 1/10 (move from uniform)", "c[t] − c[t−1] (change in this step)",
                                 "c (raw)"], key="routing_view", horizontal=True)
    if view.startswith("c − 1/10"):
        values, cb = res.c_deviation[:, :, j], "c − 1/10"
        title = f"Coupling to digit {j} at iteration {t}: c<sub>i{j}</sub> − 1/10"
    elif view.startswith("c[t]"):
        values, cb = res.c_step[:, :, j], "Δc"
        title = f"Coupling to digit {j}: change from iteration {max(t - 1, 1)} to {t}"
    else:
        values, cb = res.c[:, :, j], "c"
        title = f"Coupling coefficients c<sub>i{j}</sub> at iteration {t}"
    shift = 0.1 if cb == "c" else 0.0  # raw c is drawn around its uniform value 1/10
    zmax = float(np.abs(values - shift).max())
    e1, e2, e3, e4 = st.columns(4)
    e1.metric("Routing entropy", f"{res.entropy[t - 1]:.5f}",
              f"{res.entropy[t - 1] - np.log(10):+.1e} vs ln 10", delta_color="off",
              help="Mean over the 1152 primaries of −Σⱼ cᵢⱼ ln cᵢⱼ (nats); ln 10 = 2.30259 is uniform coupling.")
    e2.metric("Largest |c − 1/10|", f"{np.abs(res.c_deviation[t - 1]).max():.1e}",
              help="The largest move of any coupling coefficient away from uniform at this iteration.")
    e3.metric(f"Coupling mass Σᵢ cᵢ{j}", f"{res.mass[t - 1, j]:.3f}",
              f"{res.mass[t - 1, j] - 115.2:+.3f} vs 115.2", delta_color="off",
              help="Sum of the coupling coefficients of all 1152 primaries to this digit (1152/10 when uniform).")
    top = int(np.argmax(res.c[t - 1, :, j]))
    ty, row, col = primary_position(top)
    e4.metric("Most coupled primary", f"type {ty} ({row},{col})",
              f"c = {res.c[t - 1, top, j]:.4f}", delta_color="off",
              help="The primary capsule (type, row, col) with the largest c to this digit.")
    left, right = st.columns(2, gap="large")
    with left:
        chart(F.coupling_figure(values[t - 1] - shift, j, title=title, zmax=zmax,
                                colorbar_title="c − 1/10" if cb == "c" else cb), "fig_coupling")
        st.caption("Each 6×6 tile is one of the 32 primary-capsule types over its grid positions "
                   "(i = type·36 + row·6 + col). Iteration 1 always uses c = 1/10 (b = 0, eq. 3), so it "
                   "is blank; later iterations raise c where the prediction û agrees with v. "
                   "In a trained CapsNet most coefficients move by only 10⁻³ to 10⁻² (the mean routing "
                   "entropy stays within 10⁻³ of ln 10), hence the deviation scale.")
    with right:
        a_t = res.agreement[t - 1, :, j]
        chart(F.coupling_figure(a_t, j, zmax=float(np.abs(a_t).max()), colorbar_title="û·v",
                                title=f"Agreement û<sub>{j}|i</sub> · v<sub>{j}</sub> after iteration {t}"),
              "fig_agreement_tiles")
        st.caption(f"What iteration {t} adds to each logit bᵢ{j} (Procedure 1, line 7): red primaries "
                   f"predict a pose that agrees with v{j} and gain coupling in the next iteration.")
    chart(F.routing_mass_figure(res.mass, res.vote_mass), "fig_mass")
    st.caption("Share of the coupling (left: Σᵢ cᵢⱼ) and of the vote length flowing into sⱼ "
               "(right: Σᵢ cᵢⱼ|ûⱼ|ᵢ|, eq. 2) that each digit receives over the iterations; 10 % is uniform.")
    with st.expander("Agreement of all 1152 primaries with all 10 digit capsules"):
        chart(F.agreement_figure(res.agreement[t - 1], t), "fig_agreement")
        st.caption(f"ûⱼ|ᵢ · vⱼ after iteration {t} for every pair; columns are primaries "
                   "i = type·36 + row·6 + col.")

# ---- 4: evidence map
def view_evidence(res: A.Analysis, clock: Clock) -> None:
    pred = res.prediction
    modes = {"votes c·|û|": "magnitude", "contribution to |sⱼ|": "projected",
             "change since iteration 1": "change"}
    c1, c2, c3 = st.columns([1, 1.6, 1])
    with c1:
        je = digit_picker("Digit capsule", "evidence_digit", pred)
    with c2:
        mode = modes[st.radio("Show", list(modes), key="evidence_mode", horizontal=True)]
    with c3:
        normalize = st.toggle("Average over covering fields", value=True, key="evidence_normalize",
                              help="On: each pixel shows the mean vote of the receptive fields that contain it "
                                   "(1 at the corners, up to 36 in the middle). Off: their sum, which favours the centre.")
    along = res.v_per_iteration[:, je:je + 1] if mode == "projected" else None
    maps = clock("evidence maps", A.evidence_maps, res.c[:, :, je:je + 1], res.u_hat[:, je:je + 1],
                 normalize=normalize, along=along)[:, 0]
    if mode == "change":
        maps = maps - maps[:1]
    titles = {
        "magnitude": None,
        "projected": f"Contribution to |s<sub>{je}</sub>|: c<sub>i{je}</sub> û<sub>{je}|i</sub> · v̂<sub>{je}</sub> on the receptive fields",
        "change": f"Evidence for digit {je}: change of c·|û| since iteration 1",
    }
    bars = {"magnitude": "c·|û|", "projected": "c û·v̂", "change": "Δ c·|û|"}
    left, right = st.columns([1.2, 1], gap="large")
    with left:
        chart(F.evidence_figure(res.image, maps, je, title=titles[mode], diverging=mode != "magnitude",
                                colorbar_title=bars[mode]), "fig_evidence")
    with right:
        st.markdown("**How to read it**")
        st.caption("Every primary capsule i sends digit j the vote cᵢⱼ ûⱼ|ᵢ (eq. 2). Its size cᵢⱼ|ûⱼ|ᵢ| is "
                   "spread over the 17×17 input window the capsule sees (conv1 9×9, then 9×9 with stride 2: "
                   "rows and columns 2·row … 2·row + 16) and summed over the 32 types; the white line "
                   "outlines the input's ink. Step through the routing iterations with the slider under "
                   "the map.")
        st.caption("Primary capsules are long almost everywhere, background included, so the plain votes "
                   "vary little. **Contribution to |sⱼ|** projects each vote on the direction of vⱼ: "
                   "these add up to |sⱼ| exactly, so red regions make capsule j long and blue ones "
                   "shorten it. **Change since iteration 1** shows where routing moved votes towards "
                   "(red) or away from (blue) digit j.")


# ---- 5: routing iterations
def view_iterations(res: A.Analysis, iterations: int) -> None:
    left, right = st.columns([1.2, 1], gap="large")
    with left:
        chart(F.lengths_per_iteration_figure(res.sweep.lengths, highlight=iterations,
                                             title="Capsule lengths when routing with k = 1 … 10 iterations"),
              "fig_sweep_lengths")
    with right:
        preds = res.sweep.predictions
        st.markdown(f"**Prediction by number of iterations:** "
                    + " · ".join(f"k={k_ + 1}: **{int(p)}**" for k_, p in enumerate(preds)))
        flips = [k_ + 1 for k_ in range(1, len(preds)) if preds[k_] != preds[k_ - 1]]
        st.caption("The prediction never changes over 1 … 10 iterations." if not flips else
                   f"The prediction changes at k = {', '.join(map(str, flips))}.")
        st.caption(f"Routing with k iterations equals the first k iterations of a longer routing, so one "
                   f"trace gives all ten. The paper (§4) uses r = 3; the sidebar's r = {iterations} "
                   "(dotted line) is used by every view.")
    chart(F.iteration_strip_figure(res.sweep.reconstructions, res.sweep.predictions), "fig_sweep_strip")


# ---- 6: pose perturbation
def reset_pose() -> None:
    for d in range(16):
        st.session_state[f"pose_{d}"] = 0.0


def view_pose(model, model_key: str, res: A.Analysis, clock: Clock) -> None:
    pred = res.prediction
    left, right = st.columns([1.15, 1], gap="large")
    with left:
        c1, c2 = st.columns([1.4, 1], vertical_alignment="bottom")
        with c1:
            jp = digit_picker("Digit capsule", "pose_digit", pred)
        with c2:
            st.button("Reset offsets", key="pose_reset", on_click=reset_pose)
        st.caption("The 16 dimensions of a digit capsule are its instantiation parameters (§5.1). "
                   "Add an offset to any of them and the decoder redraws the digit.")
        pose = res.v[jp]
        cols = st.columns(4)
        offsets = np.zeros(16, np.float32)
        for d in range(16):
            with cols[d % 4]:
                offsets[d] = st.slider(f"dim {d + 1} (v = {pose[d]:+.2f})", -0.5, 0.5, 0.0, 0.05,
                                       key=f"pose_{d}", format="%+.2f")
        perturbed = pose + offsets
        recon = clock("decode (pose sliders)", A.reconstruct, model, perturbed, jp)
        plain = res.reconstruction if jp == pred else A.reconstruct(model, pose, jp)
        a, b = st.columns(2)
        with a:
            chart(F.image_figure(plain, f"Decoded from v<sub>{jp}</sub>", height=250), "fig_pose_plain")
        with b:
            chart(F.image_figure(recon, f"Decoded from v<sub>{jp}</sub> + offsets", height=250),
                  "fig_pose_live")
        chart(F.pose_figure(pose, jp, perturbed if np.any(offsets) else None, height=270),
              "fig_pose_vector")
    with right:
        grid = clock("Fig. 4 grid (176 decodes)", cached_grid, model, model_key,
                     np.ascontiguousarray(pose), jp)
        chart(F.perturbation_figure(grid, A.perturbation_deltas(), jp, height=760), "fig_perturbation")
        st.caption(f"As the paper's Fig. 4: row d adds −0.25 … +0.25 (steps of 0.05) to dimension d of "
                   f"v{jp}, all other dimensions kept, and decodes. Some dimensions change stroke width, "
                   "skew or local parts of the digit.")


# ---- 7: transform explorer
def reset_transform() -> None:
    for kind, (_, _, identity, _) in A.TRANSFORMS.items():
        st.session_state[f"tf_{kind}"] = float(identity)


def view_transform(model, model_key: str, image: np.ndarray, res: A.Analysis, iterations: int,
                   clock: Clock) -> None:
    pred = res.prediction
    st.caption("Transform the input and watch the capsules respond: the paper argues the pose vector "
               "changes smoothly with the digit's pose (equivariance) while the length, the "
               "probability, stays put (invariance).")
    cols = st.columns(len(A.TRANSFORMS) + 1)
    params = {}
    for col, (kind, (lo, hi, identity, unit)) in zip(cols, A.TRANSFORMS.items()):
        with col:
            params[kind] = st.slider(TRANSFORM_LABELS[kind], float(lo), float(hi), float(identity),
                                     TRANSFORM_STEPS[kind], key=f"tf_{kind}", help=unit)
    with cols[-1]:
        kind = st.selectbox("Sweep", list(A.TRANSFORMS), key="tf_sweep",
                            format_func=lambda k_: TRANSFORM_LABELS[k_].split(" (")[0])
        st.button("Reset", key="tf_reset", on_click=reset_transform)
    identity = all(params[k_] == A.TRANSFORMS[k_][2] for k_ in params)
    moved = image if identity else clock("transform", A.transform_image, image, **params)
    tres = res if identity else clock("analysis (transformed)", cached_analysis, model, model_key,
                                      np.ascontiguousarray(moved), iterations)
    left, mid, right = st.columns([1.3, 1, 1.2], gap="medium")
    with left:
        chart(F.image_pair_figure(tres.image, tres.reconstruction, tres.prediction, height=260), "fig_tf_pair")
        st.metric("Prediction (transformed)", f"{tres.prediction} ({tres.confidence:.2f})")
    with mid:
        chart(F.lengths_figure(tres.lengths, tres.prediction, title="Lengths |v<sub>j</sub>|", height=300,
                               values=False),
              "fig_tf_lengths")
    with right:
        chart(F.pose_figure(res.v[pred], pred, tres.v[pred], height=300, names=("original", "transformed"),
                            title=f"Pose v<sub>{pred}</sub>: original vs transformed"),
              "fig_tf_pose")
    base = tuple(sorted((k_, v_) for k_, v_ in params.items() if k_ != kind))
    sweep = clock("transform sweep (21 images)", cached_sweep, model, model_key, image, kind, base, pred,
                  iterations)
    chart(F.transform_figure(sweep.values, sweep.poses, sweep.lengths, kind, pred, current=params[kind],
                             unit=A.TRANSFORMS[kind][3]), "fig_tf_sweep")
    st.caption(f"Each line is one of the 16 dimensions of capsule {pred} (the prediction for the "
               f"untransformed input) as {TRANSFORM_LABELS[kind].split(' (')[0].lower()} sweeps its range, "
               "the other transforms held at their slider values; below, all ten lengths.")


# ---- 8: model panel
def model_panel(model, device, model_path: Path, model_note: str, clock: Clock) -> None:
    """Device, checkpoint metadata and this run's compute time, in the sidebar."""
    with st.sidebar:
        st.header("Model")
        meta = getattr(model, "metadata", {}) or {}
        st.markdown(f"**Device:** {describe(device)}")
        if model_path.is_file():
            st.markdown(f"**Checkpoint:** `{model_path.name}`")
        acc = meta.get("test_accuracy")
        rows = []
        if acc is not None:
            acc = float(acc) * (100.0 if float(acc) <= 1.0 else 1.0)  # a fraction or a percentage
            rows.append(f"- test accuracy **{acc:.2f} %**")
        if meta.get("epoch") is not None or meta.get("epochs") is not None:
            rows.append(f"- epochs: {meta.get('epoch', '?')} of {meta.get('epochs', '?')}")
        if meta.get("date"):
            rows.append(f"- trained: {str(meta['date'])[:16].replace('T', ' ')} UTC")
        if meta.get("hardware"):
            rows.append(f"- on: {meta['hardware']}")
        if meta.get("train_seconds"):
            rows.append(f"- training time: {float(meta['train_seconds']) / 60:.0f} min")
        if rows:
            st.markdown("\n".join(rows))
        elif model_note:
            st.caption("untrained weights (no checkpoint yet)")
        st.metric("Compute, last interaction", f"{clock.total:.1f} ms",
                  help="Wall time of the model work in this rerun; results already computed for this "
                       "input come from a cache and count as ~0.")
        st.caption(" · ".join(f"{k_} {v_:.1f} ms" for k_, v_ in clock.steps.items()))
        last = st.session_state.get("new_input_ms")
        if last is not None:
            st.caption(f"Last new input: **{last:.1f} ms** (traced forward pass and the open view).")


# ------------------------------------------------------------------------------ page

model_path = checkpoint_path()
try:
    model, device, model_note = get_model(
        str(model_path), model_path.stat().st_mtime if model_path.is_file() else 0.0,
        os.environ.get("CAPSULES_DEVICE"))
except (CheckpointError, ValueError) as exc:
    st.error(f"The model could not be loaded: {exc}")
    st.stop()
model_key = f"{model_path}:{model_path.stat().st_mtime if model_path.is_file() else 'untrained'}:{device}"
clock = Clock()

st.title("Capsule network explorer")
st.caption("Dynamic routing between capsules (Sabour, Frosst & Hinton, 2017) on MNIST: "
           "Conv1 → 1152 primary capsules (32 types × 6×6, 8D) → routing → 10 digit capsules (16D) "
           "→ decoder. Draw a digit or pick one, then explore the tabs.")
if model_note:
    st.warning(model_note, icon=":material/warning:")

with st.sidebar:
    st.header("Routing")
    default_r = int(model.config.routing_iterations)
    iterations = st.slider("Routing iterations r", 1, MAX_ITERATIONS, default_r, key="iterations",
                           help=f"Procedure 1 runs r iterations; the paper (and training) uses {default_r}. "
                                "Every view uses this r.")

# ---- input row
col_draw, col_pick, col_pred = st.columns([1.05, 1.0, 1.6], gap="medium")
with col_draw:
    st.subheader("Draw")
    drawn = to_model_image(read_canvas())
    st.caption("Draw a digit with the mouse: it replaces the sample. "
               "Empty it with the toolbar's reset button to return to the sample.")

if not SAMPLES.is_file():
    st.info(f"No sample digits found at `{SAMPLES.relative_to(ROOT)}`: run `python scripts/make_samples.py`.")
    st.stop()
samples = get_samples(str(SAMPLES), SAMPLES.stat().st_mtime)
n_samples = len(samples["labels"])
sevens = np.flatnonzero(samples["labels"] == 7)
default_sample = int(sevens[0]) if sevens.size else 0

with col_pick:
    st.subheader("Or pick an input")
    k = st.selectbox("Sample MNIST test digit", range(n_samples), index=default_sample, key="sample",
                     format_func=lambda i: sample_label(samples, i),
                     help="20 test digits per class plus digits the shipped model gets wrong "
                          "(predictions as of when the samples were made).")
    upload = st.file_uploader("Upload a photo or scan (PNG/JPEG)", type=["png", "jpg", "jpeg"],
                              key="upload")
    uploaded, upload_msg = read_upload(upload) if upload is not None else (None, "")
    if upload_msg:
        st.info(upload_msg)

if drawn is not None:
    image, source, label = drawn, "your drawing", None
elif uploaded is not None:
    image, source, label = uploaded, f"upload `{upload.name}`", None
else:
    image = samples["images"][k].astype(np.float32) / 255.0
    label = int(samples["labels"][k])
    source = f"test digit #{int(samples['indices'][k])} (label {label})"

image = np.ascontiguousarray(image, dtype=np.float32)
res = clock("analysis (traced forward)", cached_analysis, model, model_key, image, iterations)
pred = res.prediction

with col_pick:
    st.caption(f"**Input now:** {source}. "
               + ("Draw on the canvas to replace it." if drawn is None else "Reset the canvas to go back to the sample."))

with col_pred:
    st.subheader("Prediction")
    m1, m2 = st.columns(2)
    m1.metric("Prediction", f"{pred} ({res.confidence:.2f})",
              help="The longest digit capsule and its length |v|, the model's probability that the digit is present.")
    runner_up = int(np.argsort(res.lengths)[-2])
    m2.metric("Runner-up", f"{runner_up} ({res.lengths[runner_up]:.2f})")
    if label is not None:
        st.caption(f"True label: **{label}** " + ("✓" if label == pred else "✗ (misclassified)"))
    chart(F.image_pair_figure(res.image, res.reconstruction, pred, height=290), "fig_pair")
    st.caption("Left: the 28×28 image the model classifies. Right: the decoder's reconstruction from "
               "the winning capsule alone, the others masked to zero (§4.1).")

VIEWS = {
    "Capsule lengths": lambda: view_lengths(res, iterations),
    "Routing step by step": lambda: view_routing(res, iterations),
    "Evidence map": lambda: view_evidence(res, clock),
    "Routing iterations": lambda: view_iterations(res, iterations),
    "Pose perturbation": lambda: view_pose(model, model_key, res, clock),
    "Transform explorer": lambda: view_transform(model, model_key, image, res, iterations, clock),
}
tabs = st.tabs(list(VIEWS), key="view", on_change="rerun")  # only the open tab computes and draws
for tab, draw in zip(tabs, VIEWS.values()):
    if tab.open:
        with tab:
            draw()

input_key = (hash(image.tobytes()), iterations)
if st.session_state.get("input_key") != input_key:  # a new input: remember what it cost
    st.session_state["input_key"] = input_key
    st.session_state["new_input_ms"] = clock.total
model_panel(model, device, model_path, model_note, clock)  # last: it reports this run's compute time
