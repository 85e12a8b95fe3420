/**
 * GPT and MBR partition tables (MBR with extended/logical partitions, numbered from 5 as Linux and
 * GRUB do). The partition number is kept as the table gives it, so `(hd0,gpt13)` is right for
 * partitions >= 10.
 */
import { FdeError } from "../../errors.ts";
import { ascii, type BlockSource, SliceSource, u16, u32, u64 } from "./source.ts";

export type PartitionScheme = "gpt" | "msdos";

export interface Partition {
  scheme: PartitionScheme;
  /** 1-based number as GRUB and Linux name it (`(hd0,gpt3)`, `/dev/vda3`). */
  number: number;
  /** Byte offset and length within the disk. */
  start: number;
  size: number;
  /** GPT partition type GUID (lower case) or the MBR type byte as two hex digits. */
  type: string;
  /** GPT partition name (PARTLABEL); empty for MBR. */
  name: string;
}

/**
 * Largest GPT partition entry array read (count x entry size). The spec's minimum is 16 KiB (128
 * entries of 128 bytes); 1 MiB leaves room for any real table while a crafted 1 GiB one is refused.
 */
export const GPT_MAX_ENTRY_ARRAY_BYTES = 1 << 20;
/** Largest GPT entry size accepted (the spec allows 128 * 2^n; no tool writes more than 128). */
export const GPT_MAX_ENTRY_SIZE = 4096;
/** Logical partitions followed along an MBR extended partition's EBR chain. */
export const MBR_MAX_LOGICAL = 256;

export const ESP_GPT_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
export const ESP_MBR_TYPE = "ef";

function guid(b: Uint8Array, o: number): string {
  const hex = (i: number) => b[o + i]!.toString(16).padStart(2, "0");
  const seq = (idx: number[]) => idx.map(hex).join("");
  return `${seq([3, 2, 1, 0])}-${seq([5, 4])}-${seq([7, 6])}-${seq([8, 9])}-${seq([10, 11, 12, 13, 14, 15])}`;
}

function utf16z(b: Uint8Array, start: number, end: number): string {
  let s = "";
  for (let i = start; i + 1 < end; i += 2) {
    const c = u16(b, i);
    if (c === 0) break;
    s += String.fromCharCode(c);
  }
  return s;
}

function readGpt(disk: BlockSource, sectorSize: number): Partition[] | undefined {
  if (disk.size < sectorSize * 2) return undefined;
  const h = disk.read(sectorSize, sectorSize);
  if (ascii(h, 0, 8) !== "EFI PART") return undefined;
  const entriesLba = u64(h, 72);
  const count = u32(h, 80);
  const entrySize = u32(h, 84);
  if (entrySize < 128 || entrySize > GPT_MAX_ENTRY_SIZE || entrySize % 8 !== 0) {
    throw new FdeError(
      `${disk.name}: GPT header field size_of_partition_entry is ${entrySize} (expected a multiple of 8 from 128 to ${GPT_MAX_ENTRY_SIZE}); the partition table is corrupt or crafted.`,
    );
  }
  if (count * entrySize > GPT_MAX_ENTRY_ARRAY_BYTES) {
    throw new FdeError(
      `${disk.name}: GPT header describes a partition entry array of ${count} x ${entrySize} bytes, larger than the ${GPT_MAX_ENTRY_ARRAY_BYTES}-byte maximum; the partition table is corrupt or crafted.`,
    );
  }
  if (entriesLba < 2 || entriesLba * sectorSize + count * entrySize > disk.size) {
    throw new FdeError(
      `${disk.name}: GPT partition entry array at LBA ${entriesLba} (${count * entrySize} bytes) lies outside the disk (${disk.size} bytes); the partition table is corrupt.`,
    );
  }
  const table = disk.read(entriesLba * sectorSize, count * entrySize);
  const parts: Partition[] = [];
  for (let i = 0; i < count; i++) {
    const o = i * entrySize;
    const type = guid(table, o);
    if (type === "00000000-0000-0000-0000-000000000000") continue;
    const first = u64(table, o + 32);
    const last = u64(table, o + 40);
    if (last < first || (last + 1) * sectorSize > disk.size) {
      throw new FdeError(
        `${disk.name}: GPT partition ${i + 1} spans LBA ${first} to ${last}, which is empty, reversed or past the end of the disk (${disk.size} bytes); the partition table is corrupt.`,
      );
    }
    parts.push({
      scheme: "gpt",
      number: i + 1,
      start: first * sectorSize,
      size: (last - first + 1) * sectorSize,
      type,
      name: utf16z(table, o + 56, o + 128),
    });
  }
  return parts;
}

const EXTENDED_TYPES = new Set([0x05, 0x0f, 0x85]);

function readMbr(disk: BlockSource, mbr: Uint8Array): Partition[] {
  const parts: Partition[] = [];
  const entry = (b: Uint8Array, i: number) => ({
    type: b[0x1be + i * 16 + 4]!,
    lba: u32(b, 0x1be + i * 16 + 8),
    sectors: u32(b, 0x1be + i * 16 + 12),
  });
  for (let i = 0; i < 4; i++) {
    const e = entry(mbr, i);
    if (e.type === 0 || e.sectors === 0) continue;
    if (EXTENDED_TYPES.has(e.type)) {
      readLogical(disk, e.lba, parts);
      continue;
    }
    parts.push(mbrPartition(i + 1, e.lba, e.sectors, e.type));
  }
  return parts;
}

/** Walk the EBR chain; logical partition offsets are relative to their EBR, links to the extended start. */
function readLogical(disk: BlockSource, extStart: number, parts: Partition[]): void {
  let ebrLba = extStart;
  // Each EBR links to the next; a link back to an earlier one would loop, so the walk is bounded.
  for (let number = 5; number < 5 + MBR_MAX_LOGICAL; number++) {
    const ebr = disk.read(ebrLba * 512, 512);
    if (ebr[510] !== 0x55 || ebr[511] !== 0xaa) return;
    const lba = u32(ebr, 0x1be + 8);
    const sectors = u32(ebr, 0x1be + 12);
    const type = ebr[0x1be + 4]!;
    if (type !== 0 && sectors !== 0) parts.push(mbrPartition(number, ebrLba + lba, sectors, type));
    const next = u32(ebr, 0x1ce + 8);
    if (ebr[0x1ce + 4] === 0 || next === 0) return;
    ebrLba = extStart + next;
  }
}

function mbrPartition(number: number, lba: number, sectors: number, type: number): Partition {
  return {
    scheme: "msdos",
    number,
    start: lba * 512,
    size: sectors * 512,
    type: type.toString(16).padStart(2, "0"),
    name: "",
  };
}

/** The partitions of a disk; throws a clear error when it has no partition table. */
export function readPartitions(disk: BlockSource): Partition[] {
  if (disk.size < 1024)
    throw new FdeError(`${disk.name} is too small (${disk.size} bytes) to be a disk image`);
  const mbr = disk.read(0, 512);
  const gpt = readGpt(disk, 512) ?? readGpt(disk, 4096);
  if (gpt) return gpt;
  if (mbr[510] !== 0x55 || mbr[511] !== 0xaa) {
    throw new FdeError(
      `${disk.name} has no GPT or MBR partition table; it is not a disk image (was a single filesystem image or a non-raw format given?).`,
    );
  }
  return readMbr(disk, mbr);
}

export function partitionSource(disk: BlockSource, p: Partition): BlockSource {
  return new SliceSource(`partition ${p.number} of ${disk.name}`, disk, p.start, p.size);
}

export function isEsp(p: Partition): boolean {
  return p.type === ESP_GPT_TYPE || p.type === ESP_MBR_TYPE;
}
