/**
 * Mounting per [mount] and makefs with the real tools, on the host: an ext4 image file (mount sets
 * up the loop device itself) and a swap file stand in for /dev/mapper/<volume>.
 */
import { afterAll, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { probeSignature } from "../../src/disk/blkid.ts";
import { makeFs, mountVolume, parseMountinfo, unmountVolume } from "../../src/volume/fs.ts";

const dir = mkdtempSync(join(tmpdir(), "vol-fs-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const mounted = (path: string) => parseMountinfo(readFileSync("/proc/self/mountinfo", "utf8")).includes(path);

test("ext4: makefs, mount with options (directory created), idempotent, unmount", async () => {
  const image = join(dir, "data.img");
  writeFileSync(image, new Uint8Array(32 * 1024 * 1024));
  await makeFs("ext4", image);
  expect(await probeSignature(image)).toBe("ext4");
  const mountpoint = join(dir, "mnt", "data");
  const mount = { mountpoint, options: "nodev,nosuid" };
  try {
    expect(await mountVolume(image, mount)).toBe(`mounted on ${mountpoint}`);
    expect(mounted(mountpoint)).toBe(true);
    const options = Bun.spawnSync(["findmnt", "-no", "OPTIONS", mountpoint]).stdout.toString();
    expect(options).toContain("nodev");
    expect(options).toContain("nosuid");
    expect(await mountVolume(image, mount)).toBe(`already mounted on ${mountpoint}`);
  } finally {
    await unmountVolume(image, mount);
  }
  expect(mounted(mountpoint)).toBe(false);
  await unmountVolume(image, mount); // not mounted: nothing to do
});

test("swap: mkswap, swapon, idempotent, swapoff", async () => {
  const file = join(dir, "swap.img");
  writeFileSync(file, new Uint8Array(16 * 1024 * 1024));
  chmodSync(file, 0o600);
  await makeFs("swap", file);
  expect(await probeSignature(file)).toBe("swap");
  const mount = { mountpoint: "swap", options: "defaults" };
  const swaps = () => readFileSync("/proc/swaps", "utf8");
  try {
    expect(await mountVolume(file, mount)).toBe("swap on");
    expect(swaps()).toContain(file);
    expect(await mountVolume(file, mount)).toBe("swap already on");
  } finally {
    await unmountVolume(file, mount);
  }
  expect(swaps()).not.toContain(file);
});
