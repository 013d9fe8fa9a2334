FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY banditgate ./banditgate
RUN pip install --no-cache-dir .
ENV BANDITGATE_ARTIFACT_DIR=/data/artifacts
EXPOSE 8000
CMD ["banditgate", "serve", "--host", "0.0.0.0", "--port", "8000"]
