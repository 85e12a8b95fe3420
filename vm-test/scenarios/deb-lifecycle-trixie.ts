import { rmSync } from "node:fs";
import { join } from "node:path";
import { TEST_CMDLINE } from "../lib/context.ts";
import { copyFilesToRoot, growRootPartition } from "../lib/disk.ts";
import { sh, shText } from "../lib/proc.ts";
import { defineScenario, onGuest } from "../lib/scenario.ts";

// The package's life on a BOOTED Debian 13 system (issue #18): the plain, unconverted trixie image
// boots once with its stock initrd, and a checks.d script run by cptest-report installs version 1
// with dpkg -i, edits a conffile, upgrades to version 2 and purges, under the real systemd 257,
// udev and dracut 106 (agent/test/packaging/deb.test.ts does the same chrootless in a scratch root;
// deb-install installs into a chroot). Every step reports CPTEST:check:KEY=VALUE markers.
//
// Version 2 is the same binary packaged as VERSION+cptest2: its `--version` still says VERSION.
// That is fine here: what is under test is what dpkg, the maintainer scripts and systemd do with
// the package's files, conffiles and units across an upgrade, none of which reads the binary's own
// version (only convert compares it with the image's package, and convert does not run here).

/** Where the two packages sit in the guest (copied in before the boot). */
const DEB_DIR = "/var/cache/cptest-debs";
/** Room the root filesystem gets for the two uncompressed packages and an upgrade (old + new file). */
const GROW_ROOT_MIB = 768;
/** Appended to the conffile in the guest: the upgrade must keep it without asking. */
const LOCAL_EDIT = "# cptest: edited by the administrator";
const CONFFILE = "/etc/cryptpilot/global.toml.template";

/** The checks.d script: the whole lifecycle, one KEY=VALUE line per fact (values on one line). */
function lifecycleScript(v1: string, v2: string): string {
  return `#!/bin/bash
set -u
pkg=cryptpilot-fde
logs=/var/log/cptest-deb
mkdir -p "$logs"
line() { tr '\\n' '|' | sed 's/|$//'; }
failed() { systemctl list-units --failed --plain --no-legend 2>&1 | awk '{print $1}' | paste -sd, -; }
dangling() { find /etc/systemd /usr/lib/systemd -xtype l 2>/dev/null | sort | paste -sd, -; }
state() { dpkg-query -W -f='\${Status} \${Version}' "$pkg" 2>&1; }
# dpkg runs without a terminal and with stdin at EOF: a conffile prompt would fail the step.
run() { local name=$1; shift; "$@" </dev/null >"$logs/$name.log" 2>&1; echo "$name-exit=$?"; echo "$name-tail=$(tail -n 4 "$logs/$name.log" | line)"; }

# The boot has settled: a failed unit from here on is the package's doing.
timeout 300 systemctl is-system-running --wait >/dev/null 2>&1
echo "failed-before=$(failed)"
echo "dangling-before=$(dangling)"

run install dpkg -i ${DEB_DIR}/cryptpilot-fde_${v1}_amd64.deb
echo "installed=$(state)"
echo "version-cmd=$(cryptpilot-fde --version 2>&1 | line)"
cryptpilot-crypt --help >/dev/null 2>&1
echo "crypt-help-exit=$?"
echo "enabled-volumes=$(systemctl is-enabled cryptpilot-volumes.service 2>&1 | line)"
echo "enabled-alias=$(systemctl is-enabled cryptpilot.service 2>&1 | line)"
echo "dracut-module=$(dracut --list-modules 2>/dev/null | grep -cx cryptpilot)"
echo "failed-installed=$(failed)"
dpkg -L "$pkg" >"$logs/files" 2>&1

# Upstream's docs: systemctl enable --now cryptpilot.service (the alias); only templates are in
# /etc/cryptpilot/volumes, so the unit has nothing to open and must end active.
run enable timeout 300 systemctl enable --now cryptpilot.service
echo "enabled-after-enable=$(systemctl is-enabled cryptpilot-volumes.service 2>&1 | line)"
echo "active-after-enable=$(systemctl is-active cryptpilot-volumes.service 2>&1 | line)"

echo '${LOCAL_EDIT}' >>${CONFFILE}
run upgrade dpkg -i ${DEB_DIR}/cryptpilot-fde_${v2}_amd64.deb
echo "upgrade-prompted=$(grep -c 'Configuration file' "$logs/upgrade.log")"
echo "edit-kept=$(grep -cxF '${LOCAL_EDIT}' ${CONFFILE})"
echo "upgraded=$(state)"
echo "enabled-after-upgrade=$(systemctl is-enabled cryptpilot-volumes.service 2>&1 | line)"
echo "failed-upgraded=$(failed)"

run purge dpkg --purge "$pkg"
echo "purged=$(dpkg-query -W -f='\${Status}' "$pkg" 2>/dev/null || echo none)"
# Every path the package had is gone, but directories other packages still own (/usr/bin, ...).
left=()
while IFS= read -r p; do
  [ "$p" != /. ] || continue
  [ -e "$p" ] || [ -L "$p" ] || continue
  if [ -d "$p" ] && [ ! -L "$p" ] && dpkg-query -S "$p" >/dev/null 2>&1; then continue; fi
  left+=("$p")
done <"$logs/files"
echo "purge-leftovers=$(IFS=,; echo "\${left[*]}")"
echo "etc-cryptpilot=$([ -e /etc/cryptpilot ] && echo present || echo absent)"
echo "dracut-module-after-purge=$(dracut --list-modules 2>/dev/null | grep -cx cryptpilot)"
echo "dangling-after=$(dangling)"
systemctl daemon-reload
echo "daemon-reload-exit=$?"
echo "unit-after-purge=$(systemctl show -P LoadState -P ActiveState cryptpilot-volumes.service 2>&1 | line)"
echo "failed-purged=$(failed)"
`;
}

export default onGuest(
  "trixie",
  defineScenario({
    description:
      "the Debian package in a booted plain system: dpkg -i (Depends met), cryptpilot.service enabled and started, upgrade keeps an edited conffile without a prompt, purge leaves no file, link or failed unit",
    skip: () =>
      Bun.which("dpkg-deb") && Bun.which("help2man") ? undefined : "dpkg-deb or help2man is not installed",
    timeoutSec: 1500,
    async run(ctx) {
      const v1 = (await shText([ctx.agent, "--version"])).trim().split(/\s+/).at(-1)!;
      const v2 = `${v1}+cptest2`;
      const debs: Record<string, string> = {};
      for (const version of [v1, v2]) {
        const name = `cryptpilot-fde_${version}_amd64.deb`;
        await sh(
          [
            join(ctx.repo, "packaging", "build-deb.sh"),
            ...["--bin", ctx.agent, "--arch", "amd64", "--version", version, "--out", ctx.outDir],
          ],
          { env: { DEB_COMPRESSION: "none" } },
        );
        debs[`${DEB_DIR}/${name}`] = join(ctx.outDir, name);
      }
      const disk = await ctx.sourceDisk({
        files: { "/etc/cptest/checks.d/deb-lifecycle.sh": lifecycleScript(v1, v2) },
      });
      await growRootPartition(disk, GROW_ROOT_MIB);
      await copyFilesToRoot(disk, debs);
      // 2 x 110 MiB on the host, rebuilt by every run: the image holds the copies now.
      for (const host of Object.values(debs)) rmSync(host);

      // One boot of the plain image (stock initrd, full multi-user.target: systemd as users run it).
      const boot = await ctx.boot(disk, {
        label: "lifecycle",
        cmdline: `root=LABEL=root ro ${TEST_CMDLINE}`,
        // Measured 111-131 s (two TCG guests on 2 cores); a hung step must not eat CI's budget.
        timeoutSec: 900,
      });
      ctx.expectReported(boot);
      const got = (key: string) => boot.markers.get(`check:${key}`);
      const step = (step: string, what: string) =>
        ctx.check(
          got(`${step}-exit`) === "0",
          `${what} exited ${got(`${step}-exit`)}: ${got(`${step}-tail`)}`,
          boot,
        );
      // A missing marker (the script stopped early) fails too, also where the expected value is empty.
      const expect = (key: string, pattern: RegExp, what: string) => {
        const value = got(key);
        ctx.check(
          value !== undefined && pattern.test(value),
          value === undefined
            ? `${what}: the guest never reported ${key} (its script stopped early)`
            : `${what}: the guest reports ${key}=${value}`,
          boot,
        );
      };
      const quoted = (s: string) => s.replace(/[.+]/g, "\\$&");

      expect("failed-before", /^$/, "the plain system had failed units before the install");
      step("install", "dpkg -i of version 1 (its Depends must be met by the plain image)");
      expect("installed", new RegExp(`^install ok installed ${quoted(v1)}$`), "version 1 is not installed");
      expect("version-cmd", new RegExp(`^cryptpilot-fde ${quoted(v1)}$`), "cryptpilot-fde --version");
      expect("crypt-help-exit", /^0$/, "cryptpilot-crypt --help failed");
      expect("enabled-volumes", /^disabled$/, "the package must enable nothing");
      expect("enabled-alias", /^alias$/, "cryptpilot.service is not an alias of the volumes unit");
      expect("dracut-module", /^1$/, "dracut --list-modules does not list cryptpilot");
      expect("failed-installed", /^$/, "units failed after the install");
      step("enable", "systemctl enable --now cryptpilot.service");
      expect("enabled-after-enable", /^enabled$/, "enabling the alias did not enable the volumes unit");
      expect("active-after-enable", /^active$/, "cryptpilot-volumes.service with only templates");

      step("upgrade", "dpkg -i of version 2 without a terminal");
      expect("upgrade-prompted", /^0$/, "the upgrade asked about a conffile");
      expect("edit-kept", /^1$/, `the upgrade lost the local edit of ${CONFFILE}`);
      expect("upgraded", new RegExp(`^install ok installed ${quoted(v2)}$`), "version 2 is not installed");
      expect("enabled-after-upgrade", /^enabled$/, "the upgrade changed the unit's enablement");
      expect("failed-upgraded", /^$/, "units failed after the upgrade");

      step("purge", "dpkg --purge");
      expect("purged", /not-installed$|^none$/, "the package is still known to dpkg after the purge");
      expect("purge-leftovers", /^$/, "paths of the package are left after the purge");
      expect("etc-cryptpilot", /^absent$/, "/etc/cryptpilot is left after the purge");
      expect("dracut-module-after-purge", /^0$/, "dracut still lists cryptpilot after the purge");
      expect("dangling-before", /.*/, "the dangling links before the install");
      expect("dangling-after", /.*/, "the dangling links after the purge");
      const before = new Set((got("dangling-before") ?? "").split(",").filter(Boolean));
      const dangling = (got("dangling-after") ?? "").split(",").filter((l) => l && !before.has(l));
      ctx.check(dangling.length === 0, `dangling unit links after the purge: ${dangling.join(", ")}`, boot);
      expect("daemon-reload-exit", /^0$/, "systemctl daemon-reload after the purge");
      expect("failed-purged", /^$/, "units failed after the purge");
      ctx.check(
        boot.markers.get("system-running") === "running",
        `the system is ${boot.markers.get("system-running")} after the purge (failed: ${boot.markers.get("failed-units")})`,
        boot,
      );
      ctx.log(
        `guest: ${got("installed")} -> ${got("upgraded")} -> ${got("purged")}; unit after purge: ${got("unit-after-purge")}`,
      );
    },
  }),
);
