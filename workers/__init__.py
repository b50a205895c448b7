"""Execution: the job runner, its executors (in-process, Ray), the job kinds, the Ray helpers and the device agent."""
