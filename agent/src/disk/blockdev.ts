/** Block-device facts and small operations: sizes (from sysfs), blkid probes, zeroing, zram, growing a partition. */
import { open as openFile, readFile, readlink, realpath, writeFile } from "node:fs/promises";
import { basename } from "node:path";
import { run } from "../command.ts";
import { FdeError } from "../errors.ts";
import { probeType } from "./blkid.ts";

const SECTOR = 512;

async function sysfsName(device: string): Promise<string> {
  return basename(await realpath(device));
}

/** Size in 512-byte sectors, from /sys/class/block/NAME/size (works for dm, zram, partitions). */
export async function sizeSectors(device: string): Promise<number> {
  const text = await readFile(`/sys/class/block/${await sysfsName(device)}/size`, "utf8");
  return Number(text.trim());
}

/** dm-snapshot's persistent COW header starts with "SnAp" (what blkid calls DM_snapshot_cow). */
export function hasSnapshotCowMagic(head: Uint8Array): boolean {
  return head[0] === 0x53 && head[1] === 0x6e && head[2] === 0x41 && head[3] === 0x70;
}

/**
 * The signature on a COW device: its own header is read directly, because a full blkid probe
 * also reads the end of the device, which on an unwiped dm-integrity volume was never written
 * and fails with I/O errors (blkid then reports nothing, and the COW would be wiped).
 */
export async function cowSignature(device: string): Promise<string | undefined> {
  const fh = await openFile(device, "r");
  try {
    const head = new Uint8Array(512);
    await fh.read(head, 0, head.length, 0);
    if (hasSnapshotCowMagic(head)) return "DM_snapshot_cow";
  } finally {
    await fh.close();
  }
  return probeType(device);
}

/** Overwrite the first `bytes` of a device with zeros (and flush), e.g. to invalidate an old COW header. */
export async function zeroHead(device: string, bytes = 4096): Promise<void> {
  const fh = await openFile(device, "r+");
  try {
    await fh.write(new Uint8Array(bytes), 0, bytes, 0);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Allocate a zram device of `bytes` and return its path (/dev/zramN). */
export async function createZram(bytes: number): Promise<string> {
  const id = (await readFile("/sys/class/zram-control/hot_add", "utf8")).trim();
  await writeFile(`/sys/block/zram${id}/disksize`, String(bytes));
  return `/dev/zram${id}`;
}

/** MemTotal from /proc/meminfo, in bytes. */
export function parseMemTotal(meminfo: string): number {
  const kib = /^MemTotal:\s+(\d+) kB/m.exec(meminfo)?.[1];
  if (!kib) throw new FdeError("no MemTotal line in /proc/meminfo");
  return Number(kib) * 1024;
}

export interface PartitionOf {
  disk: string;
  number: number;
  startSectors: number;
  sizeSectors: number;
  diskSectors: number;
}

/** Which disk and partition number a partition device is (from sysfs). */
export async function partitionOf(device: string): Promise<PartitionOf | undefined> {
  const name = await sysfsName(device);
  const dir = `/sys/class/block/${name}`;
  const num = await readFile(`${dir}/partition`, "utf8").catch(() => undefined);
  if (num === undefined) return undefined;
  // /sys/class/block/vda2 -> ../../devices/.../vda/vda2: the parent directory is the disk.
  const link = await readlink(dir);
  const disk = basename(link.slice(0, link.lastIndexOf("/")));
  const read = async (p: string) => Number((await readFile(p, "utf8")).trim());
  return {
    disk: `/dev/${disk}`,
    number: Number(num.trim()),
    startSectors: await read(`${dir}/start`),
    sizeSectors: await read(`${dir}/size`),
    diskSectors: await read(`/sys/class/block/${disk}/size`),
  };
}

/**
 * True when the disk has room after the partition worth growing into (more than the 1 MiB of
 * alignment slack plus the backup GPT).
 */
export function canGrow(p: PartitionOf): boolean {
  return p.diskSectors - (p.startSectors + p.sizeSectors) > (1024 * 1024 + 34 * SECTOR) / SECTOR;
}

/**
 * Grow partition N of DISK to the end of the disk while it is in use: rewrite the table with
 * sfdisk (which also moves the backup GPT to the new end), then tell the kernel with partx.
 */
export async function growPartition(p: PartitionOf): Promise<void> {
  await run("sfdisk", ["--force", "--no-reread", "--no-tell-kernel", "-N", String(p.number), p.disk], {
    stdin: ", +\n",
  });
  await run("partx", ["--update", "--nr", String(p.number), p.disk]);
}
