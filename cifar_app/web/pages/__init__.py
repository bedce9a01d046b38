"""The app's pages: each a Streamlit script (``web.app.PAGES`` lists them)."""
