/**
 * Opening with the token's keyslot: a volume whose keyslot 0 is an argon2id recovery passphrase
 * and keyslot 1 the tpm2-sealed key. The tpm2 provider reports keyslot 1 from its token, and
 * luks.open passes it as --key-slot (the key itself only on stdin); a provider without a token
 * (exec) reports none and cryptsetup tries every keyslot. The argv is checked twice: recorded by a
 * stand-in cryptsetup (open needs device-mapper, which this host lacks) and accepted by the real
 * cryptsetup with --test-passphrase added.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as luks from "../../src/disk/luks.ts";
import { create as createExec } from "../../src/providers/exec.ts";
import type { KeyProvider } from "../../src/providers/provider.ts";
import { create as createTpm2 } from "../../src/providers/tpm2.ts";
import { hasSwtpm } from "../../testkit/swtpm.ts";
import { swtpmForSuite } from "../../testkit/swtpm-suite.ts";

const enabled = hasSwtpm && Bun.which("cryptsetup") !== null;
if (!enabled) console.warn("skipping keyslot tests: swtpm, tpm2-tools or cryptsetup not installed");

const MAIN = join(import.meta.dir, "../../src/main.ts");
const VOLUME_KEY = "keyslot-test-volume-key-81d3e0";
const RECOVERY = "recovery passphrase in keyslot 0";

function sh(args: string[], stdin?: string, env?: Record<string, string>) {
  const r = Bun.spawnSync(args, {
    stdin: stdin === undefined ? "ignore" : Buffer.from(stdin),
    env: env && { ...process.env, ...env },
  });
  return { code: r.exitCode, out: r.stdout.toString() + r.stderr.toString() };
}

test("openArgs: --key-slot only when a keyslot is given, the key always from stdin", () => {
  expect(luks.openArgs("/dev/x", "n")).toEqual([
    "open",
    "--type",
    "luks2",
    "--disable-external-tokens",
    "--key-file=-",
    "/dev/x",
    "n",
  ]);
  expect(luks.openArgs("/dev/x", "n", 3)).toEqual([
    "open",
    "--type",
    "luks2",
    "--disable-external-tokens",
    "--key-slot",
    "3",
    "--key-file=-",
    "/dev/x",
    "n",
  ]);
  expect(luks.openArgs("/dev/x", "n", 0)).toContain("--key-slot");
});

describe.skipIf(!enabled)("open with the keyslot the tpm2 token records", () => {
  const suite = swtpmForSuite("tpm2-keyslot-");
  let image: string;
  let shimDir: string;

  beforeAll(async () => {
    image = join(suite.dir, "volume.img");
    sh(["truncate", "-s", "20M", image]);
    // Keyslot 0: the recovery passphrase with argon2id (cheap parameters: only the order matters).
    const argon = ["--pbkdf", "argon2id", "--pbkdf-force-iterations", "4", "--pbkdf-memory", "32768"];
    const f = sh(
      ["cryptsetup", "luksFormat", "--type", "luks2", "--batch-mode", ...argon, "--key-file", "-", image],
      RECOVERY,
    );
    if (f.code !== 0) throw new Error(f.out);
    writeFileSync(join(suite.dir, "recovery"), RECOVERY);
    const fast = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];
    const a = sh(
      ["cryptsetup", "luksAddKey", ...fast, "--key-file", join(suite.dir, "recovery"), image],
      VOLUME_KEY,
    );
    if (a.code !== 0) throw new Error(a.out);
    const e = sh(
      [
        process.execPath,
        MAIN,
        "-c",
        "/nonexistent",
        "tpm2",
        "enroll",
        "--volume",
        "rootfs",
        "--device",
        image,
      ],
      VOLUME_KEY,
      { TPM2TOOLS_TCTI: suite.tpm.tcti },
    );
    if (e.code !== 0) throw new Error(`enroll failed: ${e.out}`);
    // A stand-in cryptsetup that records its argv and stdin.
    shimDir = join(suite.dir, "bin");
    mkdirSync(shimDir);
    const shim = join(shimDir, "cryptsetup");
    writeFileSync(shim, `#!/bin/sh\nprintf '%s\\n' "$@" > ${suite.dir}/argv\ncat > ${suite.dir}/stdin\n`);
    chmodSync(shim, 0o755);
  });

  /**
   * luks.open run in a child whose PATH finds the stand-in first (Bun resolves commands with the
   * PATH it started with), the key on its stdin as the boot code has it.
   */
  async function recordedOpen(provider: KeyProvider) {
    const key = await provider.getKey();
    const slot = provider.keySlot?.();
    const code = `import { open } from ${JSON.stringify(join(import.meta.dir, "../../src/disk/luks.ts"))};
      const key = new Uint8Array(await Bun.stdin.arrayBuffer());
      await open(process.argv[1], "vol", key, process.argv[2] === "" ? undefined : Number(process.argv[2]));`;
    const r = Bun.spawnSync([process.execPath, "-e", code, image, slot === undefined ? "" : String(slot)], {
      stdin: key,
      env: { ...process.env, PATH: `${shimDir}:${process.env.PATH}` },
    });
    if (r.exitCode !== 0) throw new Error(r.stderr.toString());
    const argv = readFileSync(join(suite.dir, "argv"), "utf8").trim().split("\n");
    return { key, argv, stdin: readFileSync(join(suite.dir, "stdin")) };
  }

  test("tpm2: the token's keyslot 1 becomes --key-slot 1; the key is only on stdin", async () => {
    const tpm2 = createTpm2(
      { type: "tpm2", pcrs: [7], pcrBank: "sha256", tcti: suite.tpm.tcti },
      { volume: "rootfs", configDir: suite.dir, device: image, freshKey: "never" },
    );
    const { key, argv, stdin } = await recordedOpen(tpm2);
    expect(tpm2.keySlot?.()).toBe(1);
    expect(argv).toEqual(luks.openArgs(image, "vol", 1));
    expect(stdin.equals(Buffer.from(VOLUME_KEY))).toBe(true);
    expect(argv.join(" ")).not.toContain(VOLUME_KEY);
    expect(Buffer.from(key).toString()).toBe(VOLUME_KEY);

    // The real cryptsetup takes the same argv (--test-passphrase: no device-mapper needed) and
    // opens keyslot 1 only; keyslot 0 does not take this key.
    const real = (slot: number) =>
      sh(["cryptsetup", ...luks.openArgs(image, "vol", slot), "--test-passphrase", "--verbose"], VOLUME_KEY);
    const one = real(1);
    expect(one.code).toBe(0);
    expect(one.out).toContain("Key slot 1 unlocked");
    expect(real(0).code).toBe(2);
  });

  test("exec (no token): no --key-slot, cryptsetup tries every keyslot", async () => {
    const exec = createExec(
      { type: "exec", command: "printf", args: [VOLUME_KEY], timeoutMs: 5000 },
      { volume: "rootfs", configDir: suite.dir, device: image, freshKey: "never" },
    );
    expect(exec.keySlot).toBeUndefined();
    const { argv, stdin } = await recordedOpen(exec);
    expect(argv).toEqual(luks.openArgs(image, "vol"));
    expect(argv).not.toContain("--key-slot");
    expect(stdin.equals(Buffer.from(VOLUME_KEY))).toBe(true);
  });
});
