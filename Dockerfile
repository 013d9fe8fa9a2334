FROM python:3.11-slim
# LightGBM needs the GNU OpenMP runtime, which the slim image lacks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY banditgate ./banditgate
RUN pip install --no-cache-dir .
# The service runs as its own user; the artifact directory and the outbox are its to write (model artifacts must
# be writable only by the service's user: they are loaded by it).
RUN useradd --system --uid 10001 --home-dir /data banditgate \
    && mkdir -p /data/artifacts /data/outbox \
    && chown -R banditgate:banditgate /data
USER banditgate
WORKDIR /data
ENV BANDITGATE_ARTIFACT_DIR=/data/artifacts
EXPOSE 8000
CMD ["banditgate", "serve", "--host", "0.0.0.0", "--port", "8000"]
