/**
 * convert's ESP and /boot fit (agent/src/convert/footprint.ts): a --device conversion whose layout
 * is larger than the device is refused before the device is written, naming each part's size and
 * the --boot_part_size that fits (which then converts); the ESP --uki creates holds its UKI; and
 * the log names the initrd's compression. /boot alone: agent/test/packaging/footprint.test.ts.
 */
import { afterAll, describe, expect, spyOn, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { initrdCompression } from "../../src/config/initrd.ts";
import {
  bootHolds,
  checkDeviceFits,
  checkEspFits,
  type DeviceFit,
  fatSpace,
  minBootPartSize,
  UKI_ESP_SLACK,
  UPDATE_ROOM,
  ukiEspSize,
} from "../../src/convert/footprint.ts";
import { convert } from "../../src/convert/index.ts";
import { computeLayout, MIN_DELTA_ROOM, MiB } from "../../src/convert/layout.ts";
import { FdeError, UsageError } from "../../src/errors.ts";
import { log } from "../../src/log.ts";
import { tempDir } from "../../testkit/sh.ts";
import { buildSourceImage } from "./fixture.ts";

const work = tempDir("footprint-fit");
afterAll(() => rmSync(work, { recursive: true, force: true }));
const isRoot = process.getuid?.() === 0;
const hasVfat = Bun.which("mkfs.vfat") !== null && Bun.which("mcopy") !== null;

/** A --device fit: ESP 100 MiB, /boot BOOT MiB, PV with a 600 MiB rootfs + hash, on a DEVICE MiB disk. */
function fit(deviceMiB: number, bootMiB: number | undefined, extra: Partial<DeviceFit> = {}): DeviceFit {
  const pvMin = MiB + 600 * MiB + MIN_DELTA_ROOM;
  const deviceBytes = deviceMiB * MiB;
  const layout = computeLayout({
    sourceDiskSize: deviceBytes,
    espSize: 100 * MiB,
    bootSize: bootMiB === undefined ? undefined : bootMiB * MiB,
    pvMin,
  });
  return { device: "/dev/vdb", deviceBytes, layout, pvMin, bootNeeded: 80 * MiB, ...extra };
}
/** convert's configuration directory for the host runs (an exec provider: no network module). */
const cfg = join(work, "cfg");
mkdirSync(cfg, { recursive: true });
writeFileSync(
  join(cfg, "fde.toml"),
  '[rootfs]\n[delta]\n[delta.encrypt.exec]\ncommand = "echo"\nargs = ["d"]\n',
);
// An ELF of this host's architecture (convert checks the agent's), never run by the fake dracut.
const agent = "/bin/true";

const thrown = (f: () => void) => {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a refusal");
};

describe("checkDeviceFits", () => {
  test("a layout that fits the device passes", () => {
    checkDeviceFits(fit(2048, 512));
    checkDeviceFits(fit(1500, undefined, { ukiBytes: 60 * MiB, bootNeeded: undefined }));
  });

  test("GRUB mode, a smaller /boot fits: a usage error with each part's size and the --boot_part_size that fits", () => {
    const f = fit(1500, 512);
    const err = thrown(() => checkDeviceFits(f));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toContain("/dev/vdb (1500 MiB) cannot hold the converted layout, 1727 MiB");
    expect(err.message).toContain("the source's ESP, 100 MiB + /boot 512 MiB (--boot_part_size)");
    expect(err.message).toContain("the LVM PV 1113 MiB (the shrunk rootfs and its hash tree, 600 MiB");
    const size = Number(/--boot_part_size (\d+)M \(the largest that fits/.exec(err.message)?.[1]);
    expect(size).toBe(285);
    expect(err.message).toContain(`at least ${minBootPartSize(80 * MiB) / MiB} MiB`);
    // The size it suggests really fits, and one MiB more does not.
    checkDeviceFits(fit(1500, size));
    expect(() => checkDeviceFits(fit(1500, size + 1))).toThrow(UsageError);
  });

  test("the suggested /boot skips sizes ext4 cannot use (the journal grows from 4 to 16 MiB at 128 MiB)", () => {
    const bootNeeded = 114 * MiB;
    expect(minBootPartSize(bootNeeded)).toBe(126 * MiB);
    expect(bootHolds(130 * MiB, bootNeeded)).toBe(false);
    // The device leaves room for a 130 MiB /boot, which cannot hold 114 MiB; 127 MiB can.
    const f = fit(2 + 100 + 130 + 1113, 512, { bootNeeded });
    const err = thrown(() => checkDeviceFits(f));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toContain("pass --boot_part_size 127M (the largest that fits");
  });

  test("GRUB mode, even the smallest /boot does not fit: the device size it needs, nothing written", () => {
    const err = thrown(() => checkDeviceFits(fit(1200, 512))) as FdeError;
    expect(err).not.toBeInstanceOf(UsageError);
    expect(err.exitCode).toBe(1);
    const min = minBootPartSize(80 * MiB) / MiB;
    expect(err.message).toContain("nothing written to /dev/vdb");
    expect(err.hint).toContain(`--boot_part_size ${min}M) needs a ${2 + 100 + min + 1113} MiB device`);
    expect(err.hint).toContain("--in/--out");
  });

  test("--uki: the ESP sized for the UKI is named, and the device size needed", () => {
    const esp = ukiEspSize(90 * MiB);
    const pvMin = MiB + 600 * MiB + MIN_DELTA_ROOM;
    const layout = computeLayout({ sourceDiskSize: 1000 * MiB, espSize: esp, pvMin });
    const err = thrown(() =>
      checkDeviceFits({ device: "/dev/vdb", deviceBytes: 1000 * MiB, layout, pvMin, ukiBytes: 90 * MiB }),
    ) as FdeError;
    expect(err.message).toContain(`a new ESP of ${esp / MiB} MiB for the 90.0 MiB UKI`);
    expect(err.hint).toContain(`a device of at least ${layout.diskSize / MiB} MiB`);
  });
});

describe("the ESP --uki creates", () => {
  test("the UKI, a quarter more for a newer kernel and the slack; never below the source's ESP", () => {
    expect(ukiEspSize(80 * MiB)).toBe(Math.ceil(80 * UPDATE_ROOM + UKI_ESP_SLACK / MiB) * MiB);
    expect(ukiEspSize(80 * MiB, 512 * MiB)).toBe(512 * MiB);
    expect(ukiEspSize(0)).toBe(UKI_ESP_SLACK);
  });

  test.skipIf(!hasVfat)(
    "mkfs.vfat -F 32 of that size (as buildUkiEsp makes it) holds a UKI 25% larger (a newer kernel's, replacing it)",
    () => {
      for (const ukiMiB of [1, 70]) {
        const img = join(work, `esp-${ukiMiB}.img`);
        rmSync(img, { force: true });
        execFileSync("mkfs.vfat", ["-F", "32", "-C", img, String(ukiEspSize(ukiMiB * MiB) / 1024)], {
          stdio: "pipe",
        });
        const uki = join(work, "uki.efi");
        writeFileSync(uki, Buffer.alloc(Math.ceil(ukiMiB * UPDATE_ROOM * MiB), 7));
        const env = { ...process.env, MTOOLS_SKIP_CHECK: "1" };
        execFileSync("mcopy", ["-i", img, uki, "::/BOOTX64.EFI"], { env, stdio: "pipe" });
      }
    },
  );
});

describe("the initrd's compression, for the log", () => {
  const cpio = (name: string, data: string) => {
    const hex = (n: number) => n.toString(16).padStart(8, "0");
    const nameZ = `${name}\0`;
    const head = `070701${hex(1)}${hex(0o100644)}${hex(0)}${hex(0)}${hex(1)}${hex(0)}${hex(data.length)}${hex(0)}${hex(0)}${hex(0)}${hex(0)}${hex(nameZ.length)}${hex(0)}`;
    const pad = (s: string) => s + "\0".repeat((4 - (s.length % 4)) % 4);
    return pad(pad(head + nameZ) + data);
  };
  const early = cpio("kernel/x86/microcode/GenuineIntel.bin", "ucode") + cpio("TRAILER!!!", "");
  const image = (tail: number[]) => new Uint8Array([...Buffer.from(early, "latin1"), ...tail]);

  test("after the early microcode archive: lz4 -l, zstd, gzip, none, and other formats by name", () => {
    expect(initrdCompression(image([0x02, 0x21, 0x4c, 0x18, 1, 2]), "i")).toBe("lz4");
    expect(initrdCompression(image([0x28, 0xb5, 0x2f, 0xfd, 1]), "i")).toBe("zstd");
    expect(initrdCompression(image([0x1f, 0x8b, 8]), "i")).toBe("gzip");
    expect(initrdCompression(image([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), "i")).toBe("xz");
    expect(initrdCompression(image([]), "i")).toBe("none");
    expect(initrdCompression(image([0x41, 0x42]), "i")).toBe("unknown");
  });
});

describe("GRUB mode: the source's ESP takes the rewritten grub.cfg files", () => {
  test("mtools' cluster size and free space (thousands grouped by spaces)", () => {
    const minfo = "sector size: 512 bytes\ncluster size: 4 sectors\nsectors per fat: 64\n";
    const mdir =
      "EFI          <DIR>\n        1 file                    0 bytes\n                         33 468 416 bytes free\n";
    expect(fatSpace(minfo, mdir)).toEqual({ clusterBytes: 2048, freeBytes: 33468416 });
    expect(() => fatSpace("", mdir)).toThrow(FdeError);
  });

  test("growth counted in whole clusters against the free space", () => {
    const space = { what: "the ESP", clusterBytes: 2048, freeBytes: 2048 };
    // Within its last cluster: no new cluster, even on a full FAT.
    checkEspFits({ ...space, freeBytes: 0, files: [{ file: "a", oldBytes: 100, newBytes: 2048 }] });
    checkEspFits({ ...space, files: [{ file: "a", oldBytes: 2048, newBytes: 4096 }] });
    const err = thrown(() =>
      checkEspFits({
        ...space,
        files: [
          { file: "::/EFI/debian/grub.cfg", oldBytes: 2048, newBytes: 2049 },
          { file: "::/EFI/BOOT/grub.cfg", oldBytes: 10, newBytes: 4097 },
        ],
      }),
    ) as FdeError;
    expect(err.message).toBe(
      "the ESP has 2048 bytes free, but the rewritten ::/EFI/debian/grub.cfg, ::/EFI/BOOT/grub.cfg need 6144 bytes more (2048-byte clusters)",
    );
    expect(err.hint).toContain("--uki");
  });

  test.skipIf(!isRoot)(
    "a full ESP whose grub.cfg grows by a cluster: refused before the output is written",
    async () => {
      const src = buildSourceImage(join(work, "src-fullesp"));
      const at = `${src}@@${MiB}`;
      const env = { ...process.env, MTOOLS_SKIP_CHECK: "1" };
      // A grub.cfg of exactly one cluster whose linux lines grow when retargeted, then no free space.
      const line = "linux /vmlinuz-6.1.0-test root=UUID=x ro quiet\n";
      const cfgText = line.repeat(Math.floor(2048 / line.length)).padEnd(2048, "#");
      writeFileSync(join(work, "esp-full.cfg"), cfgText);
      execFileSync("mcopy", ["-o", "-i", at, join(work, "esp-full.cfg"), "::/EFI/debian/grub.cfg"], { env });
      const free = fatSpace(
        execFileSync("minfo", ["-i", at, "::"], { env }).toString(),
        execFileSync("mdir", ["-i", at, "::/"], { env }).toString(),
      );
      expect(free.clusterBytes).toBe(2048);
      execFileSync("truncate", ["-s", String(free.freeBytes), join(work, "filler")]);
      execFileSync("mcopy", ["-i", at, join(work, "filler"), "::/FILLER"], { env });
      const out = join(work, "out-fullesp.raw");
      const err = (await convert({
        input: src,
        output: out,
        device: false,
        configDir: cfg,
        bootPartSize: 64 * MiB,
        uki: false,
        ukiAppendCmdline: "",
        assets: {
          moduleFiles: { "module-setup.sh": "#!/bin/bash\ncheck() { return 255; }\n" },
          agentBinary: agent,
        },
      }).catch((e: Error) => e)) as FdeError;
      expect(err).toBeInstanceOf(FdeError);
      expect(err.message).toContain(
        "the source's ESP (partition 1) has 0 bytes free, but the rewritten ::/EFI/debian/grub.cfg need 2048 bytes more",
      );
      expect(existsSync(out)).toBe(false);
      expect(existsSync(`${out}.partial`)).toBe(false);
    },
    120_000,
  );
});

describe.skipIf(!isRoot)("convert -d onto a device too small for the layout", () => {
  const source = buildSourceImage(join(work, "src"));
  /** A device (a file: convert -d reads it with qemu-img -f raw and writes it with dd) of SIZE. */
  const device = (name: string, size: string) => {
    const file = join(work, name);
    execFileSync("cp", ["--sparse=always", source, file]);
    execFileSync("truncate", ["-s", size, file]);
    return file;
  };
  const run = (dev: string, bootPartSize: number, uki = false) =>
    convert({
      input: dev,
      output: dev,
      device: true,
      configDir: cfg,
      bootPartSize,
      uki,
      ukiAppendCmdline: "",
      assets: {
        moduleFiles: { "module-setup.sh": "#!/bin/bash\ncheck() { return 255; }\n" },
        agentBinary: agent,
      },
    });

  test("the default 512M /boot: refused with the sizes and the --boot_part_size that fits, the device untouched; that size converts", async () => {
    const dev = device("dev-grub.raw", "700M");
    const before = Bun.hash(readFileSync(dev));
    const err = (await run(dev, 512 * MiB).catch((e: Error) => e)) as FdeError;
    expect(err).toBeInstanceOf(FdeError);
    expect(err.exitCode).toBe(2);
    expect(err.message).toContain(`${dev} (700 MiB) cannot hold the converted layout`);
    expect(err.message).toContain("/boot 512 MiB (--boot_part_size)");
    expect(Bun.hash(readFileSync(dev))).toBe(before);
    const size = Number(/--boot_part_size (\d+)M \(the largest that fits/.exec(err.message)?.[1]);
    expect(size).toBeGreaterThan(0);
    const info = spyOn(log, "info");
    try {
      await run(dev, size * MiB);
      // The footprint lines (the fixture's stand-in initrd is text: its compression "unknown").
      const lines = info.mock.calls.map((c) => String(c[0]));
      expect(lines).toContain("  initrd initrd.img-6.1.0-test: 0.0 MiB, unknown");
      expect(
        lines.some((l) => new RegExp(`^  /boot: ${size} MiB partition for 0\\.\\d MiB of files`).test(l)),
      ).toBe(true);
    } finally {
      info.mockRestore();
    }
    expect(Bun.hash(readFileSync(dev))).not.toBe(before);
  }, 120_000);

  test("--uki on a device smaller than the ESP and the PV's minimum: refused, untouched, the size it needs", async () => {
    const dev = device("dev-uki.raw", "300M");
    const before = Bun.hash(readFileSync(dev));
    const err = (await run(dev, 512 * MiB, true).catch((e: Error) => e)) as FdeError;
    expect(err).toBeInstanceOf(FdeError);
    expect(err.message).toContain(`${dev} (300 MiB) cannot hold the converted layout`);
    expect(err.message).toMatch(/a new ESP of \d+ MiB for the 0\.0 MiB UKI/);
    expect(err.message).toMatch(/convert onto a device of at least \d+ MiB/);
    expect(Bun.hash(readFileSync(dev))).toBe(before);
  }, 120_000);
});
