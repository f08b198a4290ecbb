"""What every HTTP process shares: health/readiness, API.md's error responses, the body-size limit, the
correlation-id middleware and a uvicorn `serve` helper. The gateway and webhook-ingest both build on these."""
