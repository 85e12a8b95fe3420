/**
 * Credentials for the Alibaba Cloud test servers, made fresh by openssl the way the real console
 * issues them: a KMS instance CA and its TLS server certificate, and a Client Key whose PKCS#12
 * uses the same algorithms as the downloaded clientKey_*.json (RSA-2048, certificate bag
 * pbeWithSHA1And40BitRC2-CBC, key bag pbeWithSHA1And3-KeyTripleDES-CBC with 2048 iterations, SHA-1
 * MAC with 1 iteration). Nothing here is a fixture: every run gets new keys.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface ClientKeyMaterial {
  keyId: string;
  /** The clientKey_<KeyId>.json content. */
  json: string;
  /** The clientKey_<KeyId>_Password.txt content (with its trailing newline, like the download). */
  passwordFile: string;
  password: string;
  certPem: string;
}

export interface Material {
  kmsInstanceId: string;
  /** PrivateKmsCA_<kst-id>.pem */
  caPem: string;
  serverCertPem: string;
  serverKeyPem: string;
  clientKey: ClientKeyMaterial;
}

function openssl(dir: string, args: string[], stdin?: string): void {
  const p = Bun.spawnSync(["openssl", ...args], {
    cwd: dir,
    stdin: stdin === undefined ? "ignore" : Buffer.from(stdin),
    stderr: "pipe",
    stdout: "pipe",
  });
  if (p.exitCode !== 0) throw new Error(`openssl ${args[0]} failed: ${p.stderr.toString()}`);
}

/** A CA and a server certificate for `hosts` (DNS names and IPs) signed by it. */
export function makeCa(
  dir: string,
  name: string,
  cn: string,
): { certPem: string; keyFile: string; certFile: string } {
  const keyFile = `${name}.key`;
  const certFile = `${name}.pem`;
  openssl(dir, [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    keyFile,
    "-out",
    certFile,
    "-subj",
    `/CN=${cn}`,
    "-days",
    "30",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  return { certPem: readFileSync(join(dir, certFile), "utf8"), keyFile, certFile };
}

function issue(
  dir: string,
  ca: { keyFile: string; certFile: string },
  name: string,
  cn: string,
  ext: string,
): { certPem: string; keyPem: string } {
  openssl(dir, [
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.csr`,
    "-subj",
    `/CN=${cn}`,
  ]);
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(dir, [
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    ca.certFile,
    "-CAkey",
    ca.keyFile,
    "-CAcreateserial",
    "-out",
    `${name}.pem`,
    "-days",
    "30",
    "-extfile",
    `${name}.ext`,
  ]);
  return {
    certPem: readFileSync(join(dir, `${name}.pem`), "utf8"),
    keyPem: readFileSync(join(dir, `${name}.key`), "utf8"),
  };
}

export function makeMaterial(options: { hosts?: string[] } = {}): Material {
  const dir = mkdtempSync(join(tmpdir(), "aliyun-material-"));
  try {
    const kmsInstanceId = `kst-test${randomBytes(6).toString("hex")}`;
    const ca = makeCa(dir, "ca", `Private KMS CA ${kmsInstanceId}`);
    const hosts = [
      `${kmsInstanceId}.cryptoservice.kms.aliyuncs.com`,
      "127.0.0.1",
      "10.0.2.2",
      ...(options.hosts ?? []),
    ];
    const san = hosts.map((h) => (/^[\d.]+$/.test(h) ? `IP:${h}` : `DNS:${h}`)).join(",");
    const server = issue(
      dir,
      ca,
      "server",
      `${kmsInstanceId}.cryptoservice.kms.aliyuncs.com`,
      `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`,
    );
    const client = issue(dir, ca, "client", `${kmsInstanceId}-client`, "extendedKeyUsage=clientAuth\n");
    const password = randomBytes(16).toString("hex");
    // -nomaciter after -iter: OpenSSL 3 otherwise applies -iter to the MAC too.
    openssl(
      dir,
      [
        "pkcs12",
        "-export",
        "-legacy",
        "-in",
        "client.pem",
        "-inkey",
        "client.key",
        "-certpbe",
        "PBE-SHA1-RC2-40",
        "-keypbe",
        "PBE-SHA1-3DES",
        "-macalg",
        "sha1",
        "-iter",
        "2048",
        "-nomaciter",
        "-passout",
        "stdin",
        "-out",
        "client.p12",
      ],
      `${password}\n`,
    );
    return {
      kmsInstanceId,
      caPem: ca.certPem,
      serverCertPem: server.certPem,
      serverKeyPem: server.keyPem,
      clientKey: clientKeyFrom(dir, password, client.certPem),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function clientKeyFrom(dir: string, password: string, certPem: string): ClientKeyMaterial {
  const keyId = `KAAP.${crypto.randomUUID()}`;
  const p12 = readFileSync(join(dir, "client.p12"));
  return {
    keyId,
    json: `${JSON.stringify({ KeyId: keyId, PrivateKeyData: p12.toString("base64") }, null, 2)}\n`,
    passwordFile: `${password}\n`,
    password,
    certPem,
  };
}
