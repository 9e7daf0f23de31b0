"""The tools, the base image (mmdebstrap), the image (podman) and Docker."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from image_check.shell import ROOT, CheckFailed, run, say

# compiled engine (setup.py, mypyc) builds against, which python:3.11-slim carries.
SUITE = "bookworm"
BASE_PACKAGES = ("python3.11", "python3.11-dev", "python3-venv", "python-is-python3",
                 "ca-certificates")
MIRRORS = ("deb http://deb.debian.org/debian bookworm main",
           "deb http://deb.debian.org/debian bookworm-updates main",
           "deb http://deb.debian.org/debian-security bookworm-security main")
LOCAL_CAS = Path("/usr/local/share/ca-certificates")
IMAGE = "localhost/exchange:image-check"
LABEL = "exchange-image-check"
IMAGE_LABEL = "org.opencontainers.image.title=exchange"  # deploy/Dockerfile's
DOCKERD_ARGS = ("--bridge=none", "--iptables=false")
# apt packages for the commands the check runs. podman's recommends (uidmap,
# fuse-overlayfs, slirp4netns) come with it but are not used: as root podman stores
# images on the kernel's overlay and builds with --isolation chroot.
PACKAGES = {"mmdebstrap": "mmdebstrap", "podman": "podman", "dockerd": "docker.io"}


def docker_cli() -> str:
    """Debian's docker client, the daemon's version (another may be first on PATH)."""
    return "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else "docker"


def ensure_tools() -> str:
    """Installs what is missing; returns the helm binary."""
    if os.geteuid() != 0:
        raise CheckFailed("run as root: mmdebstrap, podman and dockerd are run as root here")
    missing = sorted({pkg for cmd, pkg in PACKAGES.items() if not shutil.which(cmd)}
                     | ({"docker.io"} if not os.access("/usr/bin/docker", os.X_OK) else set()))
    if missing:
        say(f"    apt-get install {' '.join(missing)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=False, env=env,
                       capture_output=True)
        proc = subprocess.run(["apt-get", "install", "-y", "-q", *missing], env=env,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise CheckFailed(f"apt-get install {' '.join(missing)}:\n{proc.stderr[-2000:]}")
    else:
        say("    mmdebstrap, podman, docker.io: installed")
    for candidate in (os.environ.get("HELM"), str(ROOT / "deploy/.tools/bin/helm"),
                      shutil.which("helm")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    run("sh", str(ROOT / "deploy/tools/install-helm.sh"))
    return str(ROOT / "deploy/.tools/bin/helm")


def base_image(work: Path) -> str:
    """The mmdebstrap base, built unless an image of the same recipe exists."""
    cas = sorted(LOCAL_CAS.rglob("*.crt")) if LOCAL_CAS.is_dir() else []
    recipe = json.dumps([SUITE, BASE_PACKAGES, MIRRORS,
                         [(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in cas]])
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    tag = f"localhost/exchange-base:{SUITE}-py311-{digest}"
    if run("podman", "image", "exists", tag, check=False).returncode == 0:
        say(f"    {tag}: built before (same packages, mirrors and CAs)")
        return tag
    tar = work / "base.tar"
    hooks: list[str] = []
    if cas:
        hooks += [f"--customize-hook=mkdir -p \"$1\"{LOCAL_CAS}",
                  "--customize-hook=copy-in " + " ".join(map(str, cas)) + f" {LOCAL_CAS}",
                  '--customize-hook=chroot "$1" update-ca-certificates']
    run("mmdebstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
        "--format=tar", *hooks, SUITE, str(tar), *MIRRORS, log=work / "mmdebstrap.log")
    run("podman", "import", "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["python3"]',
        str(tar), tag)
    tar.unlink()
    say(f"    {tag}: built with mmdebstrap ({', '.join(BASE_PACKAGES)}"
        f"{'; local CAs: ' + ', '.join(p.name for p in cas) if cas else ''})")
    return tag


def build_image(base: str, work: Path) -> str:
    run("podman", "build", "--isolation", "chroot", "--pull=never",
        "--build-arg", f"PYTHON_IMAGE={base}", "-f", "deploy/Dockerfile", "-t", IMAGE, str(ROOT),
        log=work / "build.log")
    image_id = run("podman", "image", "inspect", "--format", "{{.Id}}", IMAGE).stdout.strip()
    run("podman", "image", "prune", "-f", "--filter", f"label={IMAGE_LABEL}", check=False)
    user = run("podman", "image", "inspect", "--format", "{{.Config.User}}", IMAGE).stdout.strip()
    say(f"    {IMAGE} {image_id[:12]}, USER {user!r} (log: {work / 'build.log'})")
    uid = user.split(":")[0]
    if not uid.isdigit() or uid == "0":
        raise CheckFailed(f"the image's USER is {user!r}: runAsNonRoot needs a numeric, "
                          "non-zero uid")
    return image_id


class Docker:
    """The Docker daemon the containers run on: the running one, or one started here."""

    def __init__(self, work: Path) -> None:
        self.cli = docker_cli()
        self.work = work
        self.pid_file = work / "dockerd.pid"
        self.started: subprocess.Popen[bytes] | None = None
        self.adopted: int | None = None

    def up(self) -> bool:
        return run(self.cli, "info", check=False).returncode == 0

    def left_by_earlier_run(self) -> int | None:
        """The pid of a dockerd that an interrupted run of this check started, if it runs."""
        try:
            pid = int(self.pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        return pid if Path(cmdline[0].decode()).name == "dockerd" else None

    def start(self) -> None:
        if self.up():
            self.adopted = self.left_by_earlier_run()
            if self.adopted is not None:
                say(f"    dockerd pid {self.adopted}: started by an interrupted run of this "
                    "check; stopped at the end")
            else:
                say("    dockerd: already running (left running)")
            return
        log = (self.work / "dockerd.log").open("wb")
        # its own session: a Ctrl-C of the check does not reach it before the clean-up
        self.started = subprocess.Popen(["dockerd", *DOCKERD_ARGS], stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self.pid_file.write_text(str(self.started.pid))
        deadline = time.monotonic() + 60
        while not self.up():
            if self.started.poll() is not None or time.monotonic() > deadline:
                tail = (self.work / "dockerd.log").read_text().strip().splitlines()[-15:]
                raise CheckFailed("dockerd " + " ".join(DOCKERD_ARGS) + " did not start:\n"
                                  + "\n".join(tail))
            time.sleep(0.5)
        say(f"    dockerd {' '.join(DOCKERD_ARGS)} started, pid {self.started.pid} "
            f"(log: {self.work / 'dockerd.log'})")

    def stop(self) -> None:
        """Stops the dockerd this check started (and with it its containerd)."""
        if self.started is not None:
            pid = self.started.pid
            self.started.send_signal(signal.SIGTERM)
            try:
                self.started.wait(30)
            except subprocess.TimeoutExpired:
                self.started.kill()
                self.started.wait()
            self.started = None
        elif self.adopted is not None:
            pid, self.adopted = self.adopted, None
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while self.left_by_earlier_run() == pid and time.monotonic() < deadline:
                time.sleep(0.2)
        else:
            return
        self.pid_file.unlink(missing_ok=True)
        say(f"    dockerd (pid {pid}) stopped")

    def load(self, image_id: str) -> None:
        have = run(self.cli, "image", "inspect", "--format", "{{.Id}}", IMAGE,
                   check=False).stdout.strip()
        if have.removeprefix("sha256:") == image_id.removeprefix("sha256:"):
            say(f"    docker has {IMAGE} {image_id[:12]} already")
            return
        save = subprocess.Popen(["podman", "save", "--format", "docker-archive", IMAGE],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        load = subprocess.run([self.cli, "load"], stdin=save.stdout, capture_output=True,
                              text=True, check=False)
        assert save.stdout is not None
        save.stdout.close()
        if save.wait() != 0 or load.returncode != 0:
            raise CheckFailed(f"podman save | docker load: {load.stderr.strip()}")
        say(f"    {load.stdout.strip()}")
        # the image an earlier run loaded, untagged now
        run(self.cli, "image", "prune", "-f", "--filter", f"label={IMAGE_LABEL}", check=False)

    def remove_containers(self) -> None:
        ids = run(self.cli, "ps", "-aq", "--filter", f"label={LABEL}",
                  check=False).stdout.split()
        if ids:
            run(self.cli, "rm", "-f", *ids, check=False)
