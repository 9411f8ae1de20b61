"""Apache Kafka's jars, fetched from Maven Central by a pinned list, into a cache.

``stream/brokers/kafka-<version>.lock`` names every jar the broker and its console tools need
(``group:artifact:version`` and the jar's sha256), so no Maven install is needed:
:func:`resolve_kafka` downloads each jar from ``$GNNREC_MAVEN_REPO`` (default Maven Central),
checks its digest and moves the finished set into ``<cache>/kafka-<version>/lib`` under a file
lock, so parallel processes resolve it once. A jar that does not match its digest is an error,
never used. ``python -m stream.brokers.jars --lock VERSION`` writes the list anew with Maven
(the one step that needs it: choosing a new version).
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from stream.brokers.base import BrokerUnavailable

DEFAULT_KAFKA_VERSION = "4.1.2"  # on Maven Central: repo1.maven.org/maven2/org/apache/kafka/kafka_2.13/
CENTRAL = "https://repo1.maven.org/maven2"
LOCK_DIR = Path(__file__).resolve().parent
SLF4J_VERSION = "1.7.36"  # the slf4j-api version kafka_2.13 4.1.x depends on
DEPENDENCY_PLUGIN = "3.8.1"

# What the lock is generated from: the broker, its console tools (without Kafka Connect, which
# they do not need), and slf4j-simple so that the broker logs to its log file.
_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>gnnrec</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{version}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>{version}</version>
      <exclusions><exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion></exclusions>
    </dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>{slf4j}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>{slf4j}</version></dependency>
  </dependencies>
</project>
"""


@dataclass(frozen=True)
class Jar:
    group: str
    artifact: str
    version: str
    sha256: str

    @property
    def file_name(self) -> str:
        return f"{self.artifact}-{self.version}.jar"

    def url(self, repo: str) -> str:
        return f"{repo.rstrip('/')}/{self.group.replace('.', '/')}/{self.artifact}/{self.version}/{self.file_name}"


def lock_path(version: str) -> Path:
    return LOCK_DIR / f"kafka-{version}.lock"


def read_lock(version: str) -> list[Jar]:
    path = lock_path(version)
    if not path.is_file():
        known = sorted(p.stem.removeprefix("kafka-") for p in LOCK_DIR.glob("kafka-*.lock"))
        raise BrokerUnavailable(f"no jar list for Kafka {version} ({path} is missing); pinned versions: "
                                f"{', '.join(known)}. Write one with `python -m stream.brokers.jars --lock {version}` "
                                "(needs Maven)")
    jars = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        try:
            coords, digest = line.split()
            group, artifact, ver = coords.split(":")
        except ValueError:
            raise BrokerUnavailable(f"{path} line {n}: expected 'group:artifact:version sha256', got {line!r}") from None
        jars.append(Jar(group, artifact, ver, digest))
    return jars


def kafka_cache_dir(version: str = DEFAULT_KAFKA_VERSION) -> Path:
    """``$GNNREC_KAFKA_CACHE/kafka-<version>``; the parent defaults to ``~/.cache/gnnrec``."""
    parent = os.environ.get("GNNREC_KAFKA_CACHE") or Path.home() / ".cache" / "gnnrec"
    return Path(parent) / f"kafka-{version}"


def _download(jar: Jar, repo: str, dest: Path) -> None:
    url = jar.url(repo)
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as out:
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        raise BrokerUnavailable(f"could not download {url} ({exc}); check the network, or point "
                                "GNNREC_MAVEN_REPO at a Maven mirror") from None
    if digest.hexdigest() != jar.sha256:
        dest.unlink(missing_ok=True)
        raise BrokerUnavailable(f"{url} has sha256 {digest.hexdigest()}, the pinned list says {jar.sha256}: "
                                "refusing it (a corrupted download or a tampered mirror)")


def resolve_kafka(version: str = DEFAULT_KAFKA_VERSION, cache_dir: Path | None = None) -> Path:
    """The directory holding Kafka's jars, downloading the pinned list if needed."""
    jars = read_lock(version)
    stamp = hashlib.sha256(lock_path(version).read_bytes()).hexdigest()
    cache_dir = Path(cache_dir) if cache_dir is not None else kafka_cache_dir(version)
    cache_dir.mkdir(parents=True, exist_ok=True)
    lib, marker = cache_dir / "lib", cache_dir / "lib" / ".complete"
    repo = os.environ.get("GNNREC_MAVEN_REPO", CENTRAL)
    with open(cache_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and marker.read_text().strip() == stamp:
            return lib
        staging = cache_dir / "lib.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        have = {p.name: p for p in lib.glob("*.jar")} if lib.is_dir() else {}
        for jar in jars:
            old = have.get(jar.file_name)
            if old is not None and hashlib.sha256(old.read_bytes()).hexdigest() == jar.sha256:
                shutil.copy2(old, staging / jar.file_name)  # already cached and intact
            else:
                _download(jar, repo, staging / jar.file_name)
        shutil.rmtree(lib, ignore_errors=True)
        staging.rename(lib)
        marker.write_text(stamp + "\n")
        return lib


def write_lock(version: str) -> Path:
    """Resolve ``version`` with Maven and write its pinned jar list (``--lock``)."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerUnavailable("writing a jar list needs Maven (`apt-get install maven`)")
    with tempfile.TemporaryDirectory(prefix="gnnrec-lock-") as tmp:
        pom = Path(tmp) / "pom.xml"
        pom.write_text(_POM.format(version=version, slf4j=SLF4J_VERSION))
        listing = Path(tmp) / "list.txt"
        cmd = [mvn, "-B", "-q", "--no-transfer-progress", "-f", str(pom),
               f"org.apache.maven.plugins:maven-dependency-plugin:{DEPENDENCY_PLUGIN}:list",
               "-DincludeScope=runtime", f"-DoutputFile={listing}", "-DoutputAbsoluteArtifactFilename=true"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if done.returncode != 0 or not listing.is_file():
            raise BrokerUnavailable(f"Maven could not resolve Kafka {version} (exit {done.returncode}):\n"
                                    f"{(done.stdout + done.stderr)[-4000:]}")
        lines = []
        for raw in listing.read_text().splitlines():
            if ":jar:" not in raw:
                continue
            group, artifact, _, ver, _scope, *path = raw.strip().split(" -- ")[0].split(":")
            digest = hashlib.sha256(Path(":".join(path)).read_bytes()).hexdigest()
            lines.append(f"{group}:{artifact}:{ver} {digest}")
    out = lock_path(version)
    out.write_text("\n".join(sorted(lines)) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.brokers.jars", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lock", metavar="VERSION", help="write stream/brokers/kafka-VERSION.lock with Maven")
    args = parser.parse_args(argv)
    try:
        if args.lock:
            print(write_lock(args.lock))
        else:
            print(resolve_kafka())
    except BrokerUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
