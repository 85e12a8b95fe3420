/**
 * ext2/3/4 reader: extent trees and the old indirect block maps, linear and htree directories
 * (an htree's index blocks look like empty entries, so a linear scan sees every name), fast and
 * slow symlinks, and small inline-data files.
 */
import { FdeError } from "../../errors.ts";
import {
  DIRECTORY_MAX_BYTES,
  DirectoryClaims,
  FILE_MAX_BYTES,
  type FsNode,
  type NodeKind,
  SYMLINK_MAX_BYTES,
  type Volume,
} from "./fs.ts";
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
/** ext4's own limit on extent tree depth (EXT4_MAX_EXTENT_DEPTH). */
export const EXT4_MAX_EXTENT_DEPTH = 5;
/** Extents and tree nodes allowed beyond one per block of the file (fallocate past EOF). */
const EXTENT_SLACK = 64;
/** Largest block size accepted (log_block_size <= 6, 64 KiB, as the kernel allows). */
const MAX_LOG_BLOCK_SIZE = 6;

/** Where the primary superblock starts on the device, and its length. */
export const EXT4_SUPERBLOCK_OFFSET = 1024;
export const EXT4_SUPERBLOCK_BYTES = 1024;

/** True if `sb` (1024 bytes read at offset 1024) is an ext2/3/4 superblock. */
export function isExt4(sb: Uint8Array): boolean {
  return sb.length >= EXT4_SUPERBLOCK_BYTES && u16(sb, 56) === EXT4_MAGIC;
}

/**
 * The filesystem's size in bytes from its superblock (s_blocks_count, with its high half when
 * the 64bit feature is set, times the block size), or undefined when `sb` is not an ext2/3/4
 * superblock with a block size the kernel accepts. The boot stage uses it to find how far an
 * overlayfs delta's filesystem reaches on a grown device.
 */
export function ext4SizeBytes(sb: Uint8Array): number | undefined {
  if (!isExt4(sb)) return undefined;
  const logBlockSize = u32(sb, 24);
  if (logBlockSize > MAX_LOG_BLOCK_SIZE) return undefined;
  const hi = u32(sb, 96) & INCOMPAT_64BIT ? u32(sb, 0x150) : 0;
  return (hi * 2 ** 32 + u32(sb, 4)) * (1024 << logBlockSize);
}

export class Ext4Volume implements Volume<Ext4Node> {
  private blockSize: number;
  private inodesPerGroup: number;
  private inodeSize: number;
  private descSize: number;
  private gdtOffset: number;
  private groupDescCache = new Map<number, number>();
  private inodeCount: number;
  private groupCount: number;
  private claims: DirectoryClaims;

  constructor(
    readonly name: string,
    private dev: BlockSource,
  ) {
    const sb = dev.read(1024, 1024);
    if (!isExt4(sb)) throw new FdeError(`${name} is not an ext2/3/4 filesystem`);
    const bad = (what: string) =>
      new FdeError(`${name}: ext4 superblock ${what}; the filesystem is corrupt or crafted.`);
    const logBlockSize = u32(sb, 24);
    if (logBlockSize > MAX_LOG_BLOCK_SIZE) throw bad(`field s_log_block_size is ${logBlockSize}`);
    this.blockSize = 1024 << logBlockSize;
    this.inodeCount = u32(sb, 0);
    this.inodesPerGroup = u32(sb, 40);
    if (this.inodesPerGroup === 0) throw bad("field s_inodes_per_group is 0");
    this.groupCount = Math.ceil(this.inodeCount / this.inodesPerGroup);
    this.inodeSize = u32(sb, 76) === 0 ? 128 : u16(sb, 88);
    if (
      this.inodeSize < 128 ||
      this.inodeSize > this.blockSize ||
      (this.inodeSize & (this.inodeSize - 1)) !== 0
    )
      throw bad(`field s_inode_size is ${this.inodeSize}`);
    const incompat = u32(sb, 96);
    this.descSize = incompat & INCOMPAT_64BIT ? u16(sb, 254) || 64 : 32;
    if (this.descSize < 32 || this.descSize > 1024 || (this.descSize & (this.descSize - 1)) !== 0)
      throw bad(`field s_desc_size is ${this.descSize}`);
    this.gdtOffset = (u32(sb, 20) + 1) * this.blockSize;
    this.claims = new DirectoryClaims(name, 2);
  }

  private inodeTable(group: number): number {
    if (group >= this.groupCount)
      throw new FdeError(`${this.name}: block group ${group} does not exist; the filesystem is corrupt.`);
    let block = this.groupDescCache.get(group);
    if (block === undefined) {
      const d = this.dev.read(this.gdtOffset + group * this.descSize, this.descSize);
      block = u32(d, 8) + (this.descSize >= 64 ? u32(d, 0x28) * 0x100000000 : 0);
      this.groupDescCache.set(group, block);
    }
    return block;
  }

  private inode(ino: number): Ext4Node {
    if (ino < 1 || ino > this.inodeCount) {
      throw new FdeError(
        `${this.name}: a directory entry names inode ${ino}, outside 1..${this.inodeCount}; the filesystem is corrupt or crafted.`,
      );
    }
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
    if (node.flags & EXTENTS_FL) {
      // Every extent and every tree node covers at least one block of the file, so a sane tree
      // has no more nodes than blocks (plus slack for blocks preallocated past the end): the
      // budget stops fan-out that points many entries at one shared node.
      const blocks = Math.ceil(node.size / this.blockSize) + EXTENT_SLACK;
      const budget = { nodes: blocks, extents: blocks };
      const root = u16(node.iblock, 6);
      if (root > EXT4_MAX_EXTENT_DEPTH) throw this.corruptExtents(node, `depth ${root}`);
      this.extentRuns(node, node.iblock, runs, root, budget);
    } else this.blockMapRuns(node, runs);
    return runs;
  }

  private corruptExtents(node: Ext4Node, what: string): FdeError {
    return new FdeError(
      `${this.name}: inode ${node.ino} has a corrupt extent tree (${what}); the filesystem is corrupt or crafted.`,
    );
  }

  private extentRuns(
    node: Ext4Node,
    header: Uint8Array,
    runs: [number, number, number][],
    expectedDepth: number,
    budget: { nodes: number; extents: number },
  ): void {
    if (u16(header, 0) !== EXTENT_MAGIC) throw this.corruptExtents(node, "bad magic");
    const entries = u16(header, 2);
    const depth = u16(header, 6);
    // Each level is one less deep than its parent: no node can point back up the tree.
    if (depth !== expectedDepth)
      throw this.corruptExtents(node, `depth ${depth} where ${expectedDepth} belongs`);
    if (12 + entries * 12 > header.length) throw this.corruptExtents(node, `${entries} entries in a node`);
    if (--budget.nodes < 0) throw this.corruptExtents(node, "more tree nodes than the file has blocks");
    for (let i = 0; i < entries; i++) {
      const e = 12 + i * 12;
      if (depth === 0) {
        let len = u16(header, e + 4);
        const uninitialized = len > 32768;
        if (uninitialized) len -= 32768;
        if (--budget.extents < 0) throw this.corruptExtents(node, "more extents than the file has blocks");
        const start = u32(header, e + 8) + u16(header, e + 6) * 0x100000000;
        runs.push([u32(header, e), uninitialized ? 0 : start, len]);
      } else {
        const leaf = u32(header, e + 4) + u16(header, e + 8) * 0x100000000;
        this.extentRuns(node, this.dev.read(leaf * this.blockSize, this.blockSize), runs, depth - 1, budget);
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

  readFile(node: Ext4Node, maxBytes = FILE_MAX_BYTES): Uint8Array {
    if (node.size > maxBytes) {
      throw new FdeError(
        `${this.name}: inode ${node.ino} is ${node.size} bytes, larger than the ${maxBytes}-byte limit for this read; the filesystem is corrupt or crafted.`,
      );
    }
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
    const data = this.readFile(dir, DIRECTORY_MAX_BYTES);
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

  /** The inode an entry names; a directory must have this one parent (see DirectoryClaims). */
  private child(dir: Ext4Node, e: { name: string; ino: number }): Ext4Node {
    const node = this.inode(e.ino);
    if (node.kind === "dir" && e.name !== "." && e.name !== "..") this.claims.claim(e.ino, dir.ino, e.name);
    return node;
  }

  list(dir: Ext4Node): { name: string; node: Ext4Node }[] {
    return this.entries(dir).map((e) => ({ name: e.name, node: this.child(dir, e) }));
  }

  lookup(dir: Ext4Node, name: string): Ext4Node | undefined {
    const hit = this.entries(dir).find((e) => e.name === name);
    return hit && this.child(dir, hit);
  }

  readLink(node: Ext4Node): string {
    if (node.size > SYMLINK_MAX_BYTES) {
      throw new FdeError(
        `${this.name}: symbolic link inode ${node.ino} is ${node.size} bytes, longer than ${SYMLINK_MAX_BYTES}`,
      );
    }
    const fast = !(node.flags & (EXTENTS_FL | INLINE_DATA_FL)) && node.size < 60;
    const bytes = fast ? node.iblock.subarray(0, node.size) : this.readFile(node);
    return new TextDecoder().decode(bytes);
  }
}
