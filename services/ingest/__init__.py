"""The HTTPS ingest: clinics outside the trusted network publish over HTTP with an
API key, and hold no Redis rights (README, "Publishing over HTTPS")."""
