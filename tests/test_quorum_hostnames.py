"""The quorum host-name check (ssl.quorum.hostnameVerification) decided by zkpy's
`quorum_security.host_matches` and by Apache ZooKeeper's own ZKHostnameVerifier, on the
same certificates and host names: wildcards, IPv4 and IPv6 addresses, a CN next to
alternative names, alternative names of other kinds.  Java runs once for the whole
table (a single-file program calling the verifier through reflection, ~2 s)."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from tests.conftest import REFERENCE_AVAILABLE, REFERENCE_JARS, require_tool
from zkpy.server.quorum_security import host_matches

# certificate name -> (CN or None, subject alternative names)
CERTS: dict[str, tuple[str | None, list[x509.GeneralName]]] = {
    "wildcard": ("cn.zk.test", [x509.DNSName("*.zk.test")]),
    "partial": (None, [x509.DNSName("a*.zk.test"), x509.DNSName("exact.other.test")]),
    "addresses": ("10.0.0.9", [x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
                               x509.IPAddress(ipaddress.ip_address("::1"))]),
    "cn-only": ("Host.ZK.test", []),
    "cn-address": ("10.0.0.7", []),
    "email-san": ("mail.zk.test", [x509.RFC822Name("ops@zk.test")]),
    "no-name": (None, []),
}
HOSTS = ["a.zk.test", "A.ZK.TEST", "a.b.zk.test", "zk.test", "cn.zk.test", "abc.zk.test", "b.zk.test",
         "exact.other.test", "10.0.0.1", "10.0.0.9", "0:0:0:0:0:0:0:1", "::1", "[::1]", "host.zk.test",
         "10.0.0.7", "mail.zk.test", "localhost"]

PROBE = """
import java.io.FileInputStream;
import java.lang.reflect.Constructor;
import java.lang.reflect.Method;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;

public class Probe {
    public static void main(String[] args) throws Exception {
        Class<?> c = Class.forName("org.apache.zookeeper.common.ZKHostnameVerifier");
        Constructor<?> make = c.getDeclaredConstructor();
        make.setAccessible(true);
        Object verifier = make.newInstance();
        Method verify = c.getDeclaredMethod("verify", String.class, X509Certificate.class);
        verify.setAccessible(true);
        CertificateFactory f = CertificateFactory.getInstance("X.509");
        for (int i = 1; i + 1 < args.length; i += 2) {
            X509Certificate cert;
            try (FileInputStream in = new FileInputStream(args[0] + "/" + args[i] + ".der")) {
                cert = (X509Certificate) f.generateCertificate(in);
            }
            boolean ok = true;
            try {
                verify.invoke(verifier, args[i + 1], cert);
            } catch (java.lang.reflect.InvocationTargetException e) {
                ok = false;
            }
            System.out.println(ok);
        }
    }
}
"""


def _certificate(cn: str | None, sans: list[x509.GeneralName]) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "zkpy tests")]
                        + ([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []))
    now = datetime.datetime.now(datetime.UTC)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1))
         .not_valid_after(now + datetime.timedelta(days=1)))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def test_host_names_as_zookeepers_verifier(tmp_path: Path) -> None:
    require_tool(REFERENCE_AVAILABLE, "java and the ZooKeeper jars")
    ders = {name: _certificate(cn, sans) for name, (cn, sans) in CERTS.items()}
    for name, der in ders.items():
        (tmp_path / f"{name}.der").write_bytes(der)
    (tmp_path / "Probe.java").write_text(PROBE)
    cases = [(name, host) for name in CERTS for host in HOSTS]
    out = subprocess.run(["java", "-cp", ":".join(REFERENCE_JARS), str(tmp_path / "Probe.java"),
                          str(tmp_path), *(x for case in cases for x in case)],
                         capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert len(out) == len(cases), out
    java = {case: verdict == "true" for case, verdict in zip(cases, out, strict=True)}
    zkpy = {(name, host): host_matches(host, ders[name]) for name, host in cases}
    differ = {case: (java[case], zkpy[case]) for case in cases if java[case] != zkpy[case]}
    assert not differ, f"(java, zkpy) where they differ: {differ}"
    # the table exercises both outcomes of each rule, not only refusals
    for case, expected in ((("wildcard", "a.zk.test"), True), (("wildcard", "a.b.zk.test"), False),
                           (("wildcard", "cn.zk.test"), True), (("partial", "abc.zk.test"), True),
                           (("partial", "b.zk.test"), False), (("addresses", "[::1]"), True),
                           (("addresses", "10.0.0.9"), False), (("cn-only", "host.zk.test"), True),
                           (("email-san", "mail.zk.test"), True), (("no-name", "localhost"), False)):
        assert java[case] is expected, case


@pytest.mark.parametrize("host", ["", "a", "*", "a*b*.zk.test"])
def test_odd_host_names_do_not_raise(host: str) -> None:
    der = _certificate("a*a", [])
    assert host_matches(host, der) in (True, False)
