/** The guest root filesystem: the agent, dracut module and config go in; /boot comes out to staging. */
import { existsSync } from "node:fs";
import { copyFile, mkdir, readdir } from "node:fs/promises";
import { basename, join } from "node:path";
import { run } from "../../command.ts";
import { volumeFiles } from "../../config/volume.ts";
import { log } from "../../log.ts";
import { type ConvertCtx, defineStep, type SourceDisk } from "../context.ts";
import { fixFstab, mount, moveBootOut } from "../guest.ts";
import { checkGuestArch, thisHost } from "../guest-arch.ts";
import { installOrUseGuestPackage } from "../guest-package.ts";
import type { Partition } from "../source.ts";

export const prepareGuest = defineStep(
  "prepareGuest",
  "installing the agent and dracut module into the guest",
  {
    device: (c) => c.rootfsImg,
    needs: ["source"],
    sets: ["guest", "bootFiles"],
    async run(c, io) {
      await mount(c.cleanup, c.rootfsImg, c.guestMount, ["-o", "loop"], "guest");
      // Before the guest is changed: an agent that cannot run there, or a dracut that cannot run here, stops convert.
      io.set("guest", { arch: await checkGuestArch(c.guestMount, c.opts.assets, c.opts.host ?? thisHost()) });
      await installOrUseGuestPackage(c.guestMount, c.opts.assets);
      await fixFstab(c.guestMount);
      await moveBootOut(c.guestMount, c.bootStaging);
      await mkdir(c.cfgDir, { recursive: true });
      for (const name of ["fde.toml", "global.toml"]) {
        const src = join(c.opts.configDir, name);
        if (!existsSync(src)) continue;
        await copyFile(src, join(c.cfgDir, name));
        await copyFile(src, join(c.guestMount, "etc/cryptpilot", name));
      }
      // Data volumes (checked by checkConfig): the booted system opens them, and the dracut module
      // puts the open_in_initrd ones into the initrd.
      const volumes = await volumeFiles(c.opts.configDir);
      if (volumes.length > 0) {
        const targets = [join(c.cfgDir, "volumes"), join(c.guestMount, "etc/cryptpilot/volumes")];
        for (const dir of targets) await mkdir(dir, { recursive: true });
        for (const src of volumes) for (const dir of targets) await copyFile(src, join(dir, basename(src)));
        log.info(`  ${volumes.length} data volume file(s) copied`);
      }
      await c.cleanup.runOne("umount guest");
      const guestHasKernels = (await readdir(c.bootStaging)).some((f) => f.startsWith("vmlinuz-"));
      const oldBoot = guestHasKernels ? undefined : await copySourceBootPartition(c, io.need("source"));
      io.set("bootFiles", { oldBoot });
    },
  },
);

/**
 * A source /boot partition (ext4 with kernels at its top level), when /boot is not in the root fs:
 * its files go to the boot staging directory; returns the partition (retargetGrubCfg rewrites
 * GRUB's searches for it), or undefined when there is none.
 */
export async function copySourceBootPartition(
  c: ConvertCtx,
  source: SourceDisk,
): Promise<Partition | undefined> {
  let oldBoot: Partition | undefined;
  for (const p of source.table.partitions) {
    if (p === source.root || p.fsType !== "ext4") continue;
    const dir = join(c.work, `srcboot${p.number}`);
    await mount(
      c.cleanup,
      c.srcRaw,
      dir,
      ["-o", `ro,loop,offset=${p.offset},sizelimit=${p.size}`],
      "srcboot",
    );
    const files = await readdir(dir);
    if (files.some((f) => f.startsWith("vmlinuz-"))) {
      oldBoot = p;
      for (const f of files) {
        if (f === "lost+found" || f === "boot") continue;
        await run("cp", ["-a", join(dir, f), c.bootStaging]);
      }
    }
    await c.cleanup.runOne("umount srcboot");
  }
  return oldBoot;
}
