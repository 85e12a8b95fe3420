#!/usr/bin/env -S node_modules/.bin/bun
/**
 * Runs the Alibaba Cloud test servers for a VM scenario or by hand, with fresh credentials:
 *
 *   bun vm-test/aliyun/serve.ts --out DIR [--guest-host 10.0.2.2]
 *
 * Writes DIR/fde.toml (rootfs key through oidc, delta key from the KMS instance with a client
 * key, URLs using --guest-host), DIR/rootfs.key and DIR/delta.key (the passphrases the providers
 * will yield, for `convert --rootfs-key-file` and checks), then prints one line
 * `READY {"instance":port,...}` and serves until SIGTERM/SIGINT.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { aliyunTables } from "./config.ts";
import { makeIssuer } from "./issuer.ts";
import { makeMaterial } from "./material.ts";
import { AliyunWorld } from "./servers.ts";

const { values } = parseArgs({
  options: { out: { type: "string" }, "guest-host": { type: "string", default: "10.0.2.2" } },
});
if (!values.out) {
  console.error("usage: serve.ts --out DIR [--guest-host 10.0.2.2]");
  process.exit(2);
}
const out = values.out;
mkdirSync(out, { recursive: true });

const PROVIDER = "acs:ram::1234567890:oidc-provider/VmTestIdp";
const ROLE = "acs:ram::1234567890:role/vm-test-boot";
const ISSUER = "https://oidc.vm-test.example";
const AUDIENCE = "cryptpilot-fde-vm-test";

const material = makeMaterial();
const issuer = await makeIssuer(ISSUER, AUDIENCE);
// Valid for a day: the token is baked into the guest's fde.toml before it boots.
const token = await issuer.token({ exp: Math.floor(Date.now() / 1000) + 86_400, sub: "vm-test-guest" });

// Printable passphrases: the oidc secret is used as-is, the kms one is stored base64-encoded.
const rootfsKey = randomBytes(24).toString("hex");
const deltaKey = randomBytes(24).toString("hex");
const world = await AliyunWorld.start({
  material,
  secrets: { "vm-rootfs": rootfsKey, "vm-delta": Buffer.from(deltaKey).toString("base64") },
  oidcProvider: { arn: PROVIDER, issuer: ISSUER, clientIds: [AUDIENCE], jwks: [issuer.jwk] },
  roles: { [ROLE]: PROVIDER },
  ecsRoles: ["VmTestRole"],
});
const tables = aliyunTables(world, material, values["guest-host"]);
writeFileSync(
  join(out, "fde.toml"),
  [
    "[rootfs]",
    'delta_location = "disk"',
    "",
    tables.oidc("rootfs", "vm-rootfs", token, { provider: PROVIDER, role: ROLE }),
    "[delta]",
    "integrity = false",
    "",
    tables.kms("delta", "vm-delta"),
  ].join("\n"),
);
writeFileSync(join(out, "rootfs.key"), rootfsKey);
writeFileSync(join(out, "delta.key"), deltaKey);

const ports = Object.fromEntries(
  (["instance", "sts", "kms", "imds"] as const).map((s) => [s, world.port(s)]),
);
console.log(`READY ${JSON.stringify(ports)}`);
const stop = () => {
  world.stop();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
