/** Recognise what a partition or LV holds, from its first sectors, and open it as a file tree. */
import { FdeError } from "../../errors.ts";
import { Ext4Volume, isExt4 } from "./ext4.ts";
import { FatVolume, isFat } from "./fat.ts";
import { type FileTree, volumeTree } from "./fs.ts";
import { isLvmPv } from "./lvm.ts";
import { ascii, type BlockSource } from "./source.ts";

export type Content = "vfat" | "ext4" | "lvm2" | "luks" | "verity" | "unknown";

export function probe(dev: BlockSource): Content {
  if (dev.size < 2048) return "unknown";
  const head = dev.read(0, 2048);
  if (ascii(head, 0, 6) === "LUKS\xba\xbe" || ascii(head, 0, 6) === "SKUL\xba\xbe") return "luks";
  if (ascii(head, 0, 8) === "verity\0\0") return "verity";
  if (isExt4(head.subarray(1024))) return "ext4";
  if (isFat(head)) return "vfat";
  if (isLvmPv(dev)) return "lvm2";
  return "unknown";
}

export function openTree(dev: BlockSource, content: Content): FileTree {
  if (content === "ext4") return volumeTree(new Ext4Volume(dev.name, dev));
  if (content === "vfat") return volumeTree(new FatVolume(dev.name, dev));
  throw new FdeError(`${dev.name} holds ${content}, not a filesystem this tool can read`);
}
