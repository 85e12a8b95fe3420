#!/usr/bin/env -S node_modules/.bin/bun
/**
 * Runs the Alibaba Cloud test servers for a VM scenario or by hand, with fresh credentials:
 *
 *   bun vm-test/aliyun/serve.ts --out DIR [--guest-host 10.0.2.2] [--user-data FILE]
 *
 * Writes DIR/fde.toml (rootfs key through oidc, delta key from the KMS instance with a client
 * key, URLs using --guest-host), DIR/rootfs.key and DIR/delta.key (the passphrases the providers
 * will yield, for `convert --rootfs-key-file` and checks), then prints one line
 * `READY {"instance":port,...}` and serves until SIGTERM/SIGINT. With --user-data, IMDS serves
 * FILE's bytes at GET /latest/user-data (IMDSv2 token as ECS; 404 without the option).
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startGuestWorld } from "./guest.ts";

const { values } = parseArgs({
  options: {
    out: { type: "string" },
    "guest-host": { type: "string", default: "10.0.2.2" },
    "user-data": { type: "string" },
  },
});
if (!values.out) {
  console.error("usage: serve.ts --out DIR [--guest-host 10.0.2.2] [--user-data FILE]");
  process.exit(2);
}
const out = values.out;
mkdirSync(out, { recursive: true });

// Valid for a day: the token is baked into the guest's fde.toml before it boots.
const { world, fde, rootfsKey, deltaKey } = await startGuestWorld(values["guest-host"], 86_400);
if (values["user-data"] !== undefined) world.setUserData(readFileSync(values["user-data"], "utf8"));
writeFileSync(join(out, "fde.toml"), fde);
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
