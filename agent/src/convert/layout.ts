/** The converted disk's partition layout (pure arithmetic, unit-tested). */
import { ESP_TYPE, LINUX_FS_TYPE, LINUX_LVM_TYPE } from "./source.ts";

export const MiB = 1024 * 1024;
export const EXTENT = 4 * MiB;
/** Room the PV must keep free for the delta volume beyond the rootfs LVs. */
export const MIN_DELTA_ROOM = 512 * MiB;

export const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

export interface Region {
  offset: number;
  size: number;
}

export interface Layout {
  diskSize: number;
  esp: Region;
  /** Absent in UKI mode. */
  boot?: Region;
  pv: Region;
}

/** Bytes the PV needs: 1 MiB of LVM metadata, the LVs rounded to extents, and room for the delta. */
export function pvMinSize(rootfsLvBytes: number, hashLvBytes: number): number {
  return MiB + alignUp(rootfsLvBytes, EXTENT) + alignUp(hashLvBytes, EXTENT) + MIN_DELTA_ROOM;
}

/**
 * GPT: 1 MiB head, ESP, optional boot partition, PV to the end (minus 1 MiB for the backup
 * table). The disk keeps the source's size unless the new layout needs more.
 */
export function computeLayout(opts: {
  sourceDiskSize: number;
  espSize: number;
  bootSize?: number;
  pvMin: number;
}): Layout {
  const esp = { offset: MiB, size: alignUp(opts.espSize, MiB) };
  let next = esp.offset + esp.size;
  let boot: Region | undefined;
  if (opts.bootSize !== undefined) {
    boot = { offset: next, size: alignUp(opts.bootSize, MiB) };
    next = boot.offset + boot.size;
  }
  const needed = next + alignUp(opts.pvMin, MiB) + MiB;
  const diskSize = Math.max(alignUp(opts.sourceDiskSize, MiB), needed);
  return { diskSize, esp, boot, pv: { offset: next, size: diskSize - MiB - next } };
}

/** sfdisk input for the layout; the boot partition carries the GPT name "boot". */
export function sfdiskScript(layout: Layout): string {
  const sectors = (n: number) => n / 512;
  const line = (r: Region, type: string, name: string) =>
    `start=${sectors(r.offset)}, size=${sectors(r.size)}, type=${type}, name="${name}"`;
  const lines = ["label: gpt", line(layout.esp, ESP_TYPE, "EFI System Partition")];
  if (layout.boot) lines.push(line(layout.boot, LINUX_FS_TYPE, "boot"));
  lines.push(line(layout.pv, LINUX_LVM_TYPE, "cryptpilot"));
  return `${lines.join("\n")}\n`;
}

/** Examples of the sizes sizeBytes accepts, for error messages. */
export const SIZE_EXAMPLES = "512M, 1G";

/** Bytes in a size like "512M", "1G", "300MiB" or a byte count; undefined when it is not one. */
export function sizeBytes(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  if (!m) return undefined;
  const mult = { "": 1, K: 1024, M: MiB, G: 1024 * MiB, T: 1024 * 1024 * MiB }[
    m[2]!.toUpperCase() as "" | "K"
  ]!;
  return Math.round(Number(m[1]) * mult);
}
