#!/usr/bin/env -S node_modules/.bin/bun
/**
 * Test key broker as a command, for VM scenarios, `make demo` and trying the agent by hand:
 *
 *   bun vm-test/kbs/server.ts [--port 8080] [--resource default/key/rootfs=@rootfs.key] \
 *       [--resource default/key/delta=text] [--out DIR [--guest-host 10.0.2.2] [--tee sample]] \
 *       [--policy allow-all|deny-all|policy.json] [--allow-tee sample,tdx,snp,tpm] [--tls-dir DIR] \
 *       [--start-delay SECS] [--session-ttl SECS] [--fail-5xx N] [--slow MS]
 *       [--fail-401-attest N] [--slow-attest MS|cold] [--affinity-cookie NAME|lb]
 *
 * --out DIR writes what a guest needs: DIR/fde.toml (rootfs and delta keys from this broker at
 * http(s)://GUEST-HOST:PORT, `tee` as given, kbs_root_cert with --tls-dir) and DIR/rootfs.key,
 * DIR/delta.key (random passphrases served as default/key/{rootfs,delta} unless --resource gives
 * them; rootfs.key is what `convert --rootfs-key-file` takes). --port 0 picks a free port.
 * With --tls-dir it serves HTTPS with the CA and server certificate in DIR, made on first use
 * (DIR/ca.pem is what kbs_root_cert pins), printing "CA: DIR/ca.pem" before the start delay.
 * Prints "listening on <url>" once it accepts connections, "stats {...}" on SIGTERM/SIGINT.
 * Fault modes trustee deployments show: --fail-401-attest N answers the next N /attest requests
 * with trustee's 401 for a transient verifier failure; --slow-attest delays /attest replies
 * ("cold": 40 s, what a cold verifier takes); --affinity-cookie plays a load balancer that needs
 * its own cookie ("lb": lb-affinity) or routes to a replica without the session.
 * Listens on 127.0.0.1 only.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  AFFINITY_COOKIE,
  ALLOW_ALL,
  COLD_VERIFIER_ATTEST_MS,
  DENY_ALL,
  type Policy,
  startBroker,
} from "./broker.ts";
import { loadOrMakePki } from "./tls.ts";

function fail(message: string): never {
  process.stderr.write(`kbs server: ${message}\n`);
  process.exit(2);
}

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "8080" },
    resource: { type: "string", multiple: true, default: [] },
    out: { type: "string" },
    "guest-host": { type: "string", default: "10.0.2.2" },
    tee: { type: "string", default: "sample" },
    policy: { type: "string", default: "allow-all" },
    "allow-tee": { type: "string" },
    "tls-dir": { type: "string" },
    "start-delay": { type: "string", default: "0" },
    "session-ttl": { type: "string" },
    "fail-5xx": { type: "string", default: "0" },
    slow: { type: "string", default: "0" },
    "fail-401-attest": { type: "string", default: "0" },
    "slow-attest": { type: "string" },
    "affinity-cookie": { type: "string" },
  },
  strict: true,
});

const resources: Record<string, Uint8Array> = {};
for (const spec of values.resource) {
  const eq = spec.indexOf("=");
  if (eq < 1) fail(`--resource ${spec}: expected repo/type/tag=VALUE or repo/type/tag=@FILE`);
  const value = spec.slice(eq + 1);
  resources[spec.slice(0, eq)] = value.startsWith("@")
    ? new Uint8Array(readFileSync(value.slice(1)))
    : new TextEncoder().encode(value);
}

let policy: Policy;
if (values.policy === "allow-all") policy = ALLOW_ALL;
else if (values.policy === "deny-all") policy = DENY_ALL;
else {
  try {
    policy = JSON.parse(readFileSync(values.policy, "utf8"));
  } catch (e) {
    fail(`--policy ${values.policy}: ${(e as Error).message}`);
  }
}

let port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`--port ${values.port}: not a port number`);
if (port === 0) {
  // Fixed before the (delayed) start, so the guest config can name it.
  const probe = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  port = probe.port!;
  await probe.stop(true);
}

// The CA exists before the (delayed) start, so a guest config can pin it while the broker is down.
const pki = values["tls-dir"] ? loadOrMakePki(values["tls-dir"]) : undefined;
if (pki) process.stdout.write(`CA: ${pki.caPath}\n`);

if (values.out) {
  const out = values.out;
  mkdirSync(out, { recursive: true });
  const url = `${pki ? "https" : "http"}://${values["guest-host"]}:${port}`;
  const table = (volume: string) => {
    const path = `default/key/${volume}`;
    // Printable passphrases, so they can be typed in a rescue shell.
    resources[path] ??= new TextEncoder().encode(randomBytes(24).toString("hex"));
    writeFileSync(join(out, `${volume}.key`), resources[path]!, { mode: 0o600 });
    return [
      `[${volume}.encrypt.kbs]`,
      `kbs_url = "${url}"`,
      `key_uri = "kbs:///${path}"`,
      `tee = "${values.tee}"`,
      ...(pki ? [`kbs_root_cert = """\n${pki.caPem}"""`] : []),
      "",
    ].join("\n");
  };
  writeFileSync(
    join(out, "fde.toml"),
    [
      "[rootfs]",
      'delta_location = "disk"',
      "",
      table("rootfs"),
      "[delta]",
      "integrity = false",
      "",
      table("delta"),
    ].join("\n"),
  );
  process.stdout.write(`wrote ${join(out, "fde.toml")}, rootfs.key, delta.key\n`);
}

const delay = Number(values["start-delay"]);
if (delay > 0) {
  process.stdout.write(`down for ${delay} s\n`);
  await Bun.sleep(delay * 1000);
}
const broker = await startBroker({
  port,
  resources,
  policy,
  allowTees: values["allow-tee"]?.split(","),
  sessionTtlMs: values["session-ttl"] ? Number(values["session-ttl"]) * 1000 : undefined,
  tls: pki ? { cert: pki.certPem, key: pki.keyPem } : undefined,
  faults: {
    fail5xx: Number(values["fail-5xx"]),
    slowMs: Number(values.slow),
    transient401Attest: Number(values["fail-401-attest"]),
    slowAttestMs:
      values["slow-attest"] === "cold" ? COLD_VERIFIER_ATTEST_MS : Number(values["slow-attest"] ?? 0),
    affinityCookie: values["affinity-cookie"] === "lb" ? AFFINITY_COOKIE : values["affinity-cookie"],
  },
});
process.stdout.write(`listening on ${broker.url}\n`);
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, async () => {
    await broker.stop();
    process.stdout.write(`stats ${JSON.stringify(broker.stats)}\n`);
    process.exit(0);
  });
}
