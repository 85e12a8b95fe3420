/**
 * The compiled binary (dist/cryptpilot-fde) fetching both volume keys from the test servers:
 * rootfs through oidc, delta from the KMS instance with a client key, via `config check` and
 * `fetch-key`, plus the one-paragraph failure when the KMS instance is down.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { aliyunTables } from "../../../vm-test/aliyun/config.ts";
import type { AliyunWorld } from "../../../vm-test/aliyun/servers.ts";
import { type Issuer, makeIssuer, OIDC_PROVIDER_ARN, ROLE_ARN, startWorld, testMaterial } from "./world.ts";

const ROOT = resolve(import.meta.dir, "../../..");
const BINARY = join(ROOT, "dist/cryptpilot-fde");
let issuer: Issuer;
let world: AliyunWorld;
let dir: string;

beforeAll(async () => {
  const build = Bun.spawnSync(["make", "-s", "--no-print-directory", "build"], { cwd: ROOT });
  if (build.exitCode !== 0) throw new Error(`make build failed:\n${build.stderr.toString()}`);
  issuer = await makeIssuer();
  world = await startWorld(issuer);
  dir = mkdtempSync(join(tmpdir(), "aliyun-cli-"));
  const tables = aliyunTables(world, testMaterial());
  writeFileSync(
    join(dir, "fde.toml"),
    [
      "[rootfs]",
      tables.oidc("rootfs", "oidc-key", await issuer.token(), {
        provider: OIDC_PROVIDER_ARN,
        role: ROLE_ARN,
      }),
      "[delta]",
      tables.kms("delta", "disk-key"),
    ].join("\n"),
  );
}, 120_000);
afterAll(() => {
  world?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function cli(...args: string[]) {
  const proc = Bun.spawn([BINARY, "-c", dir, ...args], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).bytes(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout: new TextDecoder().decode(stdout), stderr };
}

describe("compiled binary with kms and oidc providers", () => {
  test("config check fetches both keys", async () => {
    const r = await cli("config", "check");
    expect(r.stdout).toContain('rootfs: key fetched from oidc secret "oidc-key"');
    expect(r.stdout).toContain('delta: key fetched from kms secret "disk-key" via client key');
    expect(r.code).toBe(0);
  });

  test("fetch-key yields the passphrases (raw for oidc, base64-decoded for kms)", async () => {
    expect((await cli("fetch-key", "--volume", "rootfs")).stdout).toBe("delta passphrase");
    expect((await cli("fetch-key", "--volume", "delta")).stdout).toBe("rootfs passphrase");
  });

  test("KMS instance down: one paragraph naming the endpoint, no stack trace, exit 1", async () => {
    world.setFault("instance", { mode: "down" });
    try {
      const r = await cli("fetch-key", "--volume", "delta");
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        /kms key provider: cannot read secret "disk-key" for volume delta: GetSecretValue at https:\/\/127\.0\.0\.1:\d+\/: cannot connect .*\(gave up after 5 attempts\)/,
      );
      expect(r.stderr).not.toMatch(/^\s+at /m);
      expect(r.stderr).not.toContain(testMaterial().clientKey.password);
    } finally {
      world.setFault("instance", undefined);
    }
  }, 30_000);
});
