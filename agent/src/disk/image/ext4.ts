/**
 * ext2/3/4 reader: extent trees and the old indirect block maps, linear and htree directories
 * (an htree's index blocks look like empty entries, so a linear scan sees every name), fast and
 * slow symlinks, and small inline-data files.
 */
import { FdeError } from "../../errors.ts";
import type { FsNode, NodeKind, Volume } from "./fs.ts";
import { type BlockSource, u16, u32 } from "./source.ts";

interface Ext4Node extends FsNode {
  ino: number;
  flags: number;
  iblock: Uint8Array;
}

const EXT4_MAGIC = 0xef53;
const INCOMPAT_64BIT = 0x80;
const EXTENTS_FL = 0x80000;
const INLINE_DATA_FL = 0x10000000;
const EXTENT_MAGIC = 0xf30a;

/** True if `sb` (1024 bytes read at offset 1024) is an ext2/3/4 superblock. */
export function isExt4(sb: Uint8Array): boolean {
  return u16(sb, 56) === EXT4_MAGIC;
}

export class Ext4Volume implements Volume<Ext4Node> {
  private blockSize: number;
  private inodesPerGroup: number;
  private inodeSize: number;
  private descSize: number;
  private gdtOffset: number;
  private groupDescCache = new Map<number, number>();

  constructor(
    readonly name: string,
    private dev: BlockSource,
  ) {
    const sb = dev.read(1024, 1024);
    if (!isExt4(sb)) throw new FdeError(`${name} is not an ext2/3/4 filesystem`);
    this.blockSize = 1024 << u32(sb, 24);
    this.inodesPerGroup = u32(sb, 40);
    this.inodeSize = u32(sb, 76) === 0 ? 128 : u16(sb, 88);
    const incompat = u32(sb, 96);
    this.descSize = incompat & INCOMPAT_64BIT ? u16(sb, 254) || 64 : 32;
    this.gdtOffset = (u32(sb, 20) + 1) * this.blockSize;
  }

  private inodeTable(group: number): number {
    let block = this.groupDescCache.get(group);
    if (block === undefined) {
      const d = this.dev.read(this.gdtOffset + group * this.descSize, this.descSize);
      block = u32(d, 8) + (this.descSize >= 64 ? u32(d, 0x28) * 0x100000000 : 0);
      this.groupDescCache.set(group, block);
    }
    return block;
  }

  private inode(ino: number): Ext4Node {
    const group = Math.floor((ino - 1) / this.inodesPerGroup);
    const index = (ino - 1) % this.inodesPerGroup;
    const raw = this.dev.read(this.inodeTable(group) * this.blockSize + index * this.inodeSize, 160);
    const mode = u16(raw, 0);
    const type = mode & 0xf000;
    const kind: NodeKind =
      type === 0x8000 ? "file" : type === 0x4000 ? "dir" : type === 0xa000 ? "symlink" : "other";
    return {
      ino,
      kind,
      size: u32(raw, 4) + u32(raw, 0x6c) * 0x100000000,
      flags: u32(raw, 0x20),
      iblock: raw.slice(0x28, 0x28 + 60),
    };
  }

  root(): Ext4Node {
    return this.inode(2);
  }

  /** Physical block runs covering the file, as [logical block, physical block (0 = hole), count]. */
  private runs(node: Ext4Node): [number, number, number][] {
    const runs: [number, number, number][] = [];
    if (node.flags & EXTENTS_FL) this.extentRuns(node.iblock, runs, 0);
    else this.blockMapRuns(node, runs);
    return runs;
  }

  private extentRuns(header: Uint8Array, runs: [number, number, number][], depthGuard: number): void {
    if (u16(header, 0) !== EXTENT_MAGIC || depthGuard > 8)
      throw new FdeError(`${this.name}: corrupt extent tree`);
    const entries = u16(header, 2);
    const depth = u16(header, 6);
    for (let i = 0; i < entries; i++) {
      const e = 12 + i * 12;
      if (depth === 0) {
        let len = u16(header, e + 4);
        const uninitialized = len > 32768;
        if (uninitialized) len -= 32768;
        const start = u32(header, e + 8) + u16(header, e + 6) * 0x100000000;
        runs.push([u32(header, e), uninitialized ? 0 : start, len]);
      } else {
        const leaf = u32(header, e + 4) + u16(header, e + 8) * 0x100000000;
        this.extentRuns(this.dev.read(leaf * this.blockSize, this.blockSize), runs, depthGuard + 1);
      }
    }
  }

  /** ext2/3 block map: 12 direct pointers, then single, double and triple indirect blocks. */
  private blockMapRuns(node: Ext4Node, runs: [number, number, number][]): void {
    const total = Math.ceil(node.size / this.blockSize);
    const perBlock = this.blockSize / 4;
    let logical = 0;
    const emit = (phys: number) => {
      if (logical < total) runs.push([logical, phys, 1]);
      logical++;
    };
    const indirect = (block: number, level: number) => {
      const span = perBlock ** level;
      if (block === 0) {
        logical += span;
        return;
      }
      const table = this.dev.read(block * this.blockSize, this.blockSize);
      for (let i = 0; i < perBlock && logical < total; i++) {
        const ptr = u32(table, i * 4);
        if (level === 1) emit(ptr);
        else indirect(ptr, level - 1);
      }
    };
    for (let i = 0; i < 12 && logical < total; i++) emit(u32(node.iblock, i * 4));
    for (let level = 1; level <= 3 && logical < total; level++)
      indirect(u32(node.iblock, 48 + (level - 1) * 4), level);
  }

  readFile(node: Ext4Node): Uint8Array {
    if (node.flags & INLINE_DATA_FL) {
      if (node.size > 60) {
        throw new FdeError(
          `${this.name}: inode ${node.ino} keeps more than 60 bytes of inline data, which is not supported`,
        );
      }
      return node.iblock.slice(0, node.size);
    }
    const out = new Uint8Array(node.size);
    for (const [logical, phys, count] of this.runs(node)) {
      const start = logical * this.blockSize;
      if (phys === 0 || start >= node.size) continue;
      const length = Math.min(count * this.blockSize, node.size - start);
      out.set(this.dev.read(phys * this.blockSize, length), start);
    }
    return out;
  }

  /** Directory entries as names and inode numbers, without reading each inode. */
  private entries(dir: Ext4Node): { name: string; ino: number }[] {
    const data = this.readFile(dir);
    const out: { name: string; ino: number }[] = [];
    const decoder = new TextDecoder();
    // Inline-data directories start with the parent inode number instead of "." and "..".
    for (let o = dir.flags & INLINE_DATA_FL ? 4 : 0; o + 8 <= data.length; ) {
      const ino = u32(data, o);
      const recLen = u16(data, o + 4);
      const nameLen = data[o + 6]!;
      if (recLen < 8) throw new FdeError(`${this.name}: corrupt directory entry in inode ${dir.ino}`);
      if (ino !== 0) out.push({ name: decoder.decode(data.subarray(o + 8, o + 8 + nameLen)), ino });
      o += recLen;
    }
    return out;
  }

  list(dir: Ext4Node): { name: string; node: Ext4Node }[] {
    return this.entries(dir).map((e) => ({ name: e.name, node: this.inode(e.ino) }));
  }

  lookup(dir: Ext4Node, name: string): Ext4Node | undefined {
    const hit = this.entries(dir).find((e) => e.name === name);
    return hit && this.inode(hit.ino);
  }

  readLink(node: Ext4Node): string {
    const fast = !(node.flags & (EXTENTS_FL | INLINE_DATA_FL)) && node.size < 60;
    const bytes = fast ? node.iblock.subarray(0, node.size) : this.readFile(node);
    return new TextDecoder().decode(bytes);
  }
}
