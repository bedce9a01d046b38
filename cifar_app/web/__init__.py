"""The web app: the pages (``pages/``, listed once in ``app.PAGES``), the server's live routes and
access gate, the access policy, and pure chart and table functions. Pages read and draw."""
