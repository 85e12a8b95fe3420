/**
 * The reference values of a boot layout, with upstream cryptpilot's keys and order
 * (reference-values.md §1.2): per algorithm, `kernel_cmdline`, then `measurement.kernel_cmdline`,
 * `.kernel`, `.initrd`, `.grub`, `.shim` for GRUB boot, or only `measurement.uki` for a UKI.
 */

import type { FileTree } from "../disk/image/fs.ts";
import { FdeError } from "../errors.ts";
import { authenticodeDigest } from "./authenticode.ts";
import { ESP_BOOT_PATHS, espBootFiles, GRUB_INSTALL_NAMES, type GrubInstall, grubInstalls } from "./esp.ts";
import { type BootEntry, parseGrubenv, resolveBootEntry } from "./grub.ts";
import { loaderCmdline } from "./grubscript.ts";
import { HASH_LABEL, type HashAlgo, hashHex } from "./hash.ts";
import type { BootLayout, GrubBoot } from "./layout.ts";
import { hasSection } from "./pe.ts";

export type ReferenceValues = Record<string, string[]>;

const decode = (b: Uint8Array) => new TextDecoder().decode(b);

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
  /** The GRUB file's ESP path, for messages. */
  grubPath: string;
  dir: string;
}

function grubDirValues(layout: BootLayout, boot: GrubBoot, install: GrubInstall): GrubDirValues {
  const { esp } = layout;
  const { dir } = install;
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
    grub: esp.readFile(install.grub),
    shim: esp.readFile(install.shim),
    grubPath: install.grub,
    dir,
  };
}

export function computeReferenceValues(layout: BootLayout, algos: HashAlgo[]): ReferenceValues {
  if (algos.length === 0) throw new FdeError("No hash algorithm specified");
  const out: ReferenceValues = {};
  const { esp } = layout;
  // A UKI at an architecture's removable-media path; with several (a multi-architecture disk),
  // each is an alternative the firmware of that architecture measures.
  const bootFiles = espBootFiles(esp).map((f) => ({ ...f, data: esp.readFile(f.path) }));
  const ukis = bootFiles.filter((f) => hasSection(f.data, ".linux"));
  if (ukis.length > 0) {
    for (const algo of algos)
      out[`measurement.uki.${HASH_LABEL[algo]}`] = ukis.map((u) =>
        authenticodeDigest(u.data, algo, `${esp.name}${u.path}`),
      );
    return out;
  }
  if (!layout.boot) {
    const found = bootFiles.map((f) => f.path).join(" and ");
    throw new FdeError(
      `${layout.bootMissing ?? `${layout.name}: no /boot found.`} (It is not a UKI disk either: ${found ? `${found} on the ESP ${bootFiles.length > 1 ? "have" : "has"} no .linux section` : `there is no ${ESP_BOOT_PATHS} on the ESP`}.)`,
    );
  }
  const boot = layout.boot;
  const dirs = grubInstalls(esp).map((install) => grubDirValues(layout, boot, install));
  if (dirs.length === 0) {
    throw new FdeError(
      `${layout.name}: the ESP has no GRUB: no directory holding ${GRUB_INSTALL_NAMES}, and no unified kernel image at ${ESP_BOOT_PATHS}.`,
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
      dirs.map((d) => authenticodeDigest(d.grub, algo, `${esp.name}${d.grubPath}`)),
    );
    put(
      `measurement.shim.${label}`,
      dirs.map((d) => authenticodeDigest(d.shim, algo, `${esp.name}${d.dir} shim`)),
    );
  }
  return out;
}
