"""The dashboard of the MNIST CapsNet: ``streamlit run dashboard/app.py`` (from the repository root).

This file is the entry: it sets up the browser tab and the navigation between pages. Each page
is a file of its own in ``app_pages/`` with a ``main()``, which ``st.navigation`` runs as a script
(``if __name__ == "__main__": main()``) and the tests import as a module:
:mod:`dashboard.app_pages.explorer`, the explorer of one digit, :mod:`dashboard.app_pages.experiments`,
the test-set experiments (does routing matter?), :mod:`dashboard.app_pages.two_digits`, two
overlapping digits read by the MultiMNIST CapsNet (the paper's section 6),
:mod:`dashboard.app_pages.trust`, attacks and outliers (can it be fooled? is it a digit?), and
:mod:`dashboard.app_pages.model_cards`, the shipped models' stories. What pages share:
:mod:`dashboard.models` (the models and data, loaded once per process with ``st.cache_resource``;
the sidebar's model panel), :mod:`dashboard.widgets` (the inputs, the r slider),
:mod:`dashboard.views` (charts, tabs, fragments); their figures are in :mod:`dashboard.figures`,
a module per page. A new page is one more file in ``app_pages/`` and one more ``st.Page`` in
:func:`pages`; pages are files, not functions, so that ``st.switch_page`` and Streamlit's AppTest
can open each of them by its path.

Every page keeps its state in the address (:mod:`dashboard.url_state`: the page, the model, r, the
input, the open tab and the views' own choices), so that a link reopens the same view; the
sidebar's "Copy link" (:mod:`dashboard.copy_link`) copies it.

The model is picked in the sidebar (:func:`dashboard.models.pick_model`, drawn here so that the
choice holds on every page): the shipped MNIST CapsNets and ``$CAPSULES_CHECKPOINT`` when it is set
(then picked first; else the shipped checkpoint is), on ``pick_device($CAPSULES_DEVICE)`` (the GPU
when there is one); on the two-digit page the MultiMNIST CapsNets and
``$CAPSULES_MULTIMNIST_CHECKPOINT`` (:data:`dashboard.models.PAGE_MODELS`). The server's torch work is one
image at a time, where more CPU threads cost more in start-up and contention (with each other,
other sessions and the browser) than they gain: it runs on ``$CAPSULES_THREADS`` threads, 1 by
default.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st
import torch

from dashboard.app_pages import (
    EXPERIMENTS_PAGE,
    EXPLORER_PAGE,
    MODELS_PAGE,
    TRUST_PAGE,
    TWO_DIGITS_PAGE,
)
from dashboard.copy_link import copy_link
from dashboard.models import MNIST_MODELS, PAGE_MODELS, TWO_DIGITS_URL, pick_model

ICON = "🧮"  # an emoji: the browser draws it, nothing is fetched from another host
HERE = Path(__file__).resolve().parent


def pages() -> list:
    return [
        st.Page(HERE / EXPLORER_PAGE, title="One digit", icon="✏️", url_path="explorer", default=True),
        st.Page(HERE / EXPERIMENTS_PAGE, title="Test-set experiments", icon=":material/bar_chart:",
                url_path="experiments"),
        st.Page(HERE / TRUST_PAGE, title="Attacks & outliers", icon=":material/shield:", url_path="trust"),
        st.Page(HERE / TWO_DIGITS_PAGE, title="Two digits", icon=":material/join_inner:", url_path=TWO_DIGITS_URL),
        st.Page(HERE / MODELS_PAGE, title="Models", icon=":material/inventory_2:", url_path="models"),
    ]


def main() -> None:
    st.set_page_config(page_title="CapsNet explorer", page_icon=ICON, layout="wide")
    threads = max(1, int(os.environ.get("CAPSULES_THREADS") or 1))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    navigation = st.navigation(pages())
    pick_model(PAGE_MODELS.get(navigation.url_path, MNIST_MODELS))
    with st.sidebar:
        copy_link()
    navigation.run()


if __name__ == "__main__":
    main()
