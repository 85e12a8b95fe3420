/**
 * Will the converted disk's boot files fit? Checked after the initrds are built and before
 * anything is written (steps/write-disk.ts): the new /boot partition must hold the staged kernels,
 * initrds and GRUB files (else the --boot_part_size to ask for, instead of mkfs.ext4's "Could not
 * allocate block"); a --device layout must fit the device, which cannot grow; GRUB mode's
 * rewritten grub.cfg files must fit the source ESP's free space. The ESP --uki creates is sized
 * from its UKI here (ukiEspSize). The estimate of ext4's own overhead is on the low side on
 * purpose: a layout it passes may still fail in mkfs.ext4 (whose failure stays the backstop), but
 * one it refuses cannot fit. The sizes measured per architecture and compression:
 * docs/install.md, "Disk footprint" (bench/footprint.ts).
 */
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import { initrdCompression } from "../config/initrd.ts";
import { FdeError, UsageError } from "../errors.ts";
import { parsePe } from "../refvalue/pe.ts";
import { alignUp, type Layout, MIN_DELTA_ROOM, MiB } from "./layout.ts";

/** The block size convert formats /boot with (mkfs.ext4 -b 4096 in steps/write-disk.ts). */
export const BOOT_BLOCK = 4096;

/** Bytes the contents of STAGING take as files on ext4: every file and directory in whole blocks. */
export async function stagedBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(dir)) {
    const path = join(dir, name);
    const st = await lstat(path);
    // A directory: its own block and its contents; a file: its data blocks (small ones inline
    // data is off in Debian's mke2fs.conf, so at least one block); symlinks fit in the inode.
    if (st.isDirectory()) total += BOOT_BLOCK + (await stagedBytes(path));
    else if (st.isFile()) total += alignUp(Math.max(st.size, 1), BOOT_BLOCK);
  }
  return total;
}

/**
 * Pure: ext4's own use of a SIZE-byte filesystem as mke2fs lays it out with Debian's mke2fs.conf:
 * the journal (4 MiB up to 128 MiB, 16 MiB up to 1 GiB, 32 MiB up to 2 GiB, 64 MiB beyond) and the
 * inode tables (256-byte inodes, one per 4 KiB below 512 MiB, the "small" type, else per 16 KiB).
 */
export function ext4Overhead(size: number): number {
  const journal =
    size < 128 * MiB ? 4 * MiB : size < 1024 * MiB ? 16 * MiB : size < 2048 * MiB ? 32 * MiB : 64 * MiB;
  const inodeRatio = size < 512 * MiB ? 4096 : 16384;
  return journal + (size / inodeRatio) * 256;
}

/**
 * Pure: does an ext4 of SIZE bytes hold NEEDED bytes of files? Not monotonic in SIZE: the journal
 * steps from 4 to 16 MiB at 128 MiB, so e.g. 127 MiB may hold what 130 MiB cannot.
 */
export const bootHolds = (size: number, needed: number) => size - ext4Overhead(size) >= needed;

/** Pure: the smallest partition size, in whole MiB, whose ext4 holds NEEDED bytes of files. */
export function minBootPartSize(needed: number): number {
  let size = alignUp(needed, MiB);
  while (!bootHolds(size, needed)) size += MiB;
  return size;
}

/** Room for a kernel update on top of the smallest partition, in what a refusal suggests. */
export const UPDATE_ROOM = 1.25;

/** Refuses (naming the sizes) a /boot partition of PARTSIZE bytes that cannot hold STAGING. */
export async function checkBootFits(staging: string, partSize: number): Promise<void> {
  const needed = await stagedBytes(staging);
  if (bootHolds(partSize, needed)) return;
  const min = minBootPartSize(needed);
  throw new UsageError(
    `the boot partition (${(partSize / MiB).toFixed(0)} MiB) cannot hold the kernels and initrds: they take ${(needed / MiB).toFixed(1)} MiB, which needs a partition of at least ${min / MiB} MiB; pass --boot_part_size ${Math.ceil((min * UPDATE_ROOM) / MiB)}M or more (room for a kernel update)`,
  );
}

/**
 * UKI mode's new ESP: the UKI with room for a newer kernel's (UPDATE_ROOM) plus UKI_ESP_SLACK,
 * which also keeps the FAT32 that mkfs.vfat -F 32 makes above its 65525-cluster minimum (~33 MiB)
 * and covers the FATs themselves; never smaller than the source's ESP.
 */
export const UKI_ESP_SLACK = 32 * MiB;

/** Pure: the size of UKI mode's new ESP for a UKI of UKIBYTES (and the source's ESP, if any). */
export function ukiEspSize(ukiBytes: number, sourceEspBytes = 0): number {
  return Math.max(sourceEspBytes, alignUp(ukiBytes * UPDATE_ROOM + UKI_ESP_SLACK, MiB));
}

/** What a --device conversion must fit: the layout computed for it and where its parts come from. */
export interface DeviceFit {
  device: string;
  deviceBytes: number;
  layout: Layout;
  /** Bytes the PV needs (layout.pvMinSize): the rootfs and hash LVs and the delta's minimum. */
  pvMin: number;
  /** --uki: the UKI's bytes (the ESP is sized for it); GRUB mode: undefined (the source's ESP). */
  ukiBytes?: number;
  /** GRUB mode: the bytes of the staged /boot files (stagedBytes), for the --boot_part_size advice. */
  bootNeeded?: number;
}

/**
 * Pure: refuses a --device conversion whose layout is larger than the device (a device cannot
 * grow, unlike an --out image), before anything is written to it: the sizes of each part, and
 * the --boot_part_size that fits when a smaller /boot is enough, else the device size needed.
 */
export function checkDeviceFits(f: DeviceFit): void {
  const L = f.layout;
  if (L.diskSize <= f.deviceBytes) return;
  const mib = (n: number) => `${Math.ceil(n / MiB)} MiB`;
  const esp = f.ukiBytes
    ? `a new ESP of ${mib(L.esp.size)} for the ${(f.ukiBytes / MiB).toFixed(1)} MiB UKI (and a newer kernel's)`
    : `the source's ESP, ${mib(L.esp.size)}`;
  const boot = L.boot ? ` + /boot ${mib(L.boot.size)} (--boot_part_size)` : "";
  const pv = `the LVM PV ${mib(f.pvMin)} (the shrunk rootfs and its hash tree, ${mib(f.pvMin - MIN_DELTA_ROOM - MiB)}; ${mib(MIN_DELTA_ROOM)} for the delta; 1 MiB of LVM metadata)`;
  const what = `${f.device} (${mib(f.deviceBytes)}) cannot hold the converted layout, ${mib(L.diskSize)}: 2 MiB of GPT + ${esp}${boot} + ${pv}`;
  if (L.boot && f.bootNeeded !== undefined) {
    const minBoot = minBootPartSize(f.bootNeeded);
    // The largest /boot the device leaves room for that also holds the files (bootHolds has gaps).
    let fitting = Math.floor((L.boot.size - (L.diskSize - f.deviceBytes)) / MiB) * MiB;
    while (fitting > minBoot && !bootHolds(fitting, f.bootNeeded)) fitting -= MiB;
    if (fitting >= minBoot) {
      throw new UsageError(
        `${what}; nothing written to ${f.device}; pass --boot_part_size ${fitting / MiB}M (the largest that fits; the kernels and initrds need at least ${minBoot / MiB} MiB)`,
      );
    }
    const smallest = L.diskSize - L.boot.size + minBoot;
    throw new FdeError(`${what}; nothing written to ${f.device}`, {
      hint: `even the smallest /boot (--boot_part_size ${minBoot / MiB}M) needs a ${mib(smallest)} device: convert onto a larger one, or convert an image with --in/--out (its output grows as needed) and write that`,
    });
  }
  throw new FdeError(`${what}; nothing written to ${f.device}`, {
    hint: `convert onto a device of at least ${mib(L.diskSize)}, or convert an image with --in/--out (its output grows as needed) and write that`,
  });
}

/** The most bytes read to name an initrd's compression (a UKI is its kernel plus its initrd). */
export const BUILT_IMAGE_MAX_BYTES = 1024 * MiB;

/** How the initrd dracut built into FILE is compressed; with UKI true, FILE is a UKI (.initrd section). */
export async function builtInitrdCompression(file: string, uki: boolean): Promise<string> {
  const size = Bun.file(file).size;
  if (size > BUILT_IMAGE_MAX_BYTES)
    throw new FdeError(`${file} is ${size} bytes, more than the ${BUILT_IMAGE_MAX_BYTES}-byte limit`);
  const bytes = new Uint8Array(await Bun.file(file).arrayBuffer());
  if (!uki) return initrdCompression(bytes, file);
  const section = parsePe(bytes, file).sections.find((s) => s.name === ".initrd");
  if (!section) throw new FdeError(`${file}: the UKI dracut built has no .initrd section`);
  const start = section.pointerToRawData;
  const end = start + section.sizeOfRawData;
  if (end > bytes.length)
    throw new FdeError(
      `${file}: the UKI's .initrd section (bytes ${start}-${end}) runs past the end of the file (${bytes.length} bytes)`,
    );
  return initrdCompression(bytes.subarray(start, end), `${file} (.initrd)`);
}

/** A FAT's allocation unit and free space, as mtools reports them. */
export interface FatSpace {
  clusterBytes: number;
  freeBytes: number;
}

/**
 * Pure: the cluster size from `minfo`'s "sector size: N bytes" and "cluster size: N sectors", and
 * the free bytes from `mdir`'s last line ("33 468 416 bytes free": thousands grouped by spaces).
 */
export function fatSpace(minfo: string, mdir: string): FatSpace {
  const sector = /sector size: (\d+) bytes/.exec(minfo)?.[1];
  const cluster = /cluster size: (\d+) sectors/.exec(minfo)?.[1];
  const free = /([\d ]+) bytes free/.exec(mdir)?.[1];
  if (!sector || !cluster || !free)
    throw new FdeError("cannot read the ESP's cluster size and free space from minfo and mdir", {
      hint: "is mtools installed and the ESP a FAT filesystem?",
    });
  return { clusterBytes: Number(sector) * Number(cluster), freeBytes: Number(free.replace(/ /g, "")) };
}

/**
 * Pure: refuses files rewritten in place on a FAT (GRUB mode's grub.cfg files on the source's
 * ESP, written with mcopy -o, which frees the old clusters) when their growth in whole clusters is
 * more than the free space: before anything is written, naming the ESP and both sizes.
 */
export function checkEspFits(
  f: FatSpace & { what: string; files: { file: string; oldBytes: number; newBytes: number }[] },
): void {
  const clusters = (n: number) => Math.ceil(n / f.clusterBytes);
  const grows = f.files.reduce(
    (sum, x) => sum + Math.max(0, clusters(x.newBytes) - clusters(x.oldBytes)) * f.clusterBytes,
    0,
  );
  if (grows <= f.freeBytes) return;
  throw new FdeError(
    `${f.what} has ${f.freeBytes} bytes free, but the rewritten ${f.files.map((x) => x.file).join(", ")} need ${grows} bytes more (${f.clusterBytes}-byte clusters)`,
    {
      hint: "free space on the image's ESP (old kernels or boot loaders in EFI/) before converting, or convert with --uki (a new ESP holding only the UKI)",
    },
  );
}
