/**
 * Random-access, read-only byte sources: the one abstraction every image reader (qcow2, partition
 * tables, FAT, ext4, LVM) is written against. Reads are synchronous because each step of locating
 * a boot file depends on the previous read; the command reads a few hundred KiB in total.
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync, type Stats } from "node:fs";
import { FdeError } from "../../errors.ts";
import { describeFileType, OPEN_TO_INSPECT } from "../../file-type.ts";

export interface BlockSource {
  /** What to call this source in error messages (a path, or "partition 2 of disk.img"). */
  readonly name: string;
  /** Size in bytes. */
  readonly size: number;
  /** Exactly `length` bytes at `offset`; throws if the range is outside the source. */
  read(offset: number, length: number): Uint8Array;
  close(): void;
}

/**
 * Every offset and length reaching a read comes from image bytes: NaN, fractions and values past
 * 2^53 fail here too (NaN compares false with everything, so a plain `<` check would pass it).
 */
export function checkRange(source: BlockSource, offset: number, length: number): void {
  if (
    !Number.isSafeInteger(offset) ||
    !Number.isSafeInteger(length) ||
    offset < 0 ||
    length < 0 ||
    offset + length > source.size
  ) {
    throw new FdeError(
      `${source.name}: read of ${length} bytes at offset ${offset} is past its end (${source.size} bytes); the image is truncated or corrupt.`,
    );
  }
}

/** Size of a block device from sysfs (fstat reports 0 for block devices). */
function blockDeviceSize(rdev: number, path: string): number {
  const major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >> 12) & ~0xff);
  const text = readFileSync(`/sys/dev/block/${major}:${minor}/size`, "utf8");
  const sectors = Number.parseInt(text.trim(), 10);
  if (!Number.isFinite(sectors))
    throw new FdeError(`cannot read the size of block device ${path} from sysfs`);
  return sectors * 512;
}

/** A regular file or a block device, read in place. */
export class FileSource implements BlockSource {
  readonly size: number;
  private fd: number;

  /** `regularOnly` refuses block devices too (qcow2 backing files, as named inside an image). */
  constructor(
    readonly name: string,
    options: { regularOnly?: boolean } = {},
  ) {
    try {
      this.fd = openSync(name, OPEN_TO_INSPECT);
    } catch (err) {
      throw new FdeError(`cannot open ${name}: ${(err as Error).message}`, { cause: err });
    }
    try {
      const st = fstatSync(this.fd);
      this.stat = st;
      if (st.isFile()) this.size = st.size;
      else if (st.isBlockDevice() && !options.regularOnly) this.size = blockDeviceSize(Number(st.rdev), name);
      else {
        throw new FdeError(
          `${name} is ${describeFileType(st)}, not a ${options.regularOnly ? "regular file" : "regular file or block device"}; refusing to read it as a disk image.`,
        );
      }
    } catch (err) {
      closeSync(this.fd);
      throw err;
    }
  }

  /** The file's stat at open time (owner and mode for backing-file checks, dev/ino for cycles). */
  readonly stat: Stats;

  read(offset: number, length: number): Uint8Array {
    const buf = new Uint8Array(length);
    this.readInto(offset, buf);
    return buf;
  }

  /** Fill `target` from `offset` without an intermediate buffer (large file reads). */
  readInto(offset: number, target: Uint8Array): void {
    checkRange(this, offset, target.length);
    let done = 0;
    while (done < target.length) {
      const n = readSync(this.fd, target, done, target.length - done, offset + done);
      if (n === 0) throw new FdeError(`${this.name}: unexpected end of file at offset ${offset + done}`);
      done += n;
    }
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** A byte range of another source (a partition, or a contiguous LV). Closing it does not close the parent. */
export class SliceSource implements BlockSource {
  constructor(
    readonly name: string,
    private parent: BlockSource,
    private start: number,
    readonly size: number,
  ) {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(size) || start < 0 || size < 0) {
      throw new FdeError(
        `${name} has an invalid start ${start} or size ${size}; the table describing it is corrupt.`,
      );
    }
    if (start + size > parent.size) {
      throw new FdeError(
        `${name} extends past the end of ${parent.name} (ends at byte ${start + size}, source has ${parent.size}); the image is truncated.`,
      );
    }
  }

  read(offset: number, length: number): Uint8Array {
    checkRange(this, offset, length);
    return this.parent.read(this.start + offset, length);
  }

  close(): void {}
}

export function u16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}
export function u32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}
/** Little-endian u64 as a number; image offsets stay far below 2^53. */
export function u64(b: Uint8Array, o: number): number {
  return u32(b, o) + u32(b, o + 4) * 0x100000000;
}
export function be32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}
export function be64(b: Uint8Array, o: number): number {
  return be32(b, o) * 0x100000000 + be32(b, o + 4);
}
export function ascii(b: Uint8Array, start: number, end: number): string {
  let s = "";
  for (let i = start; i < end; i++) s += String.fromCharCode(b[i]!);
  return s;
}
