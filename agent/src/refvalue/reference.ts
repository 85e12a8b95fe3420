/**
 * The reference values of a boot layout, with upstream cryptpilot's keys and order
 * (reference-values.md §1.2): per algorithm, `kernel_cmdline`, then `measurement.kernel_cmdline`,
 * `.kernel`, `.initrd`, `.grub`, `.shim` for GRUB boot, or only `measurement.uki` for a UKI.
 */

import type { FileTree } from "../disk/image/fs.ts";
import { FdeError } from "../errors.ts";
import { authenticodeDigest } from "./authenticode.ts";
import { type BootEntry, parseGrubenv, resolveBootEntry } from "./grub.ts";
import { loaderCmdline } from "./grubscript.ts";
import { HASH_LABEL, type HashAlgo, hashHex } from "./hash.ts";
import type { BootLayout, GrubBoot } from "./layout.ts";
import { hasSection } from "./pe.ts";

export type ReferenceValues = Record<string, string[]>;

const UKI_PATH = "/EFI/BOOT/BOOTX64.EFI";

const decode = (b: Uint8Array) => new TextDecoder().decode(b);

/** Case-insensitive name lookup in a listing (FAT names). */
function findName(tree: FileTree, dir: string, names: string[]): string | undefined {
  const entries = tree.list(dir);
  for (const want of names) {
    const hit = entries.find((e) => e.kind === "file" && e.name.toLowerCase() === want);
    if (hit) return `${dir === "/" ? "" : dir}/${hit.name}`;
  }
  return undefined;
}

/** ESP directories holding grubx64.efi, sorted so the output is deterministic. */
function grubDirs(esp: FileTree): string[] {
  const out: string[] = [];
  const walk = (dir: string, depth: number) => {
    if (depth > 8) return;
    const entries = esp.list(dir);
    if (entries.some((e) => e.kind === "file" && e.name.toLowerCase() === "grubx64.efi")) out.push(dir);
    for (const e of entries) if (e.kind === "dir") walk(`${dir === "/" ? "" : dir}/${e.name}`, depth + 1);
  };
  walk("/", 0);
  return out.sort();
}

function firstFile(tree: FileTree, paths: string[]): { path: string; text: string } | undefined {
  for (const path of paths)
    if (tree.kind(path) === "file") return { path, text: decode(tree.readFile(path)) };
  return undefined;
}

/** Strip a GRUB device prefix such as "(hd0,gpt2)" from a path. */
const stripDevice = (p: string) => p.replace(/^\([^)]*\)/, "");

/** Read a file named on a linux/initrd line from the filesystem GRUB's $root points to. */
function readBootFile(
  boot: GrubBoot,
  grubPath: string,
  what: string,
  entry: BootEntry,
): { data: Uint8Array; osPath: string } {
  const path = stripDevice(grubPath);
  const abs = path.startsWith("/") ? path : `/${path}`;
  // Upstream resolves /boot/X on the boot partition too (converted images carry a boot -> . link).
  const tries = boot.separate ? [abs, abs.replace(/^\/boot(?=\/)/, "")] : [abs, `/boot${abs}`];
  for (const p of tries) {
    if (boot.rootFs.kind(p) === "file") {
      const osPath = boot.separate && !p.startsWith("/boot/") ? `/boot${p}` : p;
      return { data: boot.rootFs.readFile(p), osPath };
    }
  }
  throw new FdeError(
    `the ${what} ${grubPath} named by ${entry.origin} does not exist on ${boot.rootFs.name}`,
  );
}

interface GrubDirValues {
  cmdlines: string[];
  kernel: Uint8Array;
  initrds: Uint8Array[];
  grub: Uint8Array;
  shim: Uint8Array;
  dir: string;
}

function grubDirValues(layout: BootLayout, boot: GrubBoot, dir: string): GrubDirValues | undefined {
  const { esp } = layout;
  const grubPath = findName(esp, dir, ["grubx64.efi"])!;
  // BOOTX64.EFI next to grubx64.efi is shim installed at the removable-media path (what OVMF boots
  // on a fresh VM); it is measured the same way as shimx64.efi.
  const shimPath = findName(esp, dir, ["shimx64.efi", "shim.efi", "bootx64.efi"]);
  if (!shimPath) return undefined;
  const envFile =
    firstFile(boot.tree, ["/grubenv", "/grub/grubenv", "/grub2/grubenv"]) ??
    firstFile(esp, [`${dir}/grubenv`]);
  const cfgFile = firstFile(boot.tree, ["/grub2/grub.cfg", "/grub/grub.cfg"]);
  const espCfg = firstFile(esp, [`${dir}/grub.cfg`]);
  // Debian's ESP grub.cfg only chains to /boot/grub/grub.cfg; prefer the one with the menu.
  const cfg = cfgFile
    ? { text: cfgFile.text, where: `${boot.tree.name}${cfgFile.path}` }
    : espCfg && { text: espCfg.text, where: `${esp.name}${espCfg.path}` };
  const entry = resolveBootEntry({
    boot: boot.tree,
    grubCfg: cfg,
    env: envFile ? parseGrubenv(envFile.text) : {},
    root: boot.device,
  });
  const kernel = readBootFile(boot, entry.linux[0]!, "kernel", entry);
  const initrds = entry.initrds.map((p) => readBootFile(boot, p, "initrd", entry).data);
  const args = loaderCmdline(entry.linux.slice(1));
  const shortPath = boot.separate ? kernel.osPath.replace(/^\/boot(?=\/)/, "") : kernel.osPath;
  const cmdlines = [`${shortPath} ${args}`, `(${boot.device})${kernel.osPath} ${args}`];
  const measured = loaderCmdline(entry.linux);
  if (!cmdlines.includes(measured)) cmdlines.push(measured);
  return {
    cmdlines,
    kernel: kernel.data,
    initrds,
    grub: esp.readFile(grubPath),
    shim: esp.readFile(shimPath),
    dir,
  };
}

export function computeReferenceValues(layout: BootLayout, algos: HashAlgo[]): ReferenceValues {
  if (algos.length === 0) throw new FdeError("No hash algorithm specified");
  const out: ReferenceValues = {};
  const { esp } = layout;
  const uki = esp.kind(UKI_PATH) === "file" ? esp.readFile(UKI_PATH) : undefined;
  if (uki && hasSection(uki, ".linux")) {
    for (const algo of algos)
      out[`measurement.uki.${HASH_LABEL[algo]}`] = [authenticodeDigest(uki, algo, `${esp.name}${UKI_PATH}`)];
    return out;
  }
  if (!layout.boot) {
    throw new FdeError(
      `${layout.bootMissing ?? `${layout.name}: no /boot found.`} (It is not a UKI disk either: ${UKI_PATH} on the ESP ${uki ? "has no .linux section" : "does not exist"}.)`,
    );
  }
  const boot = layout.boot;
  const dirs = grubDirs(esp)
    .map((d) => grubDirValues(layout, boot, d))
    .filter((v): v is GrubDirValues => v !== undefined);
  if (dirs.length === 0) {
    throw new FdeError(
      `${layout.name}: the ESP has no GRUB: no directory holding grubx64.efi together with shimx64.efi, shim.efi or BOOTX64.EFI, and no unified kernel image at ${UKI_PATH}.`,
    );
  }
  for (const algo of algos) {
    const label = HASH_LABEL[algo];
    // Several ESP directories usually hold the same binaries (EFI/debian and EFI/BOOT): the
    // values are alternatives a verifier checks membership in, so each is listed once.
    const put = (key: string, values: string[]) => {
      out[key] = [...new Set(values)];
    };
    put(
      "kernel_cmdline",
      dirs.flatMap((d) => d.cmdlines.map((c) => `grub_kernel_cmdline ${c}`)),
    );
    put(
      `measurement.kernel_cmdline.${label}`,
      dirs.flatMap((d) => d.cmdlines.map((c) => hashHex(algo, new TextEncoder().encode(c)))),
    );
    put(
      `measurement.kernel.${label}`,
      dirs.map((d) => hashHex(algo, d.kernel)),
    );
    put(
      `measurement.initrd.${label}`,
      dirs.flatMap((d) => d.initrds.map((i) => hashHex(algo, i))),
    );
    put(
      `measurement.grub.${label}`,
      dirs.map((d) => authenticodeDigest(d.grub, algo, `${esp.name}${d.dir}/grubx64.efi`)),
    );
    put(
      `measurement.shim.${label}`,
      dirs.map((d) => authenticodeDigest(d.shim, algo, `${esp.name}${d.dir} shim`)),
    );
  }
  return out;
}
