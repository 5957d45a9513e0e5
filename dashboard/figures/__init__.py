"""Plotly figures of the dashboard, one module per page (:mod:`.base` what they share,
:mod:`.routing` and :mod:`.pose` the explorer's, :mod:`.two_digits`, :mod:`.experiments`): plain
functions from numpy arrays to ``go.Figure``, with no Streamlit and no model, tested on their own.
:mod:`capsules.analysis` computes; these draw."""
