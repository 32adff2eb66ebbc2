"""HTTP hardening shared by the drift server and the key provisioner: body limits enforced while
the body streams in, a header-read timeout for uvicorn, a bounded sliding-window rate limiter and
log lines that user text cannot forge (docs/reliability.md, issue 15)."""
