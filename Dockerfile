# One image for all three services; the command selects the service (see infra/docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir .
ENV LOG_JSON=true
CMD ["mitwirkung", "serve", "registration"]
