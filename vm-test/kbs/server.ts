#!/usr/bin/env bun
/**
 * Test key broker as a command, for VM scenarios and `make demo`:
 *
 *   bun vm-test/kbs/server.ts --port 8080 --resource default/key/rootfs=@rootfs.key \
 *       [--resource default/key/delta=text] [--policy allow-all|deny-all|policy.json] \
 *       [--allow-tee sample,tdx,snp] [--tls-dir DIR] [--start-delay SECS] [--session-ttl SECS] \
 *       [--fail-5xx N] [--slow MS]
 *
 * Prints "listening on <url>" once it accepts connections (after --start-delay). With --tls-dir
 * it serves HTTPS with the CA and server certificate in DIR, made on first use (DIR/ca.pem is
 * what kbs_root_cert pins). Listens on 127.0.0.1.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { ALLOW_ALL, DENY_ALL, type Policy, startBroker } from "./broker.ts";
import { loadOrMakePki } from "./tls.ts";

function fail(message: string): never {
  process.stderr.write(`kbs server: ${message}\n`);
  process.exit(2);
}

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "8080" },
    resource: { type: "string", multiple: true, default: [] },
    policy: { type: "string", default: "allow-all" },
    "allow-tee": { type: "string" },
    "tls-dir": { type: "string" },
    "start-delay": { type: "string", default: "0" },
    "session-ttl": { type: "string" },
    "fail-5xx": { type: "string", default: "0" },
    slow: { type: "string", default: "0" },
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

// The CA exists before the (delayed) start, so a guest config can pin it while the broker is down.
const pki = values["tls-dir"] ? loadOrMakePki(values["tls-dir"]) : undefined;
if (pki) process.stdout.write(`CA: ${pki.caPath}\n`);
const delay = Number(values["start-delay"]);
if (delay > 0) {
  process.stdout.write(`down for ${delay} s\n`);
  await Bun.sleep(delay * 1000);
}
const broker = await startBroker({
  port: Number(values.port),
  resources,
  policy,
  allowTees: values["allow-tee"]?.split(","),
  sessionTtlMs: values["session-ttl"] ? Number(values["session-ttl"]) * 1000 : undefined,
  tls: pki ? { cert: pki.certPem, key: pki.keyPem } : undefined,
  faults: { fail5xx: Number(values["fail-5xx"]), slowMs: Number(values.slow) },
});
process.stdout.write(`listening on ${broker.url}${pki ? ` (CA: ${pki.caPath})` : ""}\n`);
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, async () => {
    await broker.stop();
    process.stdout.write(`stats ${JSON.stringify(broker.stats)}\n`);
    process.exit(0);
  });
}
