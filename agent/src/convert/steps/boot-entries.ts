/** GRUB mode: every boot entry on the staged boot files points at /dev/mapper/rootfs. */
import { existsSync } from "node:fs";
import { readdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { rewriteBlsEntry, rewriteGrubCfg, rewriteGrubenv } from "../bootcfg.ts";
import { type BootFiles, defineStep, type SourceDisk } from "../context.ts";

export const rewriteEntries = defineStep(
  "rewriteEntries",
  "pointing every boot entry at /dev/mapper/rootfs",
  {
    needs: ["source", "bootFiles"],
    async run(c, io) {
      const s = c.bootStaging;
      const source = io.need("source");
      const bootFiles = io.need("bootFiles");
      for (const rel of ["grub/grub.cfg", "grub2/grub.cfg"]) {
        const p = join(s, rel);
        if (existsSync(p))
          await writeFile(p, retargetGrubCfg(await readFile(p, "utf8"), source, bootFiles, c.bootUuid));
      }
      for (const rel of ["grub/grubenv", "grub2/grubenv", "grubenv"]) {
        const p = join(s, rel);
        if (existsSync(p)) await writeFile(p, rewriteGrubenv(await readFile(p, "utf8")));
      }
      const bls = join(s, "loader/entries");
      if (existsSync(bls)) {
        for (const f of await readdir(bls)) {
          if (f.endsWith(".conf"))
            await writeFile(join(bls, f), rewriteBlsEntry(await readFile(join(bls, f), "utf8")));
        }
      }
      // "/boot/..." paths in the entries resolve on the boot partition through this link.
      if (!existsSync(join(s, "boot"))) await symlink(".", join(s, "boot"));
    },
  },
);

/**
 * grub.cfg searches that found the old root or the old /boot partition (bootFiles.oldBoot, set by
 * prepareGuest's copySourceBootPartition) now find the new boot partition.
 */
export function retargetGrubCfg(
  text: string,
  source: Pick<SourceDisk, "root">,
  bootFiles: BootFiles,
  bootUuid: string,
): string {
  const newBoot = { uuid: bootUuid, label: "boot" };
  const once = rewriteGrubCfg(text, source.root, newBoot);
  return bootFiles.oldBoot ? rewriteGrubCfg(once, bootFiles.oldBoot, newBoot) : once;
}
