/**
 * A throw-away CA and a server certificate for the test broker, made with openssl at test time
 * (never committed). The server certificate names 127.0.0.1 (host tests) and 10.0.2.2 (the host
 * as a QEMU user-network guest sees it).
 */
import { generateKeyPairSync } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import forge from "node-forge";

export interface TestPki {
  caPem: string;
  certPem: string;
  keyPem: string;
  caPath: string;
}

function openssl(args: string[], cwd: string): void {
  const r = Bun.spawnSync(["openssl", ...args], { cwd, stderr: "pipe", stdout: "ignore" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr.toString()}`);
}

export function makeTestPki(dir: string, cn = "cryptpilot test KBS CA"): TestPki {
  mkdirSync(dir, { recursive: true });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  openssl(
    [
      "req",
      "-x509",
      ...ec,
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "2",
      "-subj",
      `/CN=${cn}`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign",
    ],
    dir,
  );
  openssl(["req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"], dir);
  writeFileSync(
    join(dir, "ext.cnf"),
    "subjectAltName=IP:127.0.0.1,IP:10.0.2.2,DNS:localhost\nextendedKeyUsage=serverAuth\n",
  );
  openssl(
    [
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "server.pem",
      "-days",
      "2",
      "-extfile",
      "ext.cnf",
    ],
    dir,
  );
  const read = (f: string) => readFileSync(join(dir, f), "utf8");
  return {
    caPem: read("ca.pem"),
    certPem: read("server.pem"),
    keyPem: read("server.key"),
    caPath: join(dir, "ca.pem"),
  };
}

/** Reuse DIR's CA and server certificate if an earlier run made them, else make them. */
export function loadOrMakePki(dir: string): TestPki {
  if (!["ca.pem", "server.pem", "server.key"].every((f) => existsSync(join(dir, f)))) return makeTestPki(dir);
  const read = (f: string) => readFileSync(join(dir, f), "utf8");
  return {
    caPem: read("ca.pem"),
    certPem: read("server.pem"),
    keyPem: read("server.key"),
    caPath: join(dir, "ca.pem"),
  };
}

/** Validity of a certificate made by makeDatedPki. */
export interface Validity {
  notBefore: Date;
  notAfter: Date;
}

/**
 * A CA and a server certificate (127.0.0.1, 10.0.2.2, localhost) with chosen validity dates, e.g.
 * expired or not yet valid, for the clock checks (openssl 3.0's `x509 -req` cannot set a start
 * date). Keys from node:crypto (fast), certificates signed with node-forge.
 */
export function makeDatedPki(leaf: Validity, ca?: Validity): Omit<TestPki, "caPath"> {
  const rsa = () => {
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const key = forge.pki.privateKeyFromPem(privateKey.export({ type: "pkcs8", format: "pem" }).toString());
    const rsaKey = key as forge.pki.rsa.PrivateKey;
    return { key: rsaKey, pub: forge.pki.setRsaPublicKey(rsaKey.n, rsaKey.e) };
  };
  const day = 86_400_000;
  const caKey = rsa();
  const caName = [{ name: "commonName", value: "cryptpilot dated test CA" }];
  const caCert = forge.pki.createCertificate();
  caCert.publicKey = caKey.pub;
  caCert.serialNumber = "01";
  caCert.validity.notBefore = ca?.notBefore ?? new Date(Date.now() - day);
  caCert.validity.notAfter = ca?.notAfter ?? new Date(Date.now() + 2 * day);
  caCert.setSubject(caName);
  caCert.setIssuer(caName);
  caCert.setExtensions([
    { name: "basicConstraints", cA: true, critical: true },
    { name: "keyUsage", keyCertSign: true, critical: true },
  ]);
  caCert.sign(caKey.key, forge.md.sha256.create());
  const serverKey = rsa();
  const cert = forge.pki.createCertificate();
  cert.publicKey = serverKey.pub;
  cert.serialNumber = "02";
  cert.validity.notBefore = leaf.notBefore;
  cert.validity.notAfter = leaf.notAfter;
  cert.setSubject([{ name: "commonName", value: "127.0.0.1" }]);
  cert.setIssuer(caName);
  cert.setExtensions([
    {
      name: "subjectAltName",
      altNames: [
        { type: 7, ip: "127.0.0.1" },
        { type: 7, ip: "10.0.2.2" },
        { type: 2, value: "localhost" },
      ],
    },
    { name: "extKeyUsage", serverAuth: true },
  ]);
  cert.sign(caKey.key, forge.md.sha256.create());
  return {
    caPem: forge.pki.certificateToPem(caCert),
    certPem: forge.pki.certificateToPem(cert),
    keyPem: forge.pki.privateKeyToPem(serverKey.key),
  };
}
