# The image config/controller.yaml and config/dataplane run: `docker build -t ironlb:0.1.0 .`
# Our CI machines have no container engine, so this file is not built there; the same package and entry point are
# what every test runs.
FROM python:3.11-slim

# The dataplane drives the kernel through these tools (config/dataplane runs this image as root with
# NET_ADMIN and NET_RAW; the controller and the speaker never call them). nftables mode loads libnftables
# in-process through Debian's binding (pure Python over ctypes), linked into this Python's site-packages.
RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables nftables python3-nftables conntrack ipset \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s /usr/lib/python3/dist-packages/nftables \
        "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nftables"

WORKDIR /opt/ironlb
COPY pyproject.toml constraints.txt README.md ./
# The runtime only: no lab/ (the embedded API server and its dependencies are a test tool).
COPY common common
COPY k8s k8s
COPY controller controller
COPY speaker speaker
COPY dataplane dataplane
RUN pip install --no-cache-dir --disable-pip-version-check -c constraints.txt . \
    && rm -rf /root/.cache

# Matches the Deployment's securityContext: no root, read-only root filesystem, /tmp an emptyDir.
USER 65534:65534
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
ENTRYPOINT ["python", "-m", "controller"]
