/** FAT12/16/32 reader (the EFI system partition): long file names, case-insensitive lookup. */
import { FdeError } from "../../errors.ts";
import { DIRECTORY_MAX_BYTES, DirectoryClaims, FILE_MAX_BYTES, type FsNode, type Volume } from "./fs.ts";
import { ascii, type BlockSource, u16, u32 } from "./source.ts";

interface FatNode extends FsNode {
  /** First cluster; 0 means the FAT12/16 fixed root directory (or an empty file). */
  cluster: number;
  isRoot: boolean;
}

const ATTR_LFN = 0x0f;
const ATTR_DIR = 0x10;
const ATTR_VOLUME = 0x08;
/**
 * The FAT is read in windows of this size on demand (a crafted BPB can declare a FAT of gigabytes);
 * at most FAT_CACHE_WINDOWS of them are kept.
 */
const FAT_WINDOW = 64 << 10;
const FAT_CACHE_WINDOWS = 64;

/** True if the first sector looks like a FAT boot sector with a sane BIOS parameter block. */
export function isFat(boot: Uint8Array): boolean {
  if (boot[510] !== 0x55 || boot[511] !== 0xaa) return false;
  const bps = u16(boot, 11);
  const spc = boot[13]!;
  return (
    [512, 1024, 2048, 4096].includes(bps) &&
    spc > 0 &&
    (spc & (spc - 1)) === 0 &&
    boot[16]! > 0 &&
    u16(boot, 14) > 0
  );
}

export class FatVolume implements Volume<FatNode> {
  private bytesPerCluster: number;
  private fatOffset: number;
  private fatType: 12 | 16 | 32;
  private rootDirOffset: number;
  private rootDirBytes: number;
  private rootCluster: number;
  private dataOffset: number;
  private clusterCount: number;
  private fatWindows = new Map<number, Uint8Array>();
  private fatBytes: number;
  private claims: DirectoryClaims;

  constructor(
    readonly name: string,
    private dev: BlockSource,
  ) {
    const b = dev.read(0, 512);
    if (!isFat(b)) throw new FdeError(`${name} is not a FAT filesystem`);
    const bps = u16(b, 11);
    this.bytesPerCluster = bps * b[13]!;
    const reserved = u16(b, 14);
    const fats = b[16]!;
    const rootEntries = u16(b, 17);
    const totalSectors = u16(b, 19) || u32(b, 32);
    const fatSectors = u16(b, 22) || u32(b, 36);
    this.fatOffset = reserved * bps;
    this.rootDirOffset = (reserved + fats * fatSectors) * bps;
    this.rootDirBytes = Math.ceil((rootEntries * 32) / bps) * bps;
    this.dataOffset = this.rootDirOffset + this.rootDirBytes;
    const bad = (what: string) =>
      new FdeError(`${name}: FAT boot sector ${what}; the filesystem is corrupt or crafted.`);
    if (totalSectors * bps > dev.size)
      throw bad(`declares ${totalSectors} sectors of ${bps} bytes, more than the ${dev.size}-byte partition`);
    if (fatSectors === 0) throw bad("declares a FAT of 0 sectors");
    if (this.dataOffset >= totalSectors * bps)
      throw bad(`places the data area (byte ${this.dataOffset}) past the end of the filesystem`);
    this.clusterCount = Math.floor((totalSectors * bps - this.dataOffset) / this.bytesPerCluster);
    // The FAT type is defined by the cluster count alone (Microsoft FAT specification).
    this.fatType = this.clusterCount < 4085 ? 12 : this.clusterCount < 65525 ? 16 : 32;
    this.fatBytes = fatSectors * bps;
    if (Math.ceil(((this.clusterCount + 2) * this.fatType) / 8) > this.fatBytes)
      throw bad(
        `declares ${this.clusterCount} clusters, more than its FAT of ${this.fatBytes} bytes can map`,
      );
    this.rootCluster = this.fatType === 32 ? u32(b, 44) : 0;
    if (this.fatType === 32 && (this.rootCluster < 2 || this.rootCluster >= this.clusterCount + 2))
      throw bad(`names root cluster ${this.rootCluster}, outside the filesystem`);
    this.claims = new DirectoryClaims(name, this.rootCluster);
  }

  /** `n` bytes of the FAT at `offset` (n <= 4), read window by window. */
  private fatByte(offset: number): number {
    const index = Math.floor(offset / FAT_WINDOW);
    let window = this.fatWindows.get(index);
    if (!window) {
      const start = index * FAT_WINDOW;
      window = this.dev.read(this.fatOffset + start, Math.min(FAT_WINDOW, this.fatBytes - start));
      if (this.fatWindows.size >= FAT_CACHE_WINDOWS)
        this.fatWindows.delete(this.fatWindows.keys().next().value!);
      this.fatWindows.set(index, window);
    }
    return window[offset - index * FAT_WINDOW]!;
  }

  root(): FatNode {
    return { kind: "dir", size: 0, cluster: this.rootCluster, isRoot: true };
  }

  private next(cluster: number): number {
    const le = (o: number, n: number) => {
      let v = 0;
      for (let i = n - 1; i >= 0; i--) v = v * 256 + this.fatByte(o + i);
      return v;
    };
    if (this.fatType === 32) return le(cluster * 4, 4) % 0x10000000;
    if (this.fatType === 16) return le(cluster * 2, 2);
    const v = le(Math.floor((cluster * 3) / 2), 2);
    return cluster & 1 ? v >> 4 : v & 0xfff;
  }

  /** The clusters of a chain, up to `maxBytes`; a chain that revisits a cluster is refused. */
  private chain(start: number, maxBytes: number): Uint8Array {
    const end = this.fatType === 32 ? 0x0ffffff8 : this.fatType === 16 ? 0xfff8 : 0xff8;
    const parts: Uint8Array[] = [];
    const seen = new Set<number>();
    let total = 0;
    for (let c = start; c >= 2 && c < end && total < maxBytes; c = this.next(c)) {
      if (c >= this.clusterCount + 2)
        throw new FdeError(`${this.name}: cluster chain points outside the filesystem (cluster ${c})`);
      if (seen.has(c))
        throw new FdeError(`${this.name}: cluster chain from cluster ${start} loops at cluster ${c}`);
      seen.add(c);
      parts.push(this.dev.read(this.dataOffset + (c - 2) * this.bytesPerCluster, this.bytesPerCluster));
      total += this.bytesPerCluster;
    }
    return Buffer.concat(parts, total);
  }

  list(dir: FatNode): { name: string; node: FatNode }[] {
    // A directory is at most DIRECTORY_MAX_BYTES (FAT itself allows 65536 entries, 2 MiB).
    const data = !dir.isRoot
      ? this.chain(dir.cluster, DIRECTORY_MAX_BYTES)
      : this.fatType === 32
        ? this.chain(this.rootCluster, DIRECTORY_MAX_BYTES)
        : this.dev.read(this.rootDirOffset, this.rootDirBytes);
    const dirId = dir.isRoot ? this.rootCluster : dir.cluster;
    const out: { name: string; node: FatNode }[] = [];
    let lfn: string[] = [];
    for (let o = 0; o + 32 <= data.length; o += 32) {
      const first = data[o]!;
      if (first === 0) break;
      const attr = data[o + 11]!;
      if (first === 0xe5) {
        lfn = [];
        continue;
      }
      if (attr === ATTR_LFN) {
        const seq = first & 0x1f;
        if (first & 0x40) lfn = [];
        lfn[seq - 1] = lfnChars(data, o);
        continue;
      }
      if (attr & ATTR_VOLUME) {
        lfn = [];
        continue;
      }
      const name = lfn.length > 0 ? lfn.join("") : shortName(data, o);
      lfn = [];
      const cluster = ((u16(data, o + 20) << 16) | u16(data, o + 26)) >>> 0;
      const isDir = (attr & ATTR_DIR) !== 0;
      // A subdirectory belongs to one parent: a second entry for it (or for the root) is a cycle.
      if (isDir && name !== "." && name !== "..") this.claims.claim(cluster || this.rootCluster, dirId, name);
      out.push({
        name,
        node: {
          kind: isDir ? "dir" : "file",
          size: u32(data, o + 28),
          cluster,
          isRoot: isDir && cluster === 0,
        },
      });
    }
    return out;
  }

  lookup(dir: FatNode, name: string): FatNode | undefined {
    const want = name.toLowerCase();
    return this.list(dir).find((e) => e.name.toLowerCase() === want)?.node;
  }

  readLink(): string {
    throw new FdeError(`${this.name}: FAT has no symbolic links`);
  }

  readFile(node: FatNode): Uint8Array {
    if (node.size === 0) return new Uint8Array(0);
    if (node.size > FILE_MAX_BYTES)
      throw new FdeError(
        `${this.name}: a file of ${node.size} bytes is larger than the ${FILE_MAX_BYTES}-byte limit`,
      );
    const data = this.chain(node.cluster, node.size);
    if (data.length < node.size)
      throw new FdeError(`${this.name}: a file's cluster chain is shorter than its size`);
    return data.subarray(0, node.size);
  }
}

function lfnChars(d: Uint8Array, o: number): string {
  let s = "";
  for (const off of [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30]) {
    const c = u16(d, o + off);
    if (c === 0 || c === 0xffff) break;
    s += String.fromCharCode(c);
  }
  return s;
}

/** 8.3 name, lower-cased where the NT case flags (byte 12) say so, as Linux and Windows show it. */
function shortName(d: Uint8Array, o: number): string {
  let base = ascii(d, o, o + 8).trimEnd();
  let ext = ascii(d, o + 8, o + 11).trimEnd();
  if (base.charCodeAt(0) === 0x05) base = `\u00e5${base.slice(1)}`;
  const flags = d[o + 12]!;
  if (flags & 0x08) base = base.toLowerCase();
  if (flags & 0x10) ext = ext.toLowerCase();
  return ext ? `${base}.${ext}` : base;
}
