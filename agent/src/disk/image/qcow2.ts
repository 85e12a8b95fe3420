/**
 * Read-only qcow2 (versions 2 and 3): L1/L2 lookup, zero clusters, zlib- and zstd-compressed
 * clusters, and backing files (any format openImage recognises). Only the clusters a reader asks
 * for are touched, so a 20 GB image costs a handful of reads.
 */
import { dirname, isAbsolute, resolve } from "node:path";
import { inflateRawSync, zstdDecompressSync } from "node:zlib";
import { FdeError } from "../../errors.ts";
import { escapeText } from "../../escape.ts";
import { ascii, type BlockSource, be32, be64, checkRange, FileSource } from "./source.ts";

export const QCOW2_MAGIC = 0x514649fb;

/** qemu's limit on the L1 table (QCOW_MAX_L1_SIZE, 32 MiB = 4 Mi entries); larger is refused. */
export const QCOW2_MAX_L1_BYTES = 32 << 20;
/** qemu refuses backing file names longer than 1023 bytes. */
export const QCOW2_MAX_BACKING_NAME = 1023;
/** L2 tables kept in memory (each is one cluster, up to 2 MiB); the oldest is dropped beyond this. */
export const QCOW2_L2_CACHE_TABLES = 64;

const INCOMPAT_DIRTY = 1n;
const INCOMPAT_CORRUPT = 2n;
const INCOMPAT_EXTERNAL_DATA = 4n;
const INCOMPAT_COMPRESSION_TYPE = 8n;
const INCOMPAT_EXTENDED_L2 = 16n;
const EXT_BACKING_FORMAT = 0xe2792aca;
const OFFSET_MASK = 0x00fffffffffffe00n;

export class Qcow2Source implements BlockSource {
  readonly size: number;
  private clusterBits: number;
  private clusterSize: number;
  private l1: BigUint64Array;
  private l2Cache = new Map<number, BigUint64Array>();
  private zstd: boolean;
  private backing?: BlockSource;
  private lastCompressed?: { entry: bigint; data: Uint8Array };

  constructor(
    readonly name: string,
    private file: BlockSource,
    /** Opens a backing file by path (injected to avoid an import cycle with open.ts). */
    openBacking: (path: string, format: string | undefined) => BlockSource,
  ) {
    const fail = (what: string) => new FdeError(`${name}: ${what}; the qcow2 image is corrupt or crafted.`);
    const first = file.read(0, Math.min(file.size, 512));
    if (first.length < 72 || be32(first, 0) !== QCOW2_MAGIC)
      throw new FdeError(`${name} is not a qcow2 image`);
    const version = be32(first, 4);
    if (version !== 2 && version !== 3) throw new FdeError(`${name}: unsupported qcow2 version ${version}`);
    this.clusterBits = be32(first, 20);
    if (this.clusterBits < 9 || this.clusterBits > 21) {
      throw new FdeError(`${name}: invalid qcow2 cluster_bits ${this.clusterBits}`);
    }
    this.clusterSize = 2 ** this.clusterBits;
    // The header, its extensions and the backing file name all live in the first cluster.
    const h = file.read(0, Math.min(file.size, this.clusterSize));
    this.size = be64(h, 24);
    if (!Number.isSafeInteger(this.size))
      throw fail(`qcow2 header field size (${this.size}) is out of range`);
    if (be32(h, 32) !== 0) {
      throw new FdeError(`${name} is an encrypted qcow2 image; decrypt it first (qemu-img convert).`);
    }
    let headerLength = 72;
    let incompat = 0n;
    let compressionType = 0;
    if (version === 3) {
      if (h.length < 104) throw fail(`qcow2 version 3 header is truncated (${h.length} bytes)`);
      incompat = (BigInt(be32(h, 72)) << 32n) | BigInt(be32(h, 76));
      headerLength = be32(h, 100);
      if (headerLength < 104 || headerLength > h.length || headerLength % 8 !== 0) {
        throw fail(`qcow2 header_length ${headerLength} is outside 104..${h.length} or not a multiple of 8`);
      }
      if (headerLength > 104) compressionType = h[104]!;
    }
    if (incompat & INCOMPAT_CORRUPT)
      throw new FdeError(`${name}: qcow2 image is marked corrupt; run qemu-img check.`);
    if (incompat & INCOMPAT_DIRTY) {
      throw new FdeError(
        `${name}: qcow2 image has unflushed refcounts (dirty bit set, e.g. a VM still running or killed); run 'qemu-img check -r all' on a copy.`,
      );
    }
    if (incompat & INCOMPAT_EXTERNAL_DATA)
      throw new FdeError(`${name}: qcow2 images with an external data file are not supported`);
    if (incompat & INCOMPAT_EXTENDED_L2)
      throw new FdeError(`${name}: qcow2 images with extended L2 entries (subclusters) are not supported`);
    if (!(incompat & INCOMPAT_COMPRESSION_TYPE)) compressionType = 0;
    if (compressionType > 1) throw new FdeError(`${name}: unknown qcow2 compression type ${compressionType}`);
    this.zstd = compressionType === 1;

    // Header extensions: each length is checked against the header cluster before it is used.
    let backingFormat: string | undefined;
    for (let o = headerLength; o + 8 <= h.length; ) {
      const type = be32(h, o);
      const len = be32(h, o + 4);
      if (type === 0) break;
      if (len > h.length - o - 8) {
        throw new FdeError(
          `${name}: qcow2 header extension at byte ${o} has length ${len}, beyond the header cluster (${h.length} bytes); the image is corrupt or crafted.`,
        );
      }
      if (type === EXT_BACKING_FORMAT) backingFormat = escapeText(ascii(h, o + 8, o + 8 + Math.min(len, 32)));
      o += 8 + Math.ceil(len / 8) * 8;
    }

    // The L1 table: only the entries the virtual size needs are read, and qemu's maximum applies.
    const l1Size = be32(h, 36);
    const l1Offset = be64(h, 40);
    const perL2 = this.clusterSize / 8;
    const needed = Math.ceil(this.size / (this.clusterSize * perL2));
    if (needed * 8 > QCOW2_MAX_L1_BYTES) {
      throw fail(
        `qcow2 virtual size ${this.size} needs an L1 table of ${needed} entries, beyond qemu's maximum`,
      );
    }
    if (l1Size < needed) {
      throw fail(
        `qcow2 header field l1_size (${l1Size}) is too small for the virtual size ${this.size} (needs ${needed})`,
      );
    }
    if (l1Offset % this.clusterSize !== 0 || l1Offset + needed * 8 > file.size) {
      throw fail(`qcow2 header field l1_table_offset (${l1Offset}) is unaligned or past the end of the file`);
    }
    this.l1 = readBe64Array(file.read(l1Offset, needed * 8), needed);

    const backingOffset = be64(h, 8);
    if (backingOffset !== 0) {
      const nameLength = be32(h, 16);
      if (nameLength === 0 || nameLength > QCOW2_MAX_BACKING_NAME || backingOffset + nameLength > h.length) {
        throw fail(
          `qcow2 backing file name (${nameLength} bytes at byte ${backingOffset}) is empty, longer than ${QCOW2_MAX_BACKING_NAME} bytes or outside the header cluster`,
        );
      }
      const backingName = new TextDecoder().decode(h.subarray(backingOffset, backingOffset + nameLength));
      if (backingName.includes("\0") || /^[a-z][a-z0-9+.-]*:/i.test(backingName)) {
        throw new FdeError(
          `${name}: backing file name '${escapeText(backingName)}' is not a plain file path (protocols such as nbd: or http: are not supported)`,
        );
      }
      // qemu resolves a relative backing name against the directory of the image naming it.
      const path = isAbsolute(backingName) ? backingName : resolve(dirname(name), backingName);
      try {
        this.backing = openBacking(path, backingFormat);
      } catch (err) {
        // Deeper levels name their own file: wrapping each level would repeat the chain per link.
        if (err instanceof FdeError) throw err;
        throw new FdeError(`${name}: cannot open its backing file ${escapeText(path)}`, { cause: err });
      }
    }
  }

  read(offset: number, length: number): Uint8Array {
    checkRange(this, offset, length);
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const pos = offset + done;
      const inCluster = pos % this.clusterSize;
      const cluster = Math.floor(pos / this.clusterSize);
      const entry = this.l2Entry(cluster);
      let n = Math.min(length - done, this.clusterSize - inCluster);
      const host = entry === undefined ? 0 : Number(entry & OFFSET_MASK);
      if (entry !== undefined && entry & (1n << 62n)) {
        out.set(this.compressedCluster(entry).subarray(inCluster, inCluster + n), done);
      } else if (entry !== undefined && entry & 1n) {
        // zero cluster: `out` is already zeroed
      } else if (host === 0) {
        this.readBacking(pos, out.subarray(done, done + n));
      } else {
        // Consecutive guest clusters usually sit back to back in the file: read them in one go.
        let next = cluster + 1;
        while (done + n < length) {
          const e = this.l2Entry(next);
          if (e === undefined || e & (1n << 62n) || e & 1n) break;
          if (Number(e & OFFSET_MASK) !== host + (next - cluster) * this.clusterSize) break;
          n = Math.min(length - done, n + this.clusterSize);
          next++;
        }
        const target = out.subarray(done, done + n);
        if (this.file instanceof FileSource) this.file.readInto(host + inCluster, target);
        else target.set(this.file.read(host + inCluster, n));
      }
      done += n;
    }
    return out;
  }

  private readBacking(pos: number, into: Uint8Array): void {
    if (!this.backing || pos >= this.backing.size) return;
    const n = Math.min(into.length, this.backing.size - pos);
    into.set(this.backing.read(pos, n));
  }

  /** The L2 entry for a guest cluster, or undefined when no L2 table covers it. */
  private l2Entry(cluster: number): bigint | undefined {
    const perTable = this.clusterSize / 8;
    const l1Index = Math.floor(cluster / perTable);
    const l1e = this.l1[l1Index];
    if (l1e === undefined) return undefined;
    const l2Offset = Number(l1e & OFFSET_MASK);
    if (l2Offset === 0) return undefined;
    let table = this.l2Cache.get(l2Offset);
    if (!table) {
      if (l2Offset % this.clusterSize !== 0) {
        throw new FdeError(
          `${this.name}: L1 entry ${l1Index} points to an unaligned L2 table at byte ${l2Offset}; the qcow2 image is corrupt.`,
        );
      }
      table = readBe64Array(this.file.read(l2Offset, this.clusterSize), perTable);
      if (this.l2Cache.size >= QCOW2_L2_CACHE_TABLES) this.l2Cache.delete(this.l2Cache.keys().next().value!);
      this.l2Cache.set(l2Offset, table);
    }
    return table[cluster % perTable]!;
  }

  private compressedCluster(entry: bigint): Uint8Array {
    if (this.lastCompressed?.entry === entry) return this.lastCompressed.data;
    const offsetBits = BigInt(62 - (this.clusterBits - 8));
    const hostOffset = Number(entry & ((1n << offsetBits) - 1n));
    const sectors = Number((entry >> offsetBits) & ((1n << (62n - offsetBits)) - 1n));
    if (hostOffset >= this.file.size) {
      throw new FdeError(
        `${this.name}: a compressed cluster starts at byte ${hostOffset}, past the end of the file (${this.file.size} bytes); the qcow2 image is corrupt.`,
      );
    }
    // The sector count field is at most clusterSize/256 wide, so this is bounded by 2 clusters.
    const compressedLength = Math.min((sectors + 1) * 512 - (hostOffset % 512), this.file.size - hostOffset);
    const raw = this.file.read(hostOffset, compressedLength);
    let data: Uint8Array;
    try {
      // The stored length is rounded up to sectors, so trailing bytes follow the stream. A cluster
      // decompresses to at most one cluster: the cap stops a bomb before it is allocated.
      const cap = { maxOutputLength: this.clusterSize };
      data = this.zstd
        ? zstdDecompressSync(raw.subarray(0, zstdFrameLength(raw)), cap)
        : inflateRawSync(raw, { finishFlush: 2 /* Z_SYNC_FLUSH */, ...cap });
    } catch (err) {
      throw new FdeError(
        `${this.name}: a ${this.zstd ? "zstd" : "zlib"}-compressed cluster at host offset ${hostOffset} does not decompress; the image is corrupt.`,
        { cause: err },
      );
    }
    if (data.length < this.clusterSize) {
      const full = new Uint8Array(this.clusterSize);
      full.set(data);
      data = full;
    }
    this.lastCompressed = { entry, data };
    return data;
  }

  close(): void {
    this.backing?.close();
    this.file.close();
  }
}

/**
 * Length of the zstd frame at the start of `b`. qemu stores whole sectors, and the decoder rejects
 * the trailing bytes as a second frame, so the frame is cut out by walking its block headers.
 */
function zstdFrameLength(b: Uint8Array): number {
  const fhd = b[4]!;
  const singleSegment = (fhd >> 5) & 1;
  const fcsSize = [singleSegment, 2, 4, 8][fhd >> 6]!;
  let o = 5 + (singleSegment ? 0 : 1) + [0, 1, 2, 4][fhd & 3]! + fcsSize;
  for (;;) {
    if (o + 3 > b.length) return b.length;
    const header = b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16);
    const type = (header >> 1) & 3;
    o += 3 + (type === 1 ? 1 : header >> 3);
    if (header & 1) break;
  }
  return Math.min(b.length, o + ((fhd >> 2) & 1 ? 4 : 0));
}

function readBe64Array(bytes: Uint8Array, count: number): BigUint64Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new BigUint64Array(count);
  for (let i = 0; i < count; i++) out[i] = view.getBigUint64(i * 8, false);
  return out;
}
