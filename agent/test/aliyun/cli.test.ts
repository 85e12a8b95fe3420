/**
 * The compiled binary (dist/cryptpilot-fde) fetching both volume keys from the test servers:
 * rootfs through oidc, delta from the KMS instance with a client key, via `config check` and
 * `fetch-key`, plus the one-paragraph failures when the KMS instance is down or answers an error.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { aliyunTables } from "../../../vm-test/aliyun/config.ts";
import { OIDC_PROVIDER_ARN, ROLE_ARN, testMaterial, useWorld } from "./world.ts";

const ROOT = resolve(import.meta.dir, "../../..");
const BINARY = join(ROOT, "dist/cryptpilot-fde");
const env = useWorld();

/** A config dir whose delta key is the KMS secret `deltaSecret`. */
async function configDir(name: string, deltaSecret: string): Promise<string> {
  const dir = join(env.dir, name);
  mkdirSync(dir);
  const tables = aliyunTables(env.world, testMaterial());
  writeFileSync(
    join(dir, "fde.toml"),
    [
      "[rootfs]",
      tables.oidc("rootfs", "oidc-key", await env.issuer.token(), {
        provider: OIDC_PROVIDER_ARN,
        role: ROLE_ARN,
      }),
      "[delta]",
      tables.kms("delta", deltaSecret),
    ].join("\n"),
  );
  return dir;
}

let dir: string;
let missing: string;
beforeAll(async () => {
  const build = Bun.spawnSync(["make", "-s", "--no-print-directory", "build"], { cwd: ROOT });
  if (build.exitCode !== 0) throw new Error(`make build failed:\n${build.stderr.toString()}`);
  dir = await configDir("ok", "disk-key");
  missing = await configDir("missing", "no-such-secret");
}, 120_000);

async function cli(configDir: string, ...args: string[]) {
  const proc = Bun.spawn([BINARY, "-c", configDir, ...args], {
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).bytes(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout: new TextDecoder().decode(stdout), stderr };
}

describe("compiled binary with kms and oidc providers", () => {
  test("config check fetches both keys", async () => {
    const r = await cli(dir, "config", "check");
    expect(r.stdout).toContain('rootfs: key fetched from oidc secret "oidc-key"');
    expect(r.stdout).toContain('delta: key fetched from kms secret "disk-key" via client key');
    expect(r.code).toBe(0);
  });

  test("fetch-key yields the passphrases (raw for oidc, base64-decoded for kms)", async () => {
    expect((await cli(dir, "fetch-key", "--volume", "rootfs")).stdout).toBe("delta passphrase");
    expect((await cli(dir, "fetch-key", "--volume", "delta")).stdout).toBe("rootfs passphrase");
  });

  test("KMS instance down: one paragraph naming the endpoint, no stack trace, exit 1", async () => {
    env.world.setFault("instance", { mode: "down" });
    try {
      const r = await cli(dir, "fetch-key", "--volume", "delta");
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        /kms key provider: cannot read secret "disk-key" for volume delta: GetSecretValue at https:\/\/127\.0\.0\.1:\d+\/: cannot connect .*\(gave up after 5 attempts\)/,
      );
      expect(r.stderr).not.toMatch(/^\s+at /m);
      expect(r.stderr).not.toContain(testMaterial().clientKey.password);
    } finally {
      env.world.setFault("instance", undefined);
    }
  }, 30_000);

  // What the boot prints when the KMS answers an error: the same provider paragraph (the initrd
  // service prefixes the failed step), at once, since a refusal is not worth retrying.
  const kmsError = (r: { code: number; stderr: string }, pattern: RegExp) => {
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(pattern);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(r.stderr).not.toContain(testMaterial().clientKey.password);
  };

  test("KMS answers that the secret does not exist: named, not retried, exit 1", async () => {
    const before = env.world.requests.length;
    const r = await cli(missing, "fetch-key", "--volume", "delta");
    kmsError(
      r,
      /kms key provider: cannot read secret "no-such-secret" for volume delta: GetSecretValue at https:\/\/127\.0\.0\.1:\d+\/: HTTP 404 Forbidden\.KeyNotFound: The specified secret no-such-secret is not found/,
    );
    expect(env.world.requests.length).toBe(before + 1);
    // config check reports the same failure for that volume and exits non-zero.
    const check = await cli(missing, "config", "check");
    expect(check.code).not.toBe(0);
    expect(`${check.stdout}${check.stderr}`).toContain("Forbidden.KeyNotFound");
  });

  test("KMS rejects the request signature: code, hint, not retried, exit 1", async () => {
    env.world.setFault("instance", { mode: "bad-signature" });
    try {
      const before = env.world.requests.length;
      const r = await cli(dir, "fetch-key", "--volume", "delta");
      kmsError(r, /GetSecretValue at https:\/\/127\.0\.0\.1:\d+\/: HTTP 401 SignatureNotMatch/);
      expect(r.stderr).toContain("signature was rejected");
      expect(env.world.requests.length).toBe(before + 1);
    } finally {
      env.world.setFault("instance", undefined);
    }
  });
});
