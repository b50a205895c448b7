# hwnas: the API, the job worker and the Ray nodes all run this image (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HWNAS_HOME=/data

# The CPU build of torch first, so that installing the project does not pull the CUDA wheels.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /app
COPY pyproject.toml README.md ./
COPY nas ./nas
COPY predictors ./predictors
COPY store ./store
COPY workers ./workers
COPY api ./api
COPY cli ./cli
# Editable, so that non-Python files (the Alembic migrations' script template) are used in place.
RUN pip install -e '.[service]'

RUN useradd --create-home --uid 1000 hwnas && mkdir -p /data && chown hwnas /data
USER hwnas
VOLUME ["/data"]
EXPOSE 8000
CMD ["hwnas", "serve", "--host", "0.0.0.0", "--port", "8000"]
