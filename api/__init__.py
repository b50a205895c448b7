"""The service: the FastAPI app (`api.app.create_app`), auth, routes and schemas; the SQL store and artefacts."""
