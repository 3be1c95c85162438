"""FastAPI application around eplb_core."""
