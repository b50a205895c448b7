"""Ray helpers the job kinds call: supernet training on Ray Train, evaluation and Ray Tune search, latency tasks."""
