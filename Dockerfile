# The EPLB service on a CPU: docker build -t eplb . && docker run --rm -p 8000:8000 eplb
FROM python:3.11-slim

# PyPI's Linux torch wheel pulls in the CUDA libraries; the CPU build comes from this index.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    EPLB_HOST=0.0.0.0 \
    EPLB_PORT=8000

WORKDIR /srv/eplb
RUN pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0

# The app finds templates/ and static/ beside its package: install the project in place.
COPY pyproject.toml README.md ./
COPY eplb_core/ eplb_core/
COPY app/ app/
COPY templates/ templates/
COPY static/ static/
RUN pip install -e . \
    && useradd --create-home --uid 10001 eplb

USER eplb
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# python -m app: uvicorn with the EPLB_* settings (header deadline, connection cap, pool).
CMD ["python", "-m", "app"]
