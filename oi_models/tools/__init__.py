"""Data tools: `oi-download` (verifying, resumable downloads), `oi-image-sizes` (sizes from image
headers), `oi-to-sql` (the annotations in DuckDB or PostgreSQL)."""
