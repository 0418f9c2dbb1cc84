# geofed — production image. Point it at the real upstreams with GEOFED_<UPSTREAM>_URL and credentials;
# unconfigured upstreams run on the built-in simulators unless GEOFED_DEMO=0.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    GEOFED_HOST=0.0.0.0 GEOFED_PORT=5000 GEOFED_DATA_DIR=/var/lib/geofed \
    GEOFED_CONFIG_DIR=/opt/geofed/config

WORKDIR /opt/geofed
COPY pyproject.toml README.md ./
COPY geofed ./geofed
COPY providers ./providers
COPY simulators ./simulators
COPY stac_bridge ./stac_bridge
COPY config ./config
RUN pip install --no-cache-dir . \
 && useradd --system --uid 10001 --home /var/lib/geofed geofed \
 && mkdir -p /var/lib/geofed && chown geofed /var/lib/geofed

USER geofed
EXPOSE 5000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/healthz')"
CMD ["geofed", "serve"]
