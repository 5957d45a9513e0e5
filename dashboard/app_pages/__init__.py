"""The dashboard's pages, one file each, run by ``st.navigation`` as scripts (``dashboard/app.py``
lists them) and imported by the tests as modules. A page reads its widgets, calls the library and
draws the figures of :mod:`dashboard.figures`; what pages share is in :mod:`dashboard.models`,
:mod:`dashboard.widgets` and :mod:`dashboard.views`.

The paths below are relative to the entry, as ``st.Page`` and ``st.switch_page`` take them. The
folder is not called ``pages/``: beside the entry, that name makes Streamlit fall back to its first
multipage scheme, which runs a page without the entry (so without the sidebar's model picker).
The one-digit explorer's views are in modules of their own beside it (``explorer_routing.py``,
``explorer_pose.py``): they are not pages."""

EXPLORER_PAGE = "app_pages/explorer.py"
EXPERIMENTS_PAGE = "app_pages/experiments.py"
TWO_DIGITS_PAGE = "app_pages/two_digits.py"
TRUST_PAGE = "app_pages/trust.py"  # attacks and outliers: /trust
MODELS_PAGE = "app_pages/model_cards.py"  # the shipped models' stories (not models.py: dashboard/models.py exists)
TEST_DIGIT = "test_digit"  # the query parameter that opens a test digit in the explorer: /explorer?test_digit=247
