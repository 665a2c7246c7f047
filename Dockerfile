# syntax=docker/dockerfile:1
# One image for every process of the blog; the command names the role (python -m blog.roles):
#   monolith (the default) | auth | posts | images | payments | worker | relay | init-db
# Config: the file BLOG_CONFIG names (mount yours at /etc/blog/config.yaml). Secrets: the
# environment only (BLOG_SECRET_KEY, BLOG_JWT_SECRET, BLOG_INTERNAL_TOKEN, ...); none is baked in.
ARG PYTHON_VERSION=3.11

# ---- build: every wheel the runtime needs, the project's own included
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY blog ./blog
COPY extracted ./extracted
RUN python -m pip wheel --wheel-dir /wheels ".[postgres,mysql]"

# ---- runtime: the wheels installed into a virtualenv, no compiler, no pip cache, not root
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 blog \
    && useradd --system --uid 10001 --gid blog --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin blog
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-index --find-links /wheels "strangler-blog[postgres,mysql]"
COPY deploy/docker/config.yaml /etc/blog/config.yaml
RUN mkdir -p /data/images && chown -R blog:blog /data
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BLOG_CONFIG=/etc/blog/config.yaml
# /data: SQLite and image files of the default config; mount a volume there to keep them.
WORKDIR /data
USER 10001:10001
# monolith, auth, posts, images, payments, the email worker's inbox
EXPOSE 5000 3001 3002 3003 3004 3005
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "blog.roles", "healthcheck"]
ENTRYPOINT ["python", "-m", "blog.roles"]
CMD ["monolith"]
