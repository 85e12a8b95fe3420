import { readFileSync } from "node:fs";
import { join } from "node:path";
import { expectFdeRoot } from "../lib/checks.ts";
import { installDebInRoot, makeDeb } from "../lib/disk.ts";
import { ENCRYPTED_IMAGE, fdeToml, rootfsKeyFor } from "../lib/fde.ts";
import { shText } from "../lib/proc.ts";
import { defineScenario } from "../lib/scenario.ts";

// The package path (issue #18): the .deb that `make deb` builds (from the binary under test,
// uncompressed for speed) installed into the plain image with `dpkg -i` in a
// chroot, as an image pipeline would; `convert` then takes the agent and dracut module from the
// image's package instead of its own (and says so), and the image boots through that initrd.

/** Printed by cptest-report in the booted guest (checks.d): the package as dpkg and systemd see it. */
const PACKAGE_CHECK = `#!/bin/bash
echo "deb-status=$(dpkg-query -W -f='\${Status} \${Version}' cryptpilot-fde 2>&1)"
echo "crypt-link=$(readlink /usr/bin/cryptpilot-crypt)"
echo "unit-alias=$(systemctl show -P Id cryptpilot.service 2>&1)"
`;

export default defineScenario({
  description:
    "the Debian package installed into the plain image in a chroot (dpkg -i); convert uses the image's agent and dracut module and says so; the converted image boots, dpkg and systemd see the package",
  skip: () =>
    Bun.which("dpkg-deb") && Bun.which("help2man") ? undefined : "dpkg-deb or help2man is not installed",
  timeoutSec: 1800,
  async run(ctx) {
    const version = (await shText([ctx.agent, "--version"])).trim().split(/\s+/).at(-1)!;
    const deb = await makeDeb(ctx, "amd64");
    const source = await ctx.sourceDisk({ files: { "/etc/cptest/checks.d/package.sh": PACKAGE_CHECK } });
    const dpkg = await installDebInRoot(source, deb);
    ctx.log(`dpkg -i in the image's chroot: ${dpkg.trim().split("\n").at(-1)}`);
    ctx.check(/Setting up cryptpilot-fde/.test(dpkg), `dpkg did not set the package up:\n${dpkg}`);

    const fde = ENCRYPTED_IMAGE;
    const disk = await ctx.convert({ source, fde: fdeToml(fde), rootfsKey: rootfsKeyFor(fde) });
    const convertLog = readFileSync(join(ctx.outDir, "convert-disk.raw.log"), "utf8");
    ctx.check(
      convertLog.includes(`agent and dracut module: the image's cryptpilot-fde package ${version}`),
      "convert did not say it uses the image's cryptpilot-fde package",
    );

    const boot = await ctx.boot(disk, { label: "packaged", quick: true });
    expectFdeRoot(ctx, boot, fde);
    const expect: Record<string, RegExp> = {
      "deb-status": new RegExp(`^install ok installed ${version.replaceAll(".", "\\.")}$`),
      "crypt-link": /^cryptpilot-fde$/,
      "unit-alias": /^cryptpilot-volumes\.service$/,
    };
    for (const [key, pattern] of Object.entries(expect)) {
      const got = boot.markers.get(`check:${key}`);
      ctx.check(pattern.test(got ?? ""), `${key}: the guest reports ${got}, expected ${pattern}`, boot);
    }
  },
});
