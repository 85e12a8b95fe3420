/**
 * Find the ESP and /boot on a disk image or block device, reading it directly (no nbd, no mount,
 * no root): the partition table, then each partition's first sectors, then LVM LVs if /boot lives
 * inside the root filesystem.
 */

import type { FileTree } from "../disk/image/fs.ts";
import { subTree } from "../disk/image/fs.ts";
import { readLogicalVolumes } from "../disk/image/lvm.ts";
import { isEsp, type Partition, partitionSource, readPartitions } from "../disk/image/partitions.ts";
import { type Content, openTree, probe } from "../disk/image/probe.ts";
import type { BlockSource } from "../disk/image/source.ts";
import { FdeError } from "../errors.ts";
import { escapeText } from "../escape.ts";
import type { BootLayout } from "./layout.ts";

/** A regular vmlinuz* file in `dir` (a root filesystem's top-level `vmlinuz` is only a symlink into /boot). */
const hasKernel = (tree: FileTree, dir: string) =>
  tree.kind(dir) === "dir" && tree.list(dir).some((e) => e.kind === "file" && e.name.startsWith("vmlinuz"));

/** GRUB's LVM device name: dashes inside VG and LV names are doubled, as in device-mapper names. */
const lvmDevice = (vg: string, lv: string) => `lvm/${vg.replace(/-/g, "--")}-${lv.replace(/-/g, "--")}`;

export function diskLayout(disk: BlockSource): BootLayout {
  const parts = readPartitions(disk).map((p) => {
    const source = partitionSource(disk, p);
    return { p, source, content: probe(source) };
  });
  const describe = () =>
    // Partition names are the image's bytes: escaped, so a name cannot carry terminal sequences.
    parts
      .map(({ p, content }) => `${p.number}: ${content}${p.name ? ` "${escapeText(p.name)}"` : ""}`)
      .join(", ") || "none";
  const grubName = (p: Partition) => `hd0,${p.scheme}${p.number}`;

  const fat = parts.filter((x) => x.content === "vfat");
  const espPart =
    fat.find((x) => isEsp(x.p)) ?? fat.find((x) => openTree(x.source, "vfat").kind("/EFI") === "dir");
  if (!espPart) {
    throw new FdeError(
      `${disk.name}: no EFI system partition (a FAT partition with an EFI directory) found; partitions: ${describe()}. show-reference-value needs a UEFI-bootable disk image.`,
    );
  }
  const esp = openTree(espPart.source, "vfat");
  const layout: BootLayout = { name: disk.name, esp };

  const ext4 = parts
    .filter((x) => x.content === "ext4")
    .map((x) => ({ ...x, tree: openTree(x.source, "ext4") }));
  // As upstream: the GPT partition named "boot", else any ext4 with a kernel at its top level.
  const bootPart = ext4.find((x) => x.p.name === "boot") ?? ext4.find((x) => hasKernel(x.tree, "/"));
  if (bootPart) {
    layout.boot = {
      tree: bootPart.tree,
      rootFs: bootPart.tree,
      separate: true,
      device: grubName(bootPart.p),
    };
    return layout;
  }
  // No /boot partition: /boot inside a root filesystem, on a partition or an LVM LV.
  const rootPart = ext4.find((x) => hasKernel(x.tree, "/boot"));
  if (rootPart) {
    layout.boot = {
      tree: subTree(rootPart.tree, "/boot"),
      rootFs: rootPart.tree,
      separate: false,
      device: grubName(rootPart.p),
    };
    return layout;
  }
  const opaque: string[] = parts
    .filter((x) => x.content === "luks" || x.content === "verity")
    .map((x) => `partition ${x.p.number} (${x.content})`);
  for (const pv of parts.filter((x) => x.content === "lvm2")) {
    const lvs = readLogicalVolumes(pv.source).sort(
      (a, b) => Number(b.name === "rootfs") - Number(a.name === "rootfs"),
    );
    for (const lv of lvs) {
      const content: Content = probe(lv.source);
      if (content === "luks" || content === "verity") opaque.push(`LV ${lv.vg}/${lv.name} (${content})`);
      if (content !== "ext4") continue;
      const tree = openTree(lv.source, "ext4");
      if (hasKernel(tree, "/boot")) {
        layout.boot = {
          tree: subTree(tree, "/boot"),
          rootFs: tree,
          separate: false,
          device: lvmDevice(lv.vg, lv.name),
        };
        return layout;
      }
    }
  }
  layout.bootMissing =
    `${disk.name}: no /boot found: no ext4 partition named "boot" or holding vmlinuz-*, and no ext4 root filesystem (partition or LVM LV) with /boot/vmlinuz-*; partitions: ${describe()}.` +
    (opaque.length > 0
      ? ` ${opaque.join(", ")} cannot be read without its key, so with an encrypted or verity-protected root filesystem /boot must be a separate partition.`
      : "");
  return layout;
}
