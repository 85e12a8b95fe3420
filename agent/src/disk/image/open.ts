/** Open a disk image or block device as a BlockSource, recognising qcow2 by its magic. */
import { FdeError } from "../../errors.ts";
import { escapeText } from "../../escape.ts";
import { QCOW2_MAGIC, Qcow2Source } from "./qcow2.ts";
import { type BlockSource, be32, FileSource } from "./source.ts";

/**
 * Longest backing chain followed (the image itself is level 0). Real chains are a base image and a
 * few snapshots; an attacker's chain of thousands would cost a file descriptor each.
 */
export const MAX_BACKING_DEPTH = 16;

/** What a backing file is opened with: the chain so far, to bound it and refuse cycles. */
interface Chain {
  /** "dev:ino" of every image in the chain above. */
  seen: Set<string>;
  depth: number;
  /** Owner of the top image: a backing file another user keeps private is refused (see below). */
  topUid: number;
  names: string[];
}

/** `format` is a qcow2 backing-format name ("raw", "qcow2") when known; otherwise the magic decides. */
export function openImage(path: string, format?: string): BlockSource {
  return openLevel(path, format, undefined);
}

function openLevel(path: string, format: string | undefined, chain: Chain | undefined): BlockSource {
  // Backing files named inside an image are regular files only (qemu's file protocol), never a
  // device, FIFO or directory the host planted; the image the user names may be a block device.
  const file = new FileSource(path, { regularOnly: chain !== undefined });
  try {
    const id = `${file.stat.dev}:${file.stat.ino}`;
    const names = [...(chain?.names ?? []), path];
    if (chain) {
      const st = file.stat;
      if (chain.seen.has(id)) {
        throw new FdeError(
          `${escapeText(names[0]!)}: its backing chain loops (${names.map(escapeText).join(" -> ")}); refusing a cyclic backing chain.`,
        );
      }
      if (chain.depth > MAX_BACKING_DEPTH) {
        throw new FdeError(
          `${escapeText(names[0]!)}: its backing chain is longer than ${MAX_BACKING_DEPTH} images (at ${escapeText(path)}); refusing it.`,
        );
      }
      // An image cannot be used to read another user's private file (say /etc/shadow as a raw
      // "backing file" of a crafted image handed to root): such a backing file must be owned by
      // the top image's owner, or readable by everyone.
      if (st.uid !== chain.topUid && (st.mode & 0o004) === 0) {
        throw new FdeError(
          `${escapeText(names.at(-2)!)}: its backing file ${escapeText(path)} belongs to uid ${st.uid} and is not world-readable, while the image belongs to uid ${chain.topUid}; refusing to read another user's private file through a backing reference.`,
        );
      }
    }
    const isQcow2 = file.size >= 4 && be32(file.read(0, 4), 0) === QCOW2_MAGIC;
    if (format === "qcow2" || (format === undefined && isQcow2)) {
      const next: Chain = {
        seen: new Set([...(chain?.seen ?? []), id]),
        depth: (chain?.depth ?? 0) + 1,
        topUid: chain?.topUid ?? file.stat.uid,
        names,
      };
      return new Qcow2Source(path, file, (p, f) => openLevel(p, f, next));
    }
    if (format !== undefined && format !== "raw") {
      throw new FdeError(
        `${escapeText(path)}: image format '${format}' is not supported (only raw and qcow2)`,
      );
    }
    return file;
  } catch (err) {
    file.close();
    throw err;
  }
}
