"""The "Copy link" control: a button that copies the address the browser shows now.

The page keeps its state in the address (:mod:`dashboard.url_state`), and the server does not
know the address's host, so the link is taken where it is whole: in the browser, at the moment of
the click (``window.location.href``; a view's own controls update the address without rerunning
the page). An ``st.components.v2`` component, its code inline below: no build step, nothing
fetched. Where the browser refuses the clipboard (a page served over plain http to another
machine), the link appears in a box, selected, to copy by hand. After a click the link is also in
the element's ``data-link`` attribute.
"""

from __future__ import annotations

import streamlit as st

JS = """
export default function ({ parentElement }) {
  let root = parentElement.querySelector(".copy-link");
  if (!root) {
    root = document.createElement("div");
    root.className = "copy-link";
    root.innerHTML = `<button type="button"
        title="Copy the address of this view: the page, the model, r, the input and the open tab"><svg
        viewBox="0 0 24 24" aria-hidden="true"><path
        d="M10 14a5 5 0 0 0 7 0l3-3a5 5 0 0 0-7-7l-1 1M14 10a5 5 0 0 0-7 0l-3 3a5 5 0 0 0 7 7l1-1"/></svg>Copy
        link</button>
      <span class="said" aria-live="polite"></span>
      <input class="url" readonly hidden aria-label="Link to this view">`;
    parentElement.appendChild(root);
  }
  const said = root.querySelector(".said"), box = root.querySelector(".url");
  root.querySelector("button").onclick = async () => {
    const url = window.location.href;
    root.dataset.link = url;
    try {
      await navigator.clipboard.writeText(url);
      said.textContent = "copied";
      box.hidden = true;
    } catch (error) {
      box.hidden = false;
      box.value = url;
      box.select();
      said.textContent = "copy it from the box";
    }
  };
}
"""

CSS = """
.copy-link { display: flex; flex-wrap: wrap; align-items: center; gap: 0.4rem;
             font-family: var(--st-font, sans-serif); font-size: 0.85rem; }
button { font: inherit; padding: 0.25rem 0.75rem; color: var(--st-text-color, inherit);
         background: var(--st-secondary-background-color, transparent);
         border: 1px solid var(--st-border-color, #888888);
         border-radius: var(--st-button-radius, var(--st-base-radius, 0.5rem)); cursor: pointer; }
button svg { width: 1em; height: 1em; margin-right: 0.35em; vertical-align: -0.12em; fill: none;
             stroke: currentColor; stroke-width: 2.2; stroke-linecap: round; }
button:hover { border-color: var(--st-primary-color, currentColor); color: var(--st-primary-color, inherit); }
.said { opacity: 0.7; }
.url { width: 100%; font: inherit; }
"""

_LINK = st.components.v2.component("capsules_copy_link", js=JS, css=CSS)


def copy_link(key: str = "copy_link") -> None:
    """The button, where it is called (the entry puts it in the sidebar, on every page)."""
    _LINK(key=key, width="content", height="content")
