# appendq: one image for every role (migrate, worker, beat, intake, simulator); the command picks.
#   docker build -t appendq .        or        docker-compose build
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    APPENDQ_STATE_DIR=/var/lib/appendq

WORKDIR /app

# Installed with the lock as constraints: the same versions as the tests ran with.
COPY pyproject.toml constraints.txt README.md ./
COPY appendq ./appendq
COPY producer ./producer
COPY workers ./workers
RUN pip install -c constraints.txt .

# `appendq migrate` finds alembic.ini and migrations/ in the working directory.
COPY alembic.ini ./
COPY migrations ./migrations

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin appendq \
    && mkdir -p /var/lib/appendq \
    && chown appendq /var/lib/appendq
USER appendq

EXPOSE 8000 8765
ENTRYPOINT ["appendq"]
CMD ["--help"]
