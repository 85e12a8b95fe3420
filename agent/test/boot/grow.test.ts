import { describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { integrityGrowth, overlayWipeRange } from "../../src/boot/delta.ts";
import { runText } from "../../src/command.ts";
import { ext4SizeBytes } from "../../src/disk/image/ext4.ts";
import { parseIntegrityStatus, wipeIntegrityRange } from "../../src/disk/luks.ts";

describe("growing an integrity delta", () => {
  test("dmsetup status of the _dif mapping: table length and the kernel's provided sectors", () => {
    // The sizes of vm-test's delta before and after its LV grew by 512 MiB (kernel 6.1).
    expect(parseIntegrityStatus("0 1346480 integrity 0 2387120 -\n")).toEqual({
      mappedSectors: 1346480,
      providedSectors: 2387120,
    });
    // While recalculating, the last field is a sector number instead of "-".
    expect(parseIntegrityStatus("0 2048 integrity 3 4096 1024").providedSectors).toBe(4096);
    expect(() => parseIntegrityStatus("0 2048 crypt aes-xts-plain64 :64:logon:x 0 254:3 0")).toThrow(
      /unexpected dm-integrity status/,
    );
    expect(() => parseIntegrityStatus("")).toThrow(/unexpected dm-integrity status/);
  });

  test("grow only when the kernel provides more than the table maps", () => {
    expect(integrityGrowth({ mappedSectors: 1000, providedSectors: 1000 })).toBeUndefined();
    expect(integrityGrowth({ mappedSectors: 1000, providedSectors: 900 })).toBeUndefined();
    expect(integrityGrowth({ mappedSectors: 1000, providedSectors: 3000 })).toEqual({
      fromSectors: 1000,
      toSectors: 3000,
    });
  });

  test("the overlay wipe covers exactly the device beyond the filesystem", () => {
    expect(overlayWipeRange(4096 * 100, 4096 * 100)).toBeUndefined();
    expect(overlayWipeRange(4096 * 100, 4096 * 50)).toBeUndefined();
    expect(overlayWipeRange(4096 * 100, 4096 * 160)).toEqual({ start: 4096 * 100, end: 4096 * 160 });
  });
});

describe("ext4 size from its superblock, against dumpe2fs on real mkfs.ext4 images", () => {
  const cases: [string, string[]][] = [
    ["4 KiB blocks, 64bit", ["-b", "4096", "-O", "64bit"]],
    ["4 KiB blocks, no 64bit", ["-b", "4096", "-O", "^64bit"]],
    ["1 KiB blocks", ["-b", "1024"]],
  ];
  for (const [name, opts] of cases) {
    test(name, async () => {
      const dir = await mkdtemp(join(tmpdir(), "ext4size-"));
      try {
        const img = join(dir, "fs.img");
        await writeFile(img, new Uint8Array(0));
        await runText("truncate", ["-s", "48M", img]);
        // A filesystem smaller than its device, as before a grow.
        await runText("mkfs.ext4", ["-q", "-F", ...opts, img, name.startsWith("1") ? "30000" : "7000"]);
        const dump = await runText("dumpe2fs", ["-h", img]);
        const blocks = Number(/^Block count:\s+(\d+)/m.exec(dump)?.[1]);
        const blockSize = Number(/^Block size:\s+(\d+)/m.exec(dump)?.[1]);
        const head = new Uint8Array(await readFile(img)).subarray(0, 2048);
        expect(ext4SizeBytes(head.subarray(1024))).toBe(blocks * blockSize);
        expect(blocks * blockSize).toBeLessThan(48 * 2 ** 20);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }

  test("not ext4: undefined", () => {
    expect(ext4SizeBytes(new Uint8Array(1024))).toBeUndefined();
    expect(ext4SizeBytes(new Uint8Array(100))).toBeUndefined();
  });
});

describe("wipeIntegrityRange", () => {
  test("zeroes [start, end) and nothing else, across several write chunks", async () => {
    const dir = await mkdtemp(join(tmpdir(), "wipe-"));
    try {
      const file = join(dir, "dev");
      const size = 10 * 2 ** 20 + 8192;
      await writeFile(file, new Uint8Array(size).fill(0xa5));
      const start = 12288;
      const end = size - 4096;
      await wipeIntegrityRange(file, start, end);
      const after = new Uint8Array(await readFile(file));
      expect(after.length).toBe(size);
      expect(after.subarray(0, start).every((b) => b === 0xa5)).toBe(true);
      expect(after.subarray(start, end).every((b) => b === 0)).toBe(true);
      expect(after.subarray(end).every((b) => b === 0xa5)).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
