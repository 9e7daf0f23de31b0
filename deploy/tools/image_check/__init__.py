"""Builds the image on this machine and runs it as the Helm chart runs it.

    make image-check            (or: .venv/bin/python deploy/tools/image-check)

No image registry is reachable here, so:

1. the base image is built with mmdebstrap: Debian bookworm with Python 3.11, what
   python:3.11-slim is (plus the C headers mypyc compiles the engine against, which
   python:3.11-slim has and Debian splits out, and the CA certificates this machine trusts
   locally, so that pip in the build can reach PyPI through this machine's egress proxy),
   imported into podman as ``localhost/exchange-base:<recipe hash>``;
2. deploy/Dockerfile is built with ``podman build --isolation chroot``, its base passed as
   the PYTHON_IMAGE build argument (default python:3.11-slim, unchanged for other builds);
3. podman cannot run containers in this sandbox, so the image goes to Docker
   (``podman save | docker load``); dockerd is started with ``--bridge=none
   --iptables=false`` when none is running, and stopped again at the end;
4. ``helm template`` renders the chart with PostgreSQL and Redis on 127.0.0.1, and each
   container is run as rendered: its command and args, its env and envFrom (Secrets and
   ConfigMaps of the render; fieldRef and resourceFieldRef as the kubelet resolves them;
   $(VAR) expanded), the user and groups of its securityContext, a read-only root,
   ``--cap-drop ALL``, no-new-privileges, the memory limit, an ``emptyDir`` as a tmpfs and
   ConfigMap and Secret volumes as read-only bind mounts; a securityContext short of
   the chart's hardened default (non-root, read-only root, no capabilities, no privilege
   escalation) fails the check. ``--network host``: every port is chosen free, and the
   cluster DNS names the containers use are mapped to 127.0.0.1 (``--add-host``).
   Market data runs two workers (``marketdata.config.workers=2``), order the default;
5. checks: the migrate Job exits 0 (twice: install, then upgrade; it makes the first admin
   key from a Secret volume), matching, order and market-data answer gRPC health SERVING
   on the probe port with as many service processes as workers, serve Prometheus
   metrics with their expected families, the chart's
   ``helm test`` Pod passes, the engine in the image is the compiled build, a buy and a
   sell placed with the exchange CLI trade and the trade is at the market-data service;
   then each service gets its preStop hook and
   ``docker stop`` (SIGTERM) and must exit 0 within terminationGracePeriodSeconds,
   each of its processes having logged "stopped", nothing logged at ERROR or above.

Everything is removed at the end (containers, the database, the Redis db) except the
images, kept as the build cache of the next run. Exit status 0 only when every check
passes. Needs root, apt (for mmdebstrap, podman, docker.io when missing) and npm (helm,
deploy/tools/install-helm.sh) on a first run.
"""
