/** The output disk: GPT, ESP (the source's, or a new one holding only the UKI), /boot, then the LVM PV. */
import { rm, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { efiBootPath } from "../../arch.ts";
import { run } from "../../command.ts";
import { ROOTFS_HASH_LV_NAME, ROOTFS_LV_NAME } from "../../disk/names.ts";
import { FdeError } from "../../errors.ts";
import { log } from "../../log.ts";
import { type BootFiles, type ConvertCtx, defineStep, type Initrds, type SourceDisk } from "../context.ts";
import {
  builtInitrdCompression,
  checkBootFits,
  checkDeviceFits,
  checkEspFits,
  fatSpace,
  minBootPartSize,
  stagedBytes,
  ukiEspSize,
} from "../footprint.ts";
import { computeLayout, type Layout, MiB, pvMinSize, sfdiskScript } from "../layout.ts";
import { copyAt, writePv } from "../pv.ts";
import { retargetGrubCfg } from "./boot-entries.ts";

export const writeDisk = defineStep("writeDisk", "writing the partitions, ESP and boot files", {
  device: (c) => c.partial,
  needs: ["source", "guest", "bootFiles", "initrds", "rootfsLv"],
  sets: ["disk"],
  async run(c, io) {
    const source = io.need("source");
    const { esp } = source;
    const { ukiFile, kernels } = io.need("initrds");
    const hashSize = Bun.file(c.hashImg).size;
    const ukiSize = ukiFile ? Bun.file(ukiFile).size : 0;
    const espSize = c.opts.uki ? ukiEspSize(ukiSize, esp?.size) : sourceEsp(esp).size;
    const pvMin = pvMinSize(io.need("rootfsLv").size, hashSize);
    const L = computeLayout({
      sourceDiskSize: Bun.file(c.srcRaw).size,
      espSize,
      bootSize: c.opts.uki ? undefined : c.opts.bootPartSize,
      pvMin,
    });
    io.set("disk", { layout: L });
    // Every size refusal comes before the first write (of DST.partial, or the device's work copy).
    if (L.boot) await checkBootFits(c.bootStaging, L.boot.size);
    if (c.opts.device) {
      checkDeviceFits({
        device: c.opts.output,
        deviceBytes: Bun.file(c.srcRaw).size,
        layout: L,
        pvMin,
        ukiBytes: ukiFile ? ukiSize : undefined,
        bootNeeded: L.boot ? await stagedBytes(c.bootStaging) : undefined,
      });
    }
    // GRUB mode: the source's ESP gets rewritten grub.cfg files; they must fit its free space.
    const espCfgs = c.opts.uki
      ? []
      : await planEspGrubCfgs(c, sourceEsp(esp).offset, source, io.need("bootFiles"));
    await logFootprint(c, L, ukiFile, kernels);
    await rm(c.partial, { force: true });
    await writeFile(c.partial, "");
    await truncate(c.partial, L.diskSize);
    await run("sfdisk", ["--quiet", "--no-reread", "--no-tell-kernel", c.partial], {
      stdin: sfdiskScript(L),
    });
    if (c.opts.uki) {
      if (!ukiFile) throw new FdeError("convert: --uki, but rebuildInitrds built no UKI");
      const espImg = await buildUkiEsp(c, ukiFile, efiBootPath(io.need("guest").arch), L.esp.size);
      await copyAt(espImg, c.partial, L.esp.offset, L.esp.size, true);
      return;
    }
    const oldEsp = sourceEsp(esp);
    await run("dd", [
      `if=${c.srcRaw}`,
      `of=${c.partial}`,
      "bs=4M",
      `skip=${oldEsp.offset}`,
      `seek=${L.esp.offset}`,
      `count=${oldEsp.size}`,
      "iflag=skip_bytes,count_bytes",
      "oflag=seek_bytes",
      "conv=notrunc,sparse",
      "status=none",
    ]);
    for (const cfg of espCfgs) {
      const local = join(c.work, "esp-grub.cfg");
      await writeFile(local, cfg.text);
      await mtools("mcopy", ["-o", local, cfg.file], c.partial, L.esp.offset);
    }
    const boot = L.boot;
    if (!boot) throw new FdeError("convert: GRUB mode, but the layout has no boot partition");
    const bootImg = join(c.work, "boot.img");
    await run(
      "mkfs.ext4",
      [
        "-q",
        "-F",
        "-b",
        "4096",
        "-L",
        "boot",
        "-U",
        c.bootUuid,
        "-d",
        c.bootStaging,
        bootImg,
        `${boot.size / 1024}k`,
      ],
      {
        hint: "the boot partition is too small for the kernels and initrds: raise -b/--boot_part_size",
      },
    );
    await copyAt(bootImg, c.partial, boot.offset, boot.size, true);
  },
});

export const writeLvm = defineStep("writeLvm", "writing the cryptpilot LVM volume group", {
  device: (c) => c.partial,
  needs: ["disk", "rootfsLv"],
  sets: ["lvm"],
  async run(c, io) {
    const rootfsLv = io.need("rootfsLv");
    const { free } = await writePv(c.cleanup, c.work, c.partial, io.need("disk").layout.pv, [
      { name: ROOTFS_LV_NAME, file: rootfsLv.file, size: rootfsLv.size },
      { name: ROOTFS_HASH_LV_NAME, file: c.hashImg, size: Bun.file(c.hashImg).size },
    ]);
    io.set("lvm", { pvFree: free });
  },
});

/**
 * The convert log's footprint lines: each initrd's compression and size, and the ESP or /boot it
 * goes to. Only a log: an image it cannot read is "not recognised" here (the boot tests check
 * what was built).
 */
async function logFootprint(
  c: ConvertCtx,
  L: Layout,
  ukiFile: string | undefined,
  kernels: Initrds["kernels"],
): Promise<void> {
  const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
  if (ukiFile) {
    const size = Bun.file(ukiFile).size;
    log.info(
      `  UKI ${mib(size)} (initrd ${await compressionOf(ukiFile, true)}); new ESP ${L.esp.size / MiB} MiB`,
    );
    return;
  }
  for (const k of kernels) {
    const file = join(c.bootStaging, k.initrd);
    log.info(`  initrd ${k.initrd}: ${mib(Bun.file(file).size)}, ${await compressionOf(file, false)}`);
  }
  const needed = await stagedBytes(c.bootStaging);
  log.info(
    `  /boot: ${(L.boot?.size ?? 0) / MiB} MiB partition for ${mib(needed)} of files (the smallest that holds them: ${minBootPartSize(needed) / MiB} MiB)`,
  );
}

const compressionOf = (file: string, uki: boolean) =>
  builtInitrdCompression(file, uki).catch(() => "compression not recognised");

/** GRUB mode keeps the source's ESP (readSource refuses a source without one). */
function sourceEsp(esp: SourceDisk["esp"]): NonNullable<SourceDisk["esp"]> {
  if (!esp) throw new FdeError("convert: GRUB mode, but the source has no ESP (readSource checks this)");
  return esp;
}

async function mtools(cmd: string, args: string[], image: string, offset: number, stdin?: string) {
  return run(cmd, ["-i", `${image}@@${offset}`, ...args], { env: { MTOOLS_SKIP_CHECK: "1" }, stdin });
}

/**
 * ESP for UKI mode: a fresh FAT holding only the UKI at the removable-media path of the guest's
 * architecture (EFI/BOOT/BOOTX64.EFI, BOOTAA64.EFI), so nothing else on it can boot.
 */
async function buildUkiEsp(c: ConvertCtx, ukiFile: string, espPath: string, size: number): Promise<string> {
  const img = join(c.work, "esp.img");
  await run("mkfs.vfat", ["-F", "32", "-n", "ESP", "-C", img, String(size / 1024)]);
  await mtools("mmd", ["::/EFI", "::/EFI/BOOT"], img, 0);
  await mtools("mcopy", [ukiFile, `::${espPath}`], img, 0);
  return img;
}

/**
 * The ESP's grub.cfg files with their retargeted text, read from the source's ESP (in the source
 * copy, at OFFSET) before anything is written; refused when the ESP's free space cannot take
 * their growth (checkEspFits), instead of mcopy's "Disk full" halfway through writing.
 */
async function planEspGrubCfgs(
  c: ConvertCtx,
  offset: number,
  source: SourceDisk,
  bootFiles: BootFiles,
): Promise<{ file: string; text: string }[]> {
  const image = c.srcRaw;
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  const { stdout } = await run("mdir", ["-i", `${image}@@${offset}`, "-/", "-b", "::/EFI"], {
    env: { MTOOLS_SKIP_CHECK: "1" },
    okCodes: [0, 1],
  });
  const files = decode(stdout)
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => /grub\.cfg$/i.test(l));
  const planned: { file: string; text: string; oldBytes: number; newBytes: number }[] = [];
  for (const file of files) {
    const old = (await mtools("mtype", [file], image, offset)).stdout;
    const text = retargetGrubCfg(decode(old), source, bootFiles, c.bootUuid);
    planned.push({ file, text, oldBytes: old.length, newBytes: new TextEncoder().encode(text).length });
  }
  if (planned.length > 0) {
    const info = decode((await mtools("minfo", ["::"], image, offset)).stdout);
    const dir = decode((await mtools("mdir", ["::/"], image, offset)).stdout);
    checkEspFits({
      what: `the source's ESP (partition ${sourceEsp(source.esp).number})`,
      ...fatSpace(info, dir),
      files: planned,
    });
  }
  return planned;
}
