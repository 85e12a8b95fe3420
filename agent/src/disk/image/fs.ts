/**
 * The file-tree view the reference-value code consumes, built either on an image filesystem
 * reader (FAT, ext4) or on a host directory (the running system's /boot). Path resolution and
 * symlink following live here once, for every filesystem.
 */
import { lstatSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { FdeError } from "../../errors.ts";
import { escapeText } from "../../escape.ts";

/**
 * Largest file read out of an image (kernels, initrds, UKIs, grub.cfg): a crafted inode or
 * directory entry can declare any size, and the whole file is held in memory.
 */
export const FILE_MAX_BYTES = 512 << 20;
/** Largest directory read (FAT allows 2 MiB; /boot and the ESP hold a handful of entries). */
export const DIRECTORY_MAX_BYTES = 16 << 20;
/** Longest symlink target followed (PATH_MAX). */
export const SYMLINK_MAX_BYTES = 4096;

/**
 * A directory has exactly one parent entry: a second (parent, name) naming it, or any entry naming
 * the root, makes the tree a graph whose walks never end (N entries per level pointing back up).
 */
export class DirectoryClaims {
  private owners = new Map<number, string>();
  constructor(
    private volume: string,
    private rootId: number,
  ) {}

  claim(child: number, parent: number, name: string): void {
    const owner = `${parent}/${name}`;
    const previous = this.owners.get(child);
    if (child === this.rootId || (previous !== undefined && previous !== owner)) {
      throw new FdeError(
        `${this.volume}: directory entry '${escapeText(name)}' points to a directory that already has another parent (a directory cycle or cross-link); the filesystem is corrupt or crafted.`,
      );
    }
    this.owners.set(child, owner);
  }
}

export type NodeKind = "file" | "dir" | "symlink" | "other";

export interface FsNode {
  kind: NodeKind;
  size: number;
}

/** What one filesystem reader implements; names are raw directory-entry names. */
export interface Volume<N extends FsNode> {
  readonly name: string;
  root(): N;
  list(dir: N): { name: string; node: N }[];
  /** Look a name up in a directory (FAT compares case-insensitively). */
  lookup(dir: N, name: string): N | undefined;
  readLink(node: N): string;
  readFile(node: N): Uint8Array;
}

export interface DirEntry {
  name: string;
  kind: NodeKind;
}

/** Absolute paths, "/" separated, symlinks followed (targets resolved against this tree's root). */
export interface FileTree {
  readonly name: string;
  kind(path: string): NodeKind | undefined;
  readFile(path: string): Uint8Array;
  list(path: string): DirEntry[];
}

const MAX_SYMLINKS = 40;

function components(path: string): string[] {
  return path.split("/").filter((c) => c !== "" && c !== ".");
}

export function volumeTree<N extends FsNode>(volume: Volume<N>): FileTree {
  /** Resolve to a node, following symlinks in every component (and the last one too). */
  const resolve = (path: string): N | undefined => {
    let budget = MAX_SYMLINKS;
    const walk = (start: N[], parts: string[]): N[] | undefined => {
      const stack = [...start];
      for (const part of parts) {
        const dir = stack[stack.length - 1]!;
        if (part === "..") {
          if (stack.length > 1) stack.pop();
          continue;
        }
        if (dir.kind !== "dir") return undefined;
        const node = volume.lookup(dir, part);
        if (!node) return undefined;
        if (node.kind === "symlink") {
          if (--budget < 0)
            throw new FdeError(`${volume.name}: too many levels of symbolic links in ${escapeText(path)}`);
          const target = volume.readLink(node);
          const base = target.startsWith("/") ? [volume.root()] : stack;
          const resolved = walk(base, components(target));
          if (!resolved) return undefined;
          stack.length = 0;
          stack.push(...resolved);
          continue;
        }
        stack.push(node);
      }
      return stack;
    };
    const stack = walk([volume.root()], components(path));
    return stack?.[stack.length - 1];
  };
  return {
    name: volume.name,
    kind: (path) => resolve(path)?.kind,
    readFile(path) {
      const node = resolve(path);
      if (node?.kind !== "file")
        throw new FdeError(`${volume.name}: ${escapeText(path)} is not a regular file`);
      if (node.size > FILE_MAX_BYTES) {
        throw new FdeError(
          `${volume.name}: ${escapeText(path)} is ${node.size} bytes, larger than the ${FILE_MAX_BYTES}-byte limit for a boot file; the filesystem is corrupt or crafted.`,
        );
      }
      return volume.readFile(node);
    },
    list(path) {
      const node = resolve(path);
      if (node?.kind !== "dir") throw new FdeError(`${volume.name}: ${escapeText(path)} is not a directory`);
      return volume
        .list(node)
        .filter((e) => e.name !== "." && e.name !== "..")
        .map((e) => ({ name: e.name, kind: e.node.kind }));
    },
  };
}

/**
 * A host directory as a FileTree (the running system). Symlinks are resolved inside `root`, as
 * GRUB would see them on that filesystem, not through the host's mount namespace.
 */
export function hostTree(root: string): FileTree {
  interface HostNode extends FsNode {
    path: string;
  }
  const node = (path: string): HostNode => {
    const st = lstatSync(path);
    const kind: NodeKind = st.isSymbolicLink()
      ? "symlink"
      : st.isDirectory()
        ? "dir"
        : st.isFile()
          ? "file"
          : "other";
    return { path, kind, size: st.size };
  };
  return volumeTree<HostNode>({
    name: root,
    root: () => node(root),
    list: (dir) => readdirSync(dir.path).map((name) => ({ name, node: node(join(dir.path, name)) })),
    lookup: (dir, name) => {
      try {
        return node(join(dir.path, name));
      } catch {
        return undefined;
      }
    },
    readLink: (n) => readlinkSync(n.path),
    readFile: (n) => readFileSync(n.path),
  });
}

/** The subtree below `dir` of another tree (e.g. the /boot directory of a root filesystem). */
export function subTree(tree: FileTree, dir: string): FileTree {
  const full = (p: string) => `${dir}/${components(p).join("/")}`;
  return {
    name: `${tree.name}:${dir}`,
    kind: (p) => tree.kind(full(p)),
    readFile: (p) => tree.readFile(full(p)),
    list: (p) => tree.list(full(p)),
  };
}
