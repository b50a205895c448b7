"""The FastAPI service and its SQL store (not built yet: issues 7 and 8)."""
