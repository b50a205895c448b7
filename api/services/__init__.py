"""The service's logic over the SQL store, the artefact store and the job queue (no HTTP here)."""
