/**
 * The key slot KDF that luks.encryptOffline gives a real LUKS2 header (cryptsetup on a file, no
 * device-mapper): a key of 32 bytes gets pbkdf2 with 1000 iterations. (The passphrase case,
 * argon2id, is checked on the converted image in agent/test/convert.)
 */
import { afterAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encryptOffline } from "../../src/disk/luks.ts";

const MiB = 1024 * 1024;
const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn("luks-kdf test skipped: cryptsetup needs root (its lock directory)");
const dir = mkdtempSync(join(tmpdir(), "luks-kdf-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!isRoot)("luks", () =>
  test("encryptOffline with a 32-byte key: pbkdf2, 1000 iterations, opens with that key", async () => {
    const file = join(dir, "fs.img");
    writeFileSync(file, "");
    truncateSync(file, 48 * MiB);
    const key = crypto.getRandomValues(new Uint8Array(32));
    const started = Date.now();
    await encryptOffline(file, key, 32 * MiB);
    const dump = execFileSync("cryptsetup", ["luksDump", file]).toString();
    expect(dump).toMatch(/PBKDF:\s+pbkdf2\n/);
    expect(dump).toMatch(/Iterations:\s+1000\n/);
    expect(dump).not.toContain("argon2");
    // The key opens the slot (a check of the key only, no mapping needed).
    execFileSync("cryptsetup", ["open", "--test-passphrase", "--key-file=-", file], { input: key });
    expect(() =>
      execFileSync("cryptsetup", ["open", "--test-passphrase", "--key-file=-", file], {
        input: new Uint8Array(32),
        stdio: ["pipe", "pipe", "pipe"],
      }),
    ).toThrow();
    console.log(`encryptOffline (48 MiB, pbkdf2) took ${Date.now() - started} ms`);
  }, 60_000),
);
