"""The service: the FastAPI app (`api.app.create_app`), auth, routes, schemas and services."""
