#!/usr/bin/env python3
"""Run kazoo's own test suite against a 3-server zkpy ensemble and against Apache
ZooKeeper 3.8, and show which tests pass on the reference but not on zkpy.

  kazoo_suite.py                          # both targets, reference first
  kazoo_suite.py --target zkpy -k TestClient --junit out/
  kazoo_suite.py --report-only --junit out/   # diff two earlier runs again

kazoo's harness (kazoo/testing/harness.py, common.py) starts every server itself as
`java -cp ... -D... org.apache.zookeeper.server.quorum.QuorumPeerMain zoo.cfg`; each
test class gets a fresh 3-server ensemble (ZOOKEEPER_CLUSTER_SIZE=3). For the reference
the classpath is Debian's jars in /usr/share/java. For zkpy a `java` shim is put first on
PATH (a two-line shell script in a temporary directory that calls this file back with
--as-java-shim): it takes QuorumPeerMain's config argument, passes the -D flags on as
SERVER_JVMFLAGS and execs `python -m zkpy.server.main start` on a copy of that zoo.cfg.

kazoo's harness configures every server for TLS and SASL: secureClientPort and ssl.*
with JKS key and trust stores, serverCnxnFactory=Netty, authProvider.1=SASL..., and
-Djava.security.auth.login.config naming a JAAS file that is EMPTY unless a SASL test
writes a Server section into it. By default zkpy gets all of that, with two changes
the shim makes and logs (into the server's zookeeper.log, first line):
  * the JKS stores are converted to a PKCS12 key store and a PEM trust store (same
    password) beside them: zkpy reads no JKS, by design (server/tls.py);
  * the JAAS flag is dropped while the file has no Server section: Java then runs with
    no SASL login, zkpy refuses to start (a deliberate divergence, stricter than Java).

!!! --filter-security is for a zkpy without client TLS/SASL (before f0480a3/7d43951),
!!! which refuses those keys (security fails closed): the shim then DROPS
!!! secureClientPort, authProvider.*, ssl.*, serverCnxnFactory and the JAAS flag, and
!!! nothing else (reconfigEnabled, standaloneEnabled, the 4lw whitelist, local
!!! sessions, superDigest ... stay as kazoo wrote them); kazoo's SASL and TLS tests
!!! (test_sasl.py, TestSSLClient) are then EXPECTED TO FAIL on zkpy, and its SASL
!!! tests spin (the client resends its token to a server with no SASL login) until
!!! --test-timeout. Reconfig is not implemented by zkpy: TestReconfig fails either way.

--zkpy-src DIR runs the zkpy package found in DIR instead of this checkout's, e.g. a
stable copy while the work tree is being edited:
`git archive HEAD | tar -x -C /tmp/zkpy-head` then `--zkpy-src /tmp/zkpy-head`.

The comparison groups every test that passes on the reference and does not pass on
zkpy as reconfig / SASL / TLS / other; "other" is what needs looking into. Each target
runs under a time limit (--timeout, 20 minutes by default): on expiry pytest is
interrupted (it still writes its JUnit XML) and the server processes are killed.
The suite and its harness need pyOpenSSL < 24.3 (it uses X509Extension), pyjks,
pure-sasl and objgraph: `pip install 'pyopenssl<24.3' pyjks pure-sasl objgraph`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUORUM_MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
ZK_VERSION = "3.8.0"
JAVA_DIR = Path("/usr/share/java")
REFERENCE_JARS = [
    "zookeeper.jar", "zookeeper-jute.jar", "slf4j-api.jar", "slf4j-log4j12.jar", "log4j-1.2.jar",
    "commons-cli.jar", "commons-io.jar", "snappy-java.jar", "metrics-core.jar",
    "netty-handler.jar", "netty-transport.jar", "netty-common.jar", "netty-buffer.jar",
    "netty-codec.jar", "netty-resolver.jar", "netty-transport-native-epoll.jar",
    "netty-transport-native-unix-common.jar",
]
# zoo.cfg keys the shim keeps out of zkpy's copy (see the module docstring).
FILTERED_PREFIXES = ("secureClientPort", "authProvider.", "ssl.", "serverCnxnFactory")
FILTERED_FLAGS = ("-Djava.security.auth.login.config=",)
INSTALL_HINT = "pip install 'pyopenssl<24.3' pyjks pure-sasl objgraph pytest-timeout"
PORT_OFFSETS = {"reference": 20000, "zkpy": 20100}
CATEGORIES = (("reconfig", re.compile(r"reconfig", re.I)),
              ("SASL", re.compile(r"sasl", re.I)),
              ("TLS", re.compile(r"ssl|tls", re.I)))
Results = dict[str, str]  # test id -> passed | failed | skipped


# --------------------------------------------------------------------------- the shim

def filter_config(text: str) -> tuple[str, list[str]]:
    """zoo.cfg text without the TLS/SASL keys; also the lines that were dropped."""
    kept: list[str] = []
    dropped: list[str] = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip()
        if "=" in line and key.startswith(FILTERED_PREFIXES):
            dropped.append(line)
        else:
            kept.append(line)
    return "\n".join(kept) + "\n", dropped


def convert_jks(text: str) -> str:
    """zoo.cfg text with kazoo's JKS stores replaced by a PKCS12 key store and a PEM trust
    store beside them (same password): zkpy reads no JKS, by design (see server/tls.py)."""
    import jks  # type: ignore[import-untyped]
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    keys = dict(line.split("=", 1) for line in text.splitlines() if line.startswith("ssl.") and "=" in line)
    out = text
    ks_path = keys.get("ssl.keyStore.location", "")
    if ks_path.endswith(".jks"):
        pw = keys.get("ssl.keyStore.password", "")
        ks = jks.KeyStore.load(ks_path, pw)
        (alias, pk), = ks.private_keys.items()
        key = serialization.load_der_private_key(pk.pkey_pkcs8, None)
        certs = [x509.load_der_x509_certificate(c[1]) for c in pk.cert_chain]
        blob = pkcs12.serialize_key_and_certificates(
            alias.encode(), key, certs[0], certs[1:] or None,  # type: ignore[arg-type]
            serialization.BestAvailableEncryption(pw.encode()))
        new = ks_path[:-4] + ".p12"
        Path(new).write_bytes(blob)
        out = out.replace(f"ssl.keyStore.location={ks_path}", f"ssl.keyStore.location={new}")
    ts_path = keys.get("ssl.trustStore.location", "")
    if ts_path.endswith(".jks"):
        ts = jks.KeyStore.load(ts_path, keys.get("ssl.trustStore.password", ""))
        pem = b"".join(x509.load_der_x509_certificate(c.cert).public_bytes(serialization.Encoding.PEM)
                       for c in ts.certs.values())
        new = ts_path[:-4] + ".pem"
        Path(new).write_bytes(pem)
        out = out.replace(f"ssl.trustStore.location={ts_path}", f"ssl.trustStore.location={new}")
    return out


def java_shim(args: list[str]) -> None:
    """Stand in for `java ... QuorumPeerMain zoo.cfg`: exec zkpy on a filtered zoo.cfg."""
    if QUORUM_MAIN not in args:  # anything else is for the real java
        real = shutil.which("java", path=os.environ.get("KAZOO_SUITE_REAL_PATH", "/usr/bin"))
        if real is None:
            sys.exit("kazoo_suite java shim: no real java to run " + " ".join(args))
        os.execv(real, [real, *args])
    i = args.index(QUORUM_MAIN)
    cfg = Path(args[i + 1])
    flags = [a for a in args[:i] if a.startswith("-D")]
    if os.environ.get("KAZOO_SUITE_FILTER_SECURITY") != "1":
        text, dropped = convert_jks(cfg.read_text()), list[str]()
        # kazoo names an empty JAAS file unless a SASL test wrote a Server section into it.
        # Java then runs without a SASL login; zkpy refuses a file without the section.
        jaas = [f for f in flags if f.startswith(FILTERED_FLAGS)]
        if jaas and not re.search(r"^\s*Server\s*\{", Path(jaas[0].split("=", 1)[1]).read_text(), re.M):
            dropped += jaas
            flags = [f for f in flags if f not in jaas]
    else:
        text, dropped = filter_config(cfg.read_text())
        dropped += [f for f in flags if f.startswith(FILTERED_FLAGS)]
        flags = [f for f in flags if not f.startswith(FILTERED_FLAGS)]
    zkpy_cfg = cfg.with_name("zoo.zkpy.cfg")
    zkpy_cfg.write_text("# written by scripts/kazoo_suite.py from zoo.cfg; dropped:\n"
                        + "".join(f"#   {d}\n" for d in dropped) + text)
    # kazoo's conftest prints <working dir>/zookeeper.log when a test fails.
    log_fd = os.open(cfg.with_name("zookeeper.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(log_fd, f"kazoo_suite shim: zkpy on {zkpy_cfg}, dropped {dropped}\n".encode())
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    env = dict(os.environ)
    env["SERVER_JVMFLAGS"] = " ".join(shlex.quote(f) for f in flags)
    src = env.get("KAZOO_SUITE_ZKPY_SRC", str(REPO))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    py = sys.executable
    os.execve(py, [py, "-m", "zkpy.server.main", "start", str(zkpy_cfg)], env)


def write_shim(bin_dir: Path) -> None:
    shim = bin_dir / "java"
    shim.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} "
                    f"{shlex.quote(str(Path(__file__).resolve()))} --as-java-shim \"$@\"\n")
    shim.chmod(0o755)


# --------------------------------------------------------------------------- running

def kazoo_tests_dir() -> Path:
    spec = importlib.util.find_spec("kazoo.tests")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("kazoo is not installed: pip install -e '.[test]'")
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def check_harness_deps() -> None:
    missing = [m for m in ("jks", "OpenSSL", "puresasl", "objgraph", "pytest_timeout")
               if importlib.util.find_spec(m) is None]
    if missing:
        sys.exit(f"kazoo's test harness needs {', '.join(missing)}: {INSTALL_HINT}")
    for m in ("gevent", "eventlet"):
        if importlib.util.find_spec(m) is None:
            print(f"NOTE: {m} is not installed: kazoo's {m} handler tests will be skipped", flush=True)
    probe = "import OpenSSL.crypto as c, sys; sys.exit(not hasattr(c, 'X509Extension'))"
    if subprocess.run([sys.executable, "-W", "ignore", "-c", probe]).returncode:
        sys.exit(f"kazoo's test harness needs pyOpenSSL < 24.3 (X509Extension): {INSTALL_HINT}")


def target_env(target: str, work: Path, zkpy_src: Path, filter_security: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOOKEEPER_")}
    env.update(ZOOKEEPER_VERSION=ZK_VERSION, ZOOKEEPER_CLUSTER_SIZE="3",
               ZOOKEEPER_PORT_OFFSET=str(PORT_OFFSETS[target]))
    env.pop("SERVER_JVMFLAGS", None)
    env.pop("JVMFLAGS", None)
    if target == "reference":
        missing = [j for j in REFERENCE_JARS if not (JAVA_DIR / j).exists()]
        if missing or not shutil.which("java"):
            sys.exit(f"reference needs java and {', '.join(missing) or 'the jars'} in {JAVA_DIR}")
        env["ZOOKEEPER_CLASSPATH"] = os.pathsep.join(str(JAVA_DIR / j) for j in REFERENCE_JARS)
    else:
        bin_dir = work / "bin"
        bin_dir.mkdir()
        write_shim(bin_dir)
        env["KAZOO_SUITE_REAL_PATH"] = env.get("PATH", "/usr/bin")
        env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "/usr/bin")])
        env["ZOOKEEPER_CLASSPATH"] = "unused-by-the-zkpy-shim"
        env["KAZOO_SUITE_ZKPY_SRC"] = str(zkpy_src)
        env["KAZOO_SUITE_FILTER_SECURITY"] = "1" if filter_security else "0"
    return env


def run_target(target: str, out: Path, a: argparse.Namespace) -> Path:
    """Run the suite against one target; return its JUnit XML path."""
    junit = out / f"{target}.xml"
    log = out / f"{target}.log"
    with tempfile.TemporaryDirectory(prefix=f"kazoo-suite-{target}-") as tmp:
        work = Path(tmp)
        (work / "pytest.ini").write_text("[pytest]\n")
        env = target_env(target, work, a.zkpy_src, a.filter_security)
        tests = kazoo_tests_dir()
        cmd = [sys.executable, "-m", "pytest", str(tests), "-p", "no:cacheprovider",
               "-c", str(work / "pytest.ini"), "--rootdir", str(tests.parent.parent),
               f"--junitxml={junit}", "-v", "-rfE", f"--timeout={a.test_timeout}"]
        if a.keyword:
            cmd += ["-k", a.keyword]
        print(f"== {target}: {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
        print(f"   output in {log}", flush=True)
        start = time.monotonic()
        with log.open("w") as lf:
            proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=lf, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                proc.wait(timeout=a.timeout)
            except subprocess.TimeoutExpired:
                print(f"   {target}: time limit of {a.timeout:.0f} s reached, interrupting", flush=True)
                proc.send_signal(signal.SIGINT)  # pytest still writes the JUnit XML
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    pass
            finally:
                try:  # the servers kazoo started share pytest's process group
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        print(f"   {target}: pytest exited {proc.returncode} after {time.monotonic() - start:.0f} s",
              flush=True)
    return junit


# --------------------------------------------------------------------------- reporting

def read_junit(path: Path) -> Results:
    results: Results = {}
    if not path.exists():
        return results
    for case in ET.parse(path).getroot().iter("testcase"):
        cls = case.get("classname", "")
        tid = f"{cls}::{case.get('name', '')}" if cls else case.get("name", "")
        if case.find("failure") is not None or case.find("error") is not None:
            results[tid] = "failed"
        elif case.find("skipped") is not None:
            results[tid] = "skipped"
        else:
            results[tid] = "passed"
    return results


def counts(results: Results) -> str:
    c = {s: sum(1 for v in results.values() if v == s) for s in ("passed", "failed", "skipped")}
    return f"{c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped"


def category(test_id: str) -> str:
    for name, pattern in CATEGORIES:
        if pattern.search(test_id):
            return name
    return "other"


def report(ref: Results, zk: Results) -> int:
    """Print the diff; return the number of "other" regressions."""
    print(f"\nreference (Apache ZooKeeper {ZK_VERSION}):  {counts(ref)}")
    print(f"zkpy (3 servers):                    {counts(zk)}")
    lost = sorted(t for t, s in ref.items() if s == "passed" and zk.get(t, "not run") != "passed")
    groups: dict[str, list[str]] = {name: [] for name, _ in CATEGORIES}
    groups["other"] = []
    for t in lost:
        groups[category(t)].append(t)
    print(f"\npassed on the reference, not on zkpy: {len(lost)}")
    for name, tests in groups.items():
        note = {"reconfig": " (expected: zkpy has no reconfig)",
                "other": ""}.get(name, " (expected with --filter-security)")
        print(f"  {name}: {len(tests)}{note}")
        for t in tests:
            print(f"    {zk.get(t, 'not run'):8} {t}")
    gained = sorted(t for t, s in zk.items() if s == "passed" and ref.get(t) != "passed")
    if gained:
        print(f"\npassed on zkpy, not on the reference: {len(gained)}")
        for t in gained:
            print(f"    {ref.get(t, 'not run'):8} {t}")
    return len(groups["other"])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--as-java-shim":
        java_shim(sys.argv[2:])
        return
    # SIGTERM ends the run like Ctrl-C: run_target's finally kills pytest and the servers
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", choices=["zkpy", "reference", "both"], default="both")
    ap.add_argument("-k", dest="keyword", help="passed on to pytest -k")
    ap.add_argument("--junit", type=Path, help="keep JUnit XML and logs here (default: a temp dir)")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds per target (default 1200)")
    ap.add_argument("--test-timeout", type=int, default=180, help="seconds per test (pytest-timeout)")
    ap.add_argument("--zkpy-src", type=Path, default=REPO,
                    help="directory holding the zkpy package to run (default: this checkout)")
    ap.add_argument("--filter-security", action="store_true",
                    help="drop kazoo's TLS/SASL keys from zkpy's zoo.cfg (a zkpy without TLS/SASL)")
    ap.add_argument("--report-only", action="store_true",
                    help="run nothing; diff reference.xml and zkpy.xml already in --junit")
    a = ap.parse_args()
    out = a.junit or Path(tempfile.mkdtemp(prefix="kazoo-suite-"))
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    if a.report_only:
        if a.junit is None:
            ap.error("--report-only needs --junit DIR")
    else:
        check_harness_deps()
        if not (a.zkpy_src / "zkpy" / "__init__.py").exists():
            ap.error(f"--zkpy-src {a.zkpy_src}: no zkpy package there")
        a.zkpy_src = a.zkpy_src.resolve()
        if a.filter_security:
            print("NOTE: zkpy runs on kazoo's zoo.cfg WITHOUT secureClientPort, authProvider.*, ssl.*,\n"
                  "      serverCnxnFactory and -Djava.security.auth.login.config (zkpy refuses TLS/SASL\n"
                  "      keys): kazoo's SASL and TLS tests are expected to fail on zkpy.", flush=True)
        print(f"zkpy from {a.zkpy_src}", flush=True)
        targets = ["reference", "zkpy"] if a.target == "both" else [a.target]
        for t in targets:
            run_target(t, out, a)
    ref, zk = read_junit(out / "reference.xml"), read_junit(out / "zkpy.xml")
    if a.target != "both" and not a.report_only:
        only = zk if a.target == "zkpy" else ref
        print(f"\n{a.target}: {counts(only)}")
        for t, s in sorted(only.items()):
            if s == "failed":
                print(f"    failed   {t}")
        if not (ref and zk):
            print(f"results in {out}")
            return
    others = report(ref, zk)
    print(f"\nresults in {out}")
    sys.exit(1 if others else 0)


if __name__ == "__main__":
    main()
