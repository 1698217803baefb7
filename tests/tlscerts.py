"""Test certificates made with `cryptography`: a CA, a server certificate for 127.0.0.1,
client certificates, and the same keys as PEM key stores, PKCS12 and (with the JDK's
keytool) JKS.  Also the zoo.cfg / -D settings that point a server at them."""

from __future__ import annotations

import datetime
import shutil
import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

PASSWORD = "s3cret"
CLIENT_SUBJECT = [(NameOID.COUNTRY_NAME, "DE"), (NameOID.ORGANIZATION_NAME, "zkpy tests"),
                  (NameOID.ORGANIZATIONAL_UNIT_NAME, "clients"), (NameOID.COMMON_NAME, "client")]
# as X500Principal.getName() writes CLIENT_SUBJECT
CLIENT_DN = "CN=client,OU=clients,O=zkpy tests,C=DE"
SUPER_DN = "CN=admin,O=zkpy tests"


def _name(attrs: list[tuple[x509.ObjectIdentifier, str]]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attrs])


@dataclass
class Identity:
    """A key and its certificate chain, written as PEM (key + chain) and PKCS12."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    pem: Path  # private key + certificate (JDK 17's PEM reader cannot decrypt a PBES2 key)
    pem_encrypted: Path  # private key encrypted with PASSWORD + certificate
    cert_pem: Path  # certificate only
    key_pem: Path  # private key only, unencrypted (for Python clients)
    p12: Path


def _write(d: Path, name: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> Identity:
    enc = serialization.BestAvailableEncryption(PASSWORD.encode())
    pem_encrypted = d / f"{name}-encrypted.pem"
    pem_encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                serialization.PrivateFormat.PKCS8, enc)
                              + cert.public_bytes(serialization.Encoding.PEM))
    pem = d / f"{name}.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
                    + cert.public_bytes(serialization.Encoding.PEM))
    cert_pem = d / f"{name}-cert.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem = d / f"{name}-key.pem"
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    p12 = d / f"{name}.p12"
    p12.write_bytes(pkcs12.serialize_key_and_certificates(name.encode(), key, cert, None, enc))
    return Identity(key, cert, pem, pem_encrypted, cert_pem, key_pem, p12)


def _issue(subject: x509.Name, issuer: x509.Name, issuer_key: ec.EllipticCurvePrivateKey,
           key: ec.EllipticCurvePrivateKey, ca: bool = False, server: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1))
         .not_valid_after(now + datetime.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


@dataclass
class Pki:
    """A CA with a server and client identities, in directory `dir`."""

    dir: Path
    ca_pem: Path
    ca_p12: Path  # a PKCS12 trust store made by keytool (None-equivalent if no JDK)
    server: Identity
    client: Identity
    admin: Identity
    stranger: Identity  # signed by another CA
    ca_key: ec.EllipticCurvePrivateKey | None = None

    def server_cfg(self, client_auth: str = "need", store: str = "pem") -> dict[str, str]:
        """zoo.cfg keys for a server with this PKI's server key and CA."""
        ks = {"pem": self.server.pem, "p12": self.server.p12, "jks": self.dir / "server.jks"}[store]
        ts = {"pem": self.ca_pem, "p12": self.ca_p12, "jks": self.dir / "ca.jks"}[store]
        cfg = {"ssl.keyStore.location": str(ks), "ssl.keyStore.password": PASSWORD,
               "ssl.trustStore.location": str(ts), "ssl.trustStore.password": PASSWORD,
               "ssl.clientAuth": client_auth}
        if store == "pem":  # Java's PemReader takes a key password to mean an encrypted key
            del cfg["ssl.keyStore.password"]
        return cfg


def make_pki(d: Path, ca: Pki | None = None, java_stores: bool = True) -> Pki:
    """A new PKI in d; with `ca`, new certificates from that PKI's CA; `java_stores`:
    also the keytool-made stores (seconds of JVM start-ups; PEM and PKCS12 need none)."""
    d.mkdir(parents=True, exist_ok=True)
    ca_name = _name([(NameOID.COMMON_NAME, "zkpy test CA")])
    if ca is not None and ca.ca_key is not None:
        ca_key = ca.ca_key
        ca_id = _write(d, "ca", ca_key, x509.load_pem_x509_certificate(ca.ca_pem.read_bytes()))
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_id = _write(d, "ca", ca_key, _issue(ca_name, ca_name, ca_key, ca_key, ca=True))

    def leaf(name: str, subject: x509.Name, server: bool = False,
             issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] = (ca_name, ca_key)) -> Identity:
        key = ec.generate_private_key(ec.SECP256R1())
        return _write(d, name, key, _issue(subject, issuer[0], issuer[1], key, server=server))

    server = leaf("server", _name([(NameOID.COMMON_NAME, "localhost")]), server=True)
    client = leaf("client", _name(CLIENT_SUBJECT))
    admin = leaf("admin", _name([(NameOID.ORGANIZATION_NAME, "zkpy tests"),
                                 (NameOID.COMMON_NAME, "admin")]))
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _name([(NameOID.COMMON_NAME, "other CA")])
    stranger = leaf("stranger", _name([(NameOID.COMMON_NAME, "client")]), issuer=(other, other_key))
    pki = Pki(d, ca_id.cert_pem, d / "ca-trust.p12", server, client, admin, stranger, ca_key)
    if java_stores and shutil.which("keytool"):
        _keytool_stores(pki)
    return pki


def _keytool_stores(pki: Pki) -> None:
    d = pki.dir
    kt = ["keytool", "-noprompt", "-storepass", PASSWORD]
    for store, kind in ((pki.ca_p12, "PKCS12"), (d / "ca.jks", "JKS")):
        subprocess.run([*kt, "-importcert", "-alias", "ca", "-file", str(pki.ca_pem), "-keystore",
                        str(store), "-storetype", kind], check=True, capture_output=True)
    subprocess.run([*kt, "-importkeystore", "-srckeystore", str(pki.server.p12), "-srcstoretype", "PKCS12",
                    "-srcstorepass", PASSWORD, "-destkeystore", str(d / "server.jks"),
                    "-deststoretype", "JKS", "-deststorepass", PASSWORD], check=True, capture_output=True)
