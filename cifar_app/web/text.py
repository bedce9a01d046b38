"""User-controlled text shown as text: one helper per renderer (Streamlit markdown, Plotly's HTML
subset), so a label, a file name or an error message never becomes markup."""

from __future__ import annotations

import html
import re

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$&=^\"'])")


def for_markdown(text: object) -> str:
    """``text`` for ``st.markdown`` and captions: every markdown punctuation backslash-escaped, so
    links, images, emphasis, HTML, math and ``:color[...]`` directives show as typed; line breaks
    kept as spaces."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def for_plotly(text: object) -> str:
    """``text`` for a Plotly title, legend or hover label: its markup characters as entities."""
    return html.escape(str(text), quote=False)
