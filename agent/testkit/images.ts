/** Disk images for show-reference-value tests, made with sfdisk, mkfs.vfat + mcopy, mkfs.ext4 -d and dd. */
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { sh } from "./sh.ts";

export type Files = Record<string, Uint8Array | string | { symlink: string }>;

export function writeFiles(root: string, files: Files): void {
  for (const [path, content] of Object.entries(files)) {
    const full = join(root, path);
    mkdirSync(dirname(full), { recursive: true });
    if (typeof content === "object" && "symlink" in content) sh(["ln", "-sfn", content.symlink, full]);
    else writeFileSync(full, content);
  }
}

export function fatImage(path: string, sizeMiB: number, files: Files): string {
  const src = `${path}.d`;
  writeFiles(src, files);
  sh(["truncate", "-s", `${sizeMiB}M`, path]);
  sh(["mkfs.vfat", "-F", "32", path]);
  const top = readdirSync(src).map((f) => join(src, f));
  if (top.length > 0) sh(["mcopy", "-s", "-i", path, ...top, "::/"]);
  return path;
}

export function ext4Image(path: string, sizeMiB: number, files: Files): string {
  const src = `${path}.d`;
  mkdirSync(src, { recursive: true });
  writeFiles(src, files);
  sh(["mkfs.ext4", "-q", "-F", "-b", "4096", "-d", src, path, `${sizeMiB}M`]);
  return path;
}

export interface PartSpec {
  sizeMiB: number;
  /** sfdisk type: a GPT GUID, or an MBR hex byte. */
  type: string;
  name?: string;
  /** Filesystem image to copy into the partition. */
  image?: string;
}

/** A disk with the given partitions (GPT or MBR), each image copied to its partition's offset. */
export function diskImage(path: string, label: "gpt" | "dos", parts: PartSpec[]): string {
  const total = parts.reduce((n, p) => n + p.sizeMiB, 0) + 4;
  sh(["truncate", "-s", `${total}M`, path]);
  const lines = parts.map((p) => `size=${p.sizeMiB}MiB, type=${p.type}${p.name ? `, name="${p.name}"` : ""}`);
  sh(["sfdisk", "-q", path], `label: ${label}\n${lines.join("\n")}\n`);
  const table = JSON.parse(sh(["sfdisk", "-J", path])).partitiontable.partitions as { start: number }[];
  parts.forEach((p, i) => {
    if (p.image) copyToSector(p.image, path, table[i]!.start, { sparse: true });
  });
  return path;
}

/**
 * Copies the file `image` into `disk` from 512-byte sector `start` on, in place. `sparse` skips
 * the image's zero blocks: only for a disk that is still all zeros there.
 */
export function copyToSector(
  image: string,
  disk: string,
  start: number,
  opts: { sparse?: boolean } = {},
): void {
  const conv = opts.sparse ? "conv=notrunc,sparse" : "conv=notrunc";
  sh(["dd", `if=${image}`, `of=${disk}`, "bs=512", `seek=${start}`, conv, "status=none"]);
}

export const ESP_GPT = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
export const LINUX_GPT = "0FC63DAF-8483-4772-8E79-3D69E4C7DE9A";
