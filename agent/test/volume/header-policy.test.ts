/**
 * `volume open` checks the LUKS2 header before anything else (issue #14): a header the host
 * replaced (a cipher_null keyslot that opens with any key) or one without the integrity the
 * volume file asks for is refused naming the device and the field, before the key is fetched,
 * and the volume is left exactly as it was (never reformatted). Through the real CLI on file
 * images (no device-mapper here: a good header would fail later, at dm).
 */
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { readSubsystem, SUBSYSTEM_READY } from "../../src/disk/luks.ts";
import { nullKeyslotAttack, readJson } from "../../testkit/luks-craft.ts";

const ROOT = resolve(import.meta.dir, "../../..");
const BUN = join(ROOT, "node_modules/.bin/bun");
/** 32 bytes: the fast PBKDF2 keyslot (no benchmarked argon2id on a loaded box). */
const KEY = "0123456789abcdef0123456789abcdef";
const isRoot = process.getuid?.() === 0;

const dir = mkdtempSync(join(tmpdir(), "vol-header-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function cli(args: string[]): Promise<{ code: number; stderr: string }> {
  const proc = Bun.spawn([BUN, join(ROOT, "agent/src/main.ts"), "-c", dir, ...args], {
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
  return { code, stderr };
}

/** A volume file whose key provider records each call, so a test sees whether the key was fetched. */
function volume(name: string, integrity: boolean): { image: string; calls: string } {
  mkdirSync(join(dir, "volumes"), { recursive: true });
  const image = join(dir, `${name}.img`);
  const calls = join(dir, `${name}.calls`);
  writeFileSync(image, "");
  Bun.spawnSync(["truncate", "-s", "40M", image]);
  writeFileSync(
    join(dir, "volumes", `${name}.toml`),
    `volume = "${name}"\ndev = "${image}"\nintegrity = ${integrity}\n[encrypt.exec]\ncommand = "sh"\nargs = ["-c", "echo x >> ${calls}; printf %s ${KEY}"]\n`,
  );
  return { image, calls };
}

const calls = (file: string) => {
  try {
    return readFileSync(file, "utf8").split("\n").filter(Boolean).length;
  } catch {
    return 0;
  }
};

test.skipIf(!isRoot)(
  "volume open refuses a replaced header (cipher_null keyslot) before fetching the key, and leaves it untouched",
  async () => {
    const v = volume("data", false);
    const init = await cli(["volume", "init", "data"]);
    expect(init.code).toBe(0);
    nullKeyslotAttack(v.image);
    const before = readFileSync(v.image);
    const fetched = calls(v.calls);
    const open = await cli(["volume", "open", "data"]);
    expect(open.code).toBe(1);
    expect(open.stderr).toContain(`${v.image}: LUKS2 keyslot 0 uses cipher "cipher_null-ecb"`);
    expect(open.stderr).toContain("never reformatted");
    expect(open.stderr).not.toContain("    at "); // no stack trace
    expect(calls(v.calls)).toBe(fetched);
    expect(readFileSync(v.image).equals(before)).toBe(true);
    expect(await readSubsystem(v.image)).toBe(SUBSYSTEM_READY);
  },
  120_000,
);

test.skipIf(!isRoot)(
  "volume open refuses a header without the integrity the volume file asks for",
  async () => {
    const v = volume("plain", false);
    expect((await cli(["volume", "init", "plain"])).code).toBe(0);
    // The configuration now says integrity = true; the header on the disk has none.
    writeFileSync(
      join(dir, "volumes", "plain.toml"),
      readFileSync(join(dir, "volumes", "plain.toml"), "utf8").replace(
        "integrity = false",
        "integrity = true",
      ),
    );
    const open = await cli(["volume", "open", "plain"]);
    expect(open.code).toBe(1);
    expect(open.stderr).toContain(
      `${v.image}: LUKS2 segment 0 has no integrity, but the configuration asks for hmac(sha256)`,
    );
    expect(readJson(v.image).segments["0"].integrity).toBeUndefined();
  },
  120_000,
);
