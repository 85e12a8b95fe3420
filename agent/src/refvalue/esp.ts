/**
 * The boot files of an ESP, for every architecture in arch.ts: the UKI at the removable-media path
 * (EFI/BOOT/BOOTX64.EFI, BOOTAA64.EFI) and the directories where shim and GRUB are installed
 * (grubx64.efi next to shimx64.efi, grubaa64.efi next to shimaa64.efi). show-reference-value and
 * config dump both find them here. FAT names are matched case-insensitively, as firmware does.
 */
import { ARCHES, type Arch, efiBootName, efiBootPath, grubName, shimName } from "../arch.ts";
import type { FileTree } from "../disk/image/fs.ts";

/** Directory levels searched below the ESP's root for GRUB: deeper trees are not boot layouts. */
export const MAX_GRUB_DEPTH = 8;

/** A UKI candidate: a file at an architecture's removable-media path (whether it is a UKI is the caller's check). */
export interface EspBootFile {
  arch: Arch;
  path: string;
}

/** A shim + GRUB installation in one ESP directory. */
export interface GrubInstall {
  arch: Arch;
  dir: string;
  /** ESP paths, with the names as the ESP spells them. */
  grub: string;
  shim: string;
}

const join = (dir: string, name: string) => `${dir === "/" ? "" : dir}/${name}`;

/** The first of NAMES (lower case) that DIR holds as a file, as the ESP spells it. */
function findName(tree: FileTree, dir: string, names: string[]): string | undefined {
  const entries = tree.list(dir);
  for (const want of names) {
    const hit = entries.find((e) => e.kind === "file" && e.name.toLowerCase() === want);
    if (hit) return join(dir, hit.name);
  }
  return undefined;
}

/** The files at each architecture's removable-media path, in ARCHES order. */
export function espBootFiles(esp: FileTree): EspBootFile[] {
  return ARCHES.filter((arch) => esp.kind(efiBootPath(arch)) === "file").map((arch) => ({
    arch,
    path: efiBootPath(arch),
  }));
}

/** Every architecture's removable-media path, for messages: "/EFI/BOOT/BOOTX64.EFI or /EFI/BOOT/BOOTAA64.EFI". */
export const ESP_BOOT_PATHS = ARCHES.map(efiBootPath).join(" or ");

/**
 * Shim as Debian and RHEL install it next to GRUB: shim<arch>.efi, shim.efi, or shim copied to
 * the removable-media name BOOT<ARCH>.EFI (what firmware boots on a fresh VM); all measured alike.
 */
const shimNames = (arch: Arch) => [shimName(arch), "shim.efi", efiBootName(arch).toLowerCase()];

/** For messages: "grubx64.efi together with shimx64.efi, shim.efi or BOOTX64.EFI, or grubaa64.efi ...". */
export const GRUB_INSTALL_NAMES = ARCHES.map(
  (a) => `${grubName(a)} together with ${shimName(a)}, shim.efi or ${efiBootName(a)}`,
).join(", or ");

/**
 * Each ESP directory with GRUB and shim of one architecture, sorted by directory (then ARCHES
 * order) so the output is deterministic. A GRUB without a shim beside it is skipped.
 */
export function grubInstalls(esp: FileTree): GrubInstall[] {
  const dirs: string[] = [];
  const walk = (dir: string, depth: number) => {
    if (depth > MAX_GRUB_DEPTH) return;
    const entries = esp.list(dir);
    dirs.push(dir);
    for (const e of entries) if (e.kind === "dir") walk(join(dir, e.name), depth + 1);
  };
  walk("/", 0);
  const out: GrubInstall[] = [];
  for (const dir of dirs.sort())
    for (const arch of ARCHES) {
      const grub = findName(esp, dir, [grubName(arch)]);
      const shim = grub && findName(esp, dir, shimNames(arch));
      if (grub && shim) out.push({ arch, dir, grub, shim });
    }
  return out;
}
