/** device-mapper tables for the dm-snapshot writable layer, and dmsetup wrappers. */
import { run } from "../command.ts";

/** Snapshot chunk size in 512-byte sectors (8 KiB), as upstream cryptpilot uses. */
export const SNAPSHOT_CHUNK_SECTORS = 16;

/**
 * rootfs_extended: the verity device followed by a zero region as large as the COW, so the
 * filesystem on top can be grown into it (writes to that region land in the COW).
 */
export function extendedTable(verityDevice: string, veritySectors: number, cowSectors: number): string {
  return `0 ${veritySectors} linear ${verityDevice} 0\n${veritySectors} ${cowSectors} zero`;
}

/** The writable root: a snapshot of rootfs_extended. Persistent ("P") keeps its COW across boots. */
export function snapshotTable(
  originDevice: string,
  originSectors: number,
  cowDevice: string,
  persistent: boolean,
): string {
  // "PO" = persistent + overflow (the snapshot stays valid, writes fail, when the COW fills up).
  return `0 ${originSectors} snapshot ${originDevice} ${cowDevice} ${persistent ? "PO" : "N"} ${SNAPSHOT_CHUNK_SECTORS}`;
}

export async function create(name: string, table: string): Promise<void> {
  await run("dmsetup", ["create", name, "--table", table]);
}
