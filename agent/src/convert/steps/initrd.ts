/** The guest's initrds rebuilt by its own dracut with the agent's module (or, with --uki, one UKI). */
import { existsSync } from "node:fs";
import { copyFile, mkdir, readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { efiBootName, systemdStubPath } from "../../arch.ts";
import { FdeError } from "../../errors.ts";
import { log } from "../../log.ts";
import { rewriteCmdline } from "../bootcfg.ts";
import { defineStep } from "../context.ts";
import { findKernels, type Kernel, mount, runDracut } from "../guest.ts";
import { resolveInRoot } from "../guest-arch.ts";

/** The UKI's command line: the guest's /etc/kernel/cmdline (kernel-install's file), then --uki-append-cmdline. */
export const ukiCmdline = (guestCmdline: string, append: string) =>
  rewriteCmdline(`ro ${guestCmdline.replace(/\s+/g, " ")} ${append}`);

/** Highest kernel version first (dpkg-like ordering is overkill here: numeric-aware compare). */
const byVersionDesc = (a: Kernel, b: Kernel) =>
  b.version.localeCompare(a.version, undefined, { numeric: true });

export const rebuildInitrds = defineStep("rebuildInitrds", "rebuilding the guest's initrd with the agent", {
  device: (c) => c.rootfsImg,
  needs: ["guest"],
  sets: ["initrds"],
  async run(c, io) {
    await mount(c.cleanup, c.rootfsImg, c.guestMount, ["-o", "loop,ro,noload"], "guest");
    const { kernels, skipped } = await findKernels(c.guestMount, c.bootStaging);
    for (const v of skipped)
      log.warn(
        `kernel ${v} has no modules in the guest; its entries cannot boot (root=/dev/mapper/rootfs needs the agent)`,
      );
    if (kernels.length === 0)
      throw new FdeError("no kernel in the guest's /boot has its modules installed; nothing can boot");
    if (c.opts.uki) {
      const kernel = kernels.reduce((best, k) => (byVersionDesc(k, best) < 0 ? k : best));
      // systemd's EFI stub of the guest's architecture, the guest's own or (copied in) this host's.
      const { arch } = io.need("guest");
      const defaultStub = systemdStubPath(arch);
      const stubName = basename(defaultStub);

      const outDir = join(c.work, "uki");
      await mkdir(outDir, { recursive: true });
      const stubDir = join(c.work, "stub");
      await mkdir(stubDir, { recursive: true });
      let stub = defaultStub;
      // Resolved as dracut in the chroot will: a symbolic link in the guest never reaches the host's files.
      if (resolveInRoot(c.guestMount, defaultStub) === undefined) {
        if (!existsSync(defaultStub))
          throw new FdeError(
            `--uki needs the systemd EFI stub ${defaultStub} (package systemd-boot-efi, ${arch.debian}) in the guest or on this host`,
          );
        await copyFile(defaultStub, join(stubDir, stubName));
        stub = `/run/cryptpilot-stub/${stubName}`;
      }
      await runDracut(
        c.cleanup,
        c.guestMount,
        { boot: c.bootStaging, config: c.cfgDir, extra: { host: stubDir, guest: "run/cryptpilot-stub" } },
        [
          {
            kernel,
            output: "/run/cryptpilot-stub/uki.efi",
            uki: {
              stub,
              cmdline: ukiCmdline(await guestKernelCmdline(c.guestMount), c.opts.ukiAppendCmdline),
            },
          },
        ],
      );
      const ukiFile = join(outDir, efiBootName(arch));
      await copyFile(join(stubDir, "uki.efi"), ukiFile);
      io.set("initrds", { kernels, ukiFile });
      log.info(`  UKI for kernel ${kernel.version}`);
    } else {
      await runDracut(
        c.cleanup,
        c.guestMount,
        { boot: c.bootStaging, config: c.cfgDir },
        kernels.map((kernel) => ({ kernel, output: `/boot/${kernel.initrd}` })),
      );
      io.set("initrds", { kernels });
      log.info(`  initrds rebuilt for ${kernels.map((k) => k.version).join(", ")}`);
    }
    await c.cleanup.runOne("umount guest");
  },
});

async function guestKernelCmdline(root: string): Promise<string> {
  const path = join(root, "etc/kernel/cmdline");
  return existsSync(path) ? (await readFile(path, "utf8")).trim() : "";
}
