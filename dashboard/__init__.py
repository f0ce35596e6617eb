"""The dashboard and read API: bars, rollups, metrics and alerts from PostgreSQL, as JSON, Arrow or Parquet, and
the browser pages that use them (dashboard/server.py)."""
