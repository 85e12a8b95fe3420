/**
 * A throw-away CA and a server certificate for the test broker, made with openssl at test time
 * (never committed). The server certificate names 127.0.0.1 (host tests) and 10.0.2.2 (the host
 * as a QEMU user-network guest sees it).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

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
