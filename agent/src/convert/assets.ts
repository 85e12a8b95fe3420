/**
 * The files convert installs into the guest: the dracut module and the hooks (embedded in the
 * compiled executable as text, so a single binary can convert images) and the agent itself.
 * The list is fixed by vm-test/README.md ("The dracut module and hooks").
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import moduleSetup from "../../../dracut-module/91cryptpilot/module-setup.sh" with { type: "text" };
import rulesHide from "../../../hooks/12-cryptpilot-hide-intermediate-devices.rules" with { type: "text" };
import afterSysroot from "../../../hooks/cryptpilot-fde-after-sysroot.service" with { type: "text" };
import beforeSysroot from "../../../hooks/cryptpilot-fde-before-sysroot.service" with { type: "text" };
import beforeSysrootNetwork from "../../../hooks/cryptpilot-fde-before-sysroot-network.conf" with {
  type: "text",
};
import networkOnline from "../../../hooks/cryptpilot-network-online.sh" with { type: "text" };
import resolvConfService from "../../../hooks/cryptpilot-resolv-conf.service" with { type: "text" };
import resolvConf from "../../../hooks/cryptpilot-resolv-conf.sh" with { type: "text" };
import volumes from "../../../hooks/cryptpilot-volumes.service" with { type: "text" };
import volumesInitrd from "../../../hooks/cryptpilot-volumes-initrd.service" with { type: "text" };
import waitOnlineService from "../../../hooks/cryptpilot-wait-network-online.service" with { type: "text" };
import waitOnline from "../../../hooks/cryptpilot-wait-network-online.sh" with { type: "text" };
import lvmConf from "../../../hooks/lvm.conf" with { type: "text" };
import { FdeError } from "../errors.ts";
import type { Assets } from "./guest.ts";

export const MODULE_FILES: Record<string, string> = {
  "module-setup.sh": moduleSetup,
  "cryptpilot-fde-before-sysroot.service": beforeSysroot,
  "cryptpilot-fde-after-sysroot.service": afterSysroot,
  "cryptpilot-fde-before-sysroot-network.conf": beforeSysrootNetwork,
  "cryptpilot-wait-network-online.service": waitOnlineService,
  "cryptpilot-wait-network-online.sh": waitOnline,
  "cryptpilot-network-online.sh": networkOnline,
  "cryptpilot-resolv-conf.service": resolvConfService,
  "cryptpilot-resolv-conf.sh": resolvConf,
  "cryptpilot-volumes.service": volumes,
  "cryptpilot-volumes-initrd.service": volumesInitrd,
  "12-cryptpilot-hide-intermediate-devices.rules": rulesHide,
  "lvm.conf": lvmConf,
};

/** True inside a `bun build --compile` executable (its modules live under /$bunfs/). */
const compiled = import.meta.dir.startsWith("/$bunfs");

export function loadAssets(): Assets {
  const agentBinary = compiled ? process.execPath : join(import.meta.dir, "../../../dist/cryptpilot-fde");
  if (!existsSync(agentBinary)) {
    throw new FdeError(`${agentBinary} does not exist: convert installs the compiled agent into the guest`, {
      hint: "run 'make build' first",
    });
  }
  return { moduleFiles: MODULE_FILES, agentBinary };
}
