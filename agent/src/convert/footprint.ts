/**
 * Will the new /boot partition hold the staged kernels, initrds and GRUB files? Checked before
 * the partition is written, so a too-small --boot_part_size is refused with the sizes and the
 * size to ask for, instead of mkfs.ext4's "Could not allocate block" after the initrds were built.
 * The estimate of ext4's own overhead is on the low side on purpose: a layout it passes may still
 * fail in mkfs.ext4 (whose failure stays the backstop), but one it refuses cannot fit.
 */
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import { UsageError } from "../errors.ts";
import { alignUp, MiB } from "./layout.ts";

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

/** Pure: the smallest partition size, in whole MiB, whose ext4 holds NEEDED bytes of files. */
export function minBootPartSize(needed: number): number {
  let size = alignUp(needed, MiB);
  while (size - ext4Overhead(size) < needed) size += MiB;
  return size;
}

/** Refuses (naming the sizes) a /boot partition of PARTSIZE bytes that cannot hold STAGING. */
export async function checkBootFits(staging: string, partSize: number): Promise<void> {
  const needed = await stagedBytes(staging);
  if (partSize - ext4Overhead(partSize) >= needed) return;
  const min = minBootPartSize(needed);
  throw new UsageError(
    `the boot partition (${(partSize / MiB).toFixed(0)} MiB) cannot hold the kernels and initrds: they take ${(needed / MiB).toFixed(1)} MiB, which needs a partition of at least ${min / MiB} MiB; pass --boot_part_size ${Math.ceil((min * 1.25) / MiB)}M or more (room for a kernel update)`,
  );
}
