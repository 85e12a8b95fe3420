import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ARM64 } from "../../agent/src/arch.ts";
import { binfmtMissing } from "../lib/binfmt.ts";
import { expectFdeRoot } from "../lib/checks.ts";
import { installDebInRoot, makeDeb } from "../lib/disk.ts";
import { ENCRYPTED_IMAGE, fdeToml, keyOverride, ROOTFS_KEY, rootfsKeyFor } from "../lib/fde.ts";
import { shText } from "../lib/proc.ts";
import { AAVMF } from "../lib/qemu.ts";
import { defineScenario } from "../lib/scenario.ts";

// arm64 (issue #18): an arm64 Debian 12 guest booted through the FDE initrd under
// qemu-system-aarch64 (TCG, the virt board, AAVMF firmware, Debian's signed shim and GRUB for
// arm64 on the ESP). The arm64 .deb (`make deb ARCH=arm64`: the cross-compiled executable) goes
// into the arm64 image (`dpkg -i` in the image's chroot, under qemu-user), and the x86-64 convert takes the
// agent and dracut module from the image's package; the guest's own dracut builds the initrd
// under qemu-user too. Then the firmware boots the disk the way a cloud's would. A second boot with
// a wrong rootfs key (direct kernel boot: the firmware path takes GRUB's fixed command line) shows
// the arm64 stage failing closed: no shell, power-off through PSCI.

/** Printed by cptest-report in the booted guest (checks.d): what ran the boot. */
const ARCH_CHECK = `#!/bin/bash
echo "machine=$(uname -m)"
echo "agent-machine=$(od -An -tu2 -j18 -N2 /usr/bin/cryptpilot-fde | tr -d ' ')"
echo "deb-status=$(dpkg-query -W -f='\${Status} \${Architecture}' cryptpilot-fde 2>&1)"
`;

export default defineScenario({
  description:
    "arm64 Debian 12 under qemu-system-aarch64 (TCG, AAVMF, shim+GRUB): the arm64 .deb installed in the image's chroot, convert takes it, the encrypted root opens through the arm64 agent in the initrd",
  arch: "arm64",
  async skip() {
    for (const tool of ["qemu-system-aarch64", "dpkg-deb", "help2man"])
      if (!Bun.which(tool)) return `${tool} is not installed (qemu-system-arm, dpkg, help2man)`;
    if (!existsSync(AAVMF.code)) return `${AAVMF.code} is missing (qemu-efi-aarch64)`;
    return await binfmtMissing("arm64");
  },
  timeoutSec: 3600,
  async run(ctx) {
    const version = (await shText([ctx.agent, "--version"])).trim().split(/\s+/).at(-1)!;
    const deb = await makeDeb(ctx, "arm64");
    const source = await ctx.sourceDisk({ files: { "/etc/cptest/checks.d/arch.sh": ARCH_CHECK } });
    const dpkg = await installDebInRoot(source, deb);
    ctx.check(/Setting up cryptpilot-fde/.test(dpkg), `dpkg did not set the arm64 package up:\n${dpkg}`);

    const fde = ENCRYPTED_IMAGE;
    const disk = await ctx.convert({ source, fde: fdeToml(fde), rootfsKey: rootfsKeyFor(fde) });
    const convertLog = readFileSync(join(ctx.outDir, "convert-disk.raw.log"), "utf8");
    ctx.check(
      convertLog.includes(`agent and dracut module: the image's cryptpilot-fde package ${version}`),
      "convert did not say it uses the image's (arm64) cryptpilot-fde package",
    );

    const boot = await ctx.boot(disk, { label: "arm64", uefi: true, timeoutSec: 1800 });
    expectFdeRoot(ctx, boot, fde);
    const m = boot.markers;
    ctx.check(m.get("check:machine") === "aarch64", `the guest runs on ${m.get("check:machine")}`, boot);
    ctx.check(
      m.get("check:agent-machine") === String(ARM64.elfMachine),
      `the guest's /usr/bin/cryptpilot-fde has ELF machine ${m.get("check:agent-machine")}, not AArch64 (${ARM64.elfMachine})`,
      boot,
    );
    ctx.check(
      m.get("check:deb-status") === "install ok installed arm64",
      `the package: ${m.get("check:deb-status")}`,
      boot,
    );
    ctx.log(`arm64 boot: ${boot.seconds.toFixed(0)} s to power-off`);

    const wrong = await ctx.boot(disk, {
      label: "arm64-wrong-key",
      quick: true,
      append: [keyOverride(ROOTFS_KEY, "not-the-rootfs-key")],
      timeoutSec: 1200,
    });
    ctx.expectStopped(
      wrong,
      /failed at step \d+\/\d+ \(unlocking the encrypted rootfs\)/,
      "the rootfs unlock failure",
    );
  },
});
