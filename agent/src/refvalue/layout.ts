/** Where the boot artefacts of a disk image or the running system are, as file trees. */
import type { FileTree } from "../disk/image/fs.ts";

export interface BootLayout {
  /** The disk or system, for messages. */
  name: string;
  esp: FileTree;
  /** The /boot filesystem GRUB reads; absent for UKI-only disks or when none was found. */
  boot?: GrubBoot;
  /** Why no /boot was found (used only if the disk turns out not to be a UKI disk). */
  bootMissing?: string;
}

export interface GrubBoot {
  /** The /boot directory (grub/grub.cfg, grubenv, loader/entries, kernels). */
  tree: FileTree;
  /** The filesystem GRUB's `$root` points to; kernel paths in grub.cfg are relative to it. */
  rootFs: FileTree;
  /** True when /boot is its own filesystem (then rootFs is tree). */
  separate: boolean;
  /** GRUB's name for that filesystem's device without parentheses: "hd0,gpt2", "lvm/vg-root". */
  device: string;
}
