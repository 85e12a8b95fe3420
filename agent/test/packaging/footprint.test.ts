/**
 * The /boot footprint check of convert (agent/src/convert/footprint.ts): sizes it refuses really
 * do not fit (checked with mkfs.ext4 -d, as convert formats /boot), the default fits, and convert
 * with a too-small --boot_part_size stops with the sizes before it writes the output.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_BOOT_PART_SIZE } from "../../src/cli/convert.ts";
import { checkBootFits, ext4Overhead, minBootPartSize, stagedBytes } from "../../src/convert/footprint.ts";
import { convert } from "../../src/convert/index.ts";
import { MiB, sizeBytes } from "../../src/convert/layout.ts";
import { FdeError, UsageError } from "../../src/errors.ts";
import { tempDir } from "../../testkit/sh.ts";
import { buildSourceImage, standInAgent } from "../convert/fixture.ts";

const work = tempDir("footprint");
afterAll(() => rmSync(work, { recursive: true, force: true }));
const hasMkfs = Bun.which("mkfs.ext4") !== null;
const isRoot = process.getuid?.() === 0;
if (!hasMkfs) console.warn("skipping the mkfs.ext4 footprint checks: e2fsprogs not installed");

/** A /boot staging directory: a kernel and an initrd of the given MB, and a GRUB directory. */
function staging(name: string, kernelMb: number, initrdMb: number): string {
  const dir = join(work, name);
  mkdirSync(join(dir, "grub"), { recursive: true });
  writeFileSync(join(dir, "vmlinuz-6.1.0-test"), Buffer.alloc(kernelMb * 1e6, 1));
  writeFileSync(join(dir, "initrd.img-6.1.0-test"), Buffer.alloc(initrdMb * 1e6, 2));
  for (let i = 0; i < 50; i++) writeFileSync(join(dir, "grub", `mod${i}.mod`), "m".repeat(i * 211));
  return dir;
}

const mkfs = (dir: string, sizeMiB: number) =>
  Bun.spawnSync(
    ["mkfs.ext4", "-q", "-F", "-b", "4096", "-d", dir, join(work, "boot.img"), `${sizeMiB * 1024}k`],
    { stderr: "pipe" },
  ).exitCode;

describe("the /boot footprint", () => {
  test("staged bytes: files in whole 4 KiB blocks, one block per directory", async () => {
    const dir = join(work, "small");
    mkdirSync(join(dir, "sub"), { recursive: true });
    writeFileSync(join(dir, "a"), "x");
    writeFileSync(join(dir, "sub", "b"), Buffer.alloc(4097));
    expect(await stagedBytes(dir)).toBe(4096 + 4096 + 8192);
    expect(ext4Overhead(512 * MiB)).toBe(16 * MiB + 8 * MiB);
  });

  test.skipIf(!hasMkfs)(
    "a size it refuses does not fit; the default 512M takes a Debian kernel and lz4 initrd",
    async () => {
      // One kernel + an lz4 initrd (~70 MB measured), two kernels, and a big zstd-less initrd.
      for (const [name, k, i] of [
        ["one", 8, 70],
        ["two", 16, 150],
        ["none", 8, 136],
      ] as const) {
        const dir = staging(name, k, i);
        const min = minBootPartSize(await stagedBytes(dir)) / MiB;
        expect(`${name} ${min - 1} MiB: mkfs ${mkfs(dir, min - 1)}`).toBe(`${name} ${min - 1} MiB: mkfs 1`);
        await expect(checkBootFits(dir, (min - 1) * MiB)).rejects.toBeInstanceOf(UsageError);
        await checkBootFits(dir, sizeBytes(DEFAULT_BOOT_PART_SIZE)!);
      }
    },
  );

  test("the refusal names the sizes and the option", async () => {
    const dir = staging("msg", 8, 40);
    const err = await checkBootFits(dir, 20 * MiB).catch((e: Error) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(
      /boot partition \(20 MiB\).*they take 46\.\d MiB.*at least \d+ MiB.*--boot_part_size \d+M/,
    );
  });

  test.skipIf(!isRoot)(
    "convert with a too-small --boot_part_size stops before writing the output",
    async () => {
      const source = buildSourceImage(join(work, "src"));
      const cfg = join(work, "cfg");
      mkdirSync(cfg, { recursive: true });
      writeFileSync(
        join(cfg, "fde.toml"),
        '[rootfs]\n[delta]\n[delta.encrypt.exec]\ncommand = "echo"\nargs = ["d"]\n',
      );
      // An executable of this host's architecture: convert checks the agent's against the guest's.
      const agent = standInAgent(work);
      const out = join(work, "out.raw");
      const err = await convert({
        input: source,
        output: out,
        device: false,
        configDir: cfg,
        bootPartSize: 1 * MiB,
        uki: false,
        ukiAppendCmdline: "",
        assets: {
          moduleFiles: { "module-setup.sh": "#!/bin/bash\ncheck() { return 255; }\n" },
          agentBinary: agent,
        },
      }).catch((e: Error) => e);
      // The step runner's one paragraph, with the usage error's exit status (2).
      expect(err).toBeInstanceOf(FdeError);
      expect((err as FdeError).exitCode).toBe(2);
      expect((err as Error).message).toContain(
        "the boot partition (1 MiB) cannot hold the kernels and initrds",
      );
      expect(existsSync(out)).toBe(false);
      expect(existsSync(`${out}.partial`)).toBe(false);
    },
    120_000,
  );
});
