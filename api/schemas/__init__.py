"""Request and response bodies of the API (pydantic); requests reject unknown fields."""
