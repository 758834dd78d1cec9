"""The dashboard and its API (`netvigil serve`): `app.py` (FastAPI, pages, JSON/CSV), `tables.py` (what every page,
API answer and CSV shows, pure), `templates/` and `static/` (bundled, nothing loaded from elsewhere)."""
