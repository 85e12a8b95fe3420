/** Config files out of initrd images made the way dracut makes them, with the real cpio tool. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readInitrdConfig } from "../../src/config/initrd.ts";
import { ConfigError } from "../../src/errors.ts";

const FDE = '[rootfs]\n[delta.encrypt.exec]\ncommand = "printf"\nargs = ["k"]\n';
const GLOBAL = "[boot]\nverbose = true\n";
const METADATA = `type = 1\nroot_hash = "${"ab".repeat(32)}"\n`;

let dir: string;
let early: Uint8Array;
let main: Uint8Array;

function sh(script: string, cwd: string): Uint8Array {
  const r = Bun.spawnSync(["sh", "-c", script], { cwd, stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${script}: ${r.stderr}`);
  return r.stdout;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "initrd-"));
  mkdirSync(join(dir, "early/kernel/x86/microcode"), { recursive: true });
  writeFileSync(
    join(dir, "early/kernel/x86/microcode/GenuineIntel.bin"),
    crypto.getRandomValues(new Uint8Array(3001)),
  );
  const root = join(dir, "main");
  mkdirSync(join(root, "etc/cryptpilot"), { recursive: true });
  mkdirSync(join(root, "usr/lib"), { recursive: true });
  // 12 MiB, random and repetitive parts, so lz4 spans blocks and uses long matches.
  const big = new Uint8Array(12 << 20);
  for (let i = 0; i < big.length; i += 65536) big.set(crypto.getRandomValues(new Uint8Array(4096)), i);
  big.fill(0x41, 5 << 20, 7 << 20);
  writeFileSync(join(root, "usr/lib/big.bin"), big);
  writeFileSync(join(root, "etc/cryptpilot/fde.toml"), FDE);
  writeFileSync(join(root, "etc/cryptpilot/global.toml"), GLOBAL);
  writeFileSync(join(root, "etc/cryptpilot/metadata.toml"), METADATA);
  symlinkSync("/nonexistent", join(root, "etc/cryptpilot/volumes.toml"));
  early = sh("find . | sort | cpio -o -H newc --quiet", join(dir, "early"));
  // Reverse order puts the config files after the big file: they decode right only if it did.
  main = sh("find . | sort -r | cpio -o -H newc --quiet", root);
  writeFileSync(join(dir, "main.cpio"), main);
}, 60_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const image = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

describe("readInitrdConfig", () => {
  const compressors: [string, string][] = [
    ["uncompressed", "cat main.cpio"],
    ["gzip", "gzip -c main.cpio"],
    ["zstd", "zstd -q -c main.cpio"],
    ["lz4 -l (legacy frames, as dracut and the kernel use)", "lz4 -l -q -c main.cpio"],
  ];
  for (const [name, command] of compressors) {
    test(`early microcode cpio + ${name} main cpio`, async () => {
      const compressed = sh(command, dir);
      const files = await readInitrdConfig(image(early, compressed), "initrd.img");
      expect(files).toEqual({ "fde.toml": FDE, "global.toml": GLOBAL, "metadata.toml": METADATA });
    }, 30_000);
  }

  test("an initrd without /etc/cryptpilot gives no files", async () => {
    expect(await readInitrdConfig(early, "initrd.img")).toEqual({});
  });

  test.skipIf(!Bun.which("xz"))(
    "xz is named, with a hint to rebuild with a supported compressor",
    async () => {
      const err = await readInitrdConfig(
        image(early, sh("xz -c --check=crc32 main.cpio", dir)),
        "initrd.img",
      ).catch((e: Error) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).message).toContain("initrd.img: the initrd is xz-compressed");
    },
  );

  test("not an initrd, and a truncated archive, are clear errors", async () => {
    const notInitrd = await readInitrdConfig(new TextEncoder().encode("hello"), "x.img").catch(
      (e: Error) => e,
    );
    expect((notInitrd as Error).message).toBe(
      "x.img is not an initrd (no cpio archive or known compression at the start)",
    );
    const truncated = await readInitrdConfig(
      readFileSync(join(dir, "main.cpio")).subarray(0, 5000),
      "t.img",
    ).catch((e: Error) => e);
    expect(truncated).toBeInstanceOf(ConfigError);
    expect((truncated as Error).message).toContain("t.img: damaged cpio archive");
  });
});
