/**
 * The kernel modules the before-sysroot stage loads, and configfs for configfs-tsm: both before
 * the first key provider runs, so TEE detection (attest/platform.ts) finds the attestation
 * interface whenever the kernel has its driver. The dracut module installs the same modules
 * (dracut-module/91cryptpilot/module-setup.sh, installkernel).
 */
import { existsSync } from "node:fs";
import { TEE_DRIVERS } from "../attest/platform.ts";
import { CONFIGFS_ROOT, isConfigfs } from "../attest/tsm.ts";
import { run } from "../command.ts";
import { log } from "../log.ts";

/** The storage stack every boot uses. */
export const KERNEL_MODULES: readonly string[] = [
  "dm_mod",
  "dm_crypt",
  "dm_verity",
  "dm_snapshot",
  "dm_zero",
  "dm_integrity",
  "zram",
  "overlay",
];

/**
 * For boots that attest (a kbs key provider): the TEE guest drivers, which pull in tsm/tsm_report
 * and configfs themselves; on a guest of the other TEE, or of none, their init fails with ENODEV,
 * which `modprobe -a` reports and goes past (exit 1). Loaded in the same modprobe run (each run
 * costs a process start, ~0.1 s under TCG); a boot that does not attest skips them and the
 * configfs mount (measured: together ~0.15 s of the activation step under TCG).
 */
export const TEE_MODULES: readonly string[] = ["configfs", TEE_DRIVERS.tdx.module, TEE_DRIVERS.snp.module];

export interface LoadModulesOptions {
  /** The boot attests: load TEE_MODULES too and mount configfs. */
  tee: boolean;
  /** The program runner (tests record the calls). */
  runner?: typeof run;
  /** configfs's mount point (tests use a temp dir). */
  configfsRoot?: string;
}

/**
 * Load KERNEL_MODULES (and with `tee`, TEE_MODULES, mounting configfs if nobody has). Never fails by itself: built-in or absent
 * modules are fine, and a missing driver or mount shows up, naming it, where it is needed (the
 * dm targets when used, the TEE interface in attest/platform.ts).
 */
export async function loadModules(options: LoadModulesOptions): Promise<void> {
  const runner = options.runner ?? run;
  const root = options.configfsRoot ?? CONFIGFS_ROOT;
  const modules = options.tee ? [...KERNEL_MODULES, ...TEE_MODULES] : KERNEL_MODULES;
  await runner("modprobe", ["-a", ...modules], { okCodes: [0, 1] }).catch((e) => log.debug(String(e)));
  if (!options.tee) return;
  // The directory exists once configfs is registered; dracut's systemd mounts it only when it
  // existed at sysinit (configfs built in), so with configfs as a module it is mounted here.
  if (!existsSync(root) || isConfigfs(root)) return;
  await runner("mount", ["-t", "configfs", "configfs", root]).catch((e) => log.debug(String(e)));
}
