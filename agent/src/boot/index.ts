/** Runs one boot stage: load the config, run the stage's numbered steps, report; fail closed. */
import { DEFAULT_GLOBAL, type GlobalConfig } from "../config/fde.ts";
import { type LoadedConfig, loadConfig } from "../config/index.ts";
import { HANDOFF_DIR, readHandoff, writeHandoff } from "../config/sources/handoff.ts";
import { type MeasureBundle, selectConfig } from "../config/sources/select.ts";
import type { UserDataSource } from "../config/sources/types.ts";
import { GUEST_LVM_SYSTEM_DIR } from "../disk/lvm.ts";
import * as N from "../disk/names.ts";
import { formatError } from "../errors.ts";
import { isVerbose, log, setVerbose } from "../log.ts";
import { runSteps, StepsFailed, seconds } from "../steps.ts";
import { afterSysrootSteps } from "./after-sysroot.ts";
import { beforeSysrootSteps } from "./before-sysroot.ts";
import { realBootOps, realMountOps } from "./disk-ops.ts";
import { type FailureDeps, failClosed, failureTail, realFailureDeps } from "./failure.ts";
import { AFTER_SYSROOT, BEFORE_SYSROOT, type Stage } from "./stages.ts";

export type { Stage } from "./stages.ts";

const SYSROOT = "/sysroot";
const RUN_DIR = "/run/cryptpilot";

export async function runStage(
  stage: Stage,
  configDir: string,
  failureDeps: FailureDeps = realFailureDeps,
): Promise<number> {
  // Until global.toml is read, a failure takes the safe default: power off, no shell.
  let boot: GlobalConfig["boot"] = DEFAULT_GLOBAL.boot;
  const fail = async (text: string, exitCode: number): Promise<number> => {
    failureDeps.write(`${text}\n${failureTail(boot)}`);
    await failClosed(boot, { sysroot: SYSROOT, runDir: RUN_DIR }, failureDeps);
    return exitCode;
  };
  const start = performance.now();
  const what = `cryptpilot-fde ${stage}`;
  try {
    let config: LoadedConfig;
    try {
      config = await loadStageConfig(stage, configDir, (g) => {
        boot = g.boot;
      });
    } catch (err) {
      return await fail(`${what}: cannot load the configuration in ${configDir}:\n${formatError(err)}`, 2);
    }
    boot = config.global.boot;
    if (config.global.boot.verbose) setVerbose(true);
    const fde = config.fde;
    if (!fde) {
      log.info(`${what}: no ${configDir}/fde.toml, this system is not configured for FDE; nothing to do`);
      return 0;
    }
    log.info(
      `${what}: delta ${fde.rootfs.deltaLocation}, backend ${fde.rootfs.deltaBackend}, rootfs ${fde.rootfs.encrypt ? `encrypted (${fde.rootfs.encrypt.type})` : "not encrypted"}`,
    );
    if (stage === BEFORE_SYSROOT) {
      await runSteps(what, beforeSysrootSteps(fde), {
        configDir,
        fde,
        ops: realBootOps({ systemDir: GUEST_LVM_SYSTEM_DIR }),
        verityName: fde.rootfs.deltaBackend === "overlayfs" ? N.ROOTFS : N.ROOTFS_VERITY,
        ntpServers: config.global.boot.ntpServers,
      });
    } else {
      await runSteps(what, afterSysrootSteps(fde), {
        fde,
        sysroot: SYSROOT,
        runDir: RUN_DIR,
        mountsFile: "/proc/self/mounts",
        mounts: realMountOps,
      });
    }
    log.info(`${what}: finished in ${seconds(performance.now() - start)}`);
    return 0;
  } catch (err) {
    const text = err instanceof StepsFailed ? err.message : formatError(err, isVerbose());
    return await fail(text, err instanceof StepsFailed ? err.exitCode : 1);
  }
}

/** Where a stage's configuration can come from besides the initrd (tests pass their own). */
export interface StageConfigDeps {
  /** The user-data sources, in order (upstream: Alibaba Cloud ECS only). */
  sources: () => Promise<UserDataSource[]>;
  measure: MeasureBundle;
  /** Where the first stage leaves its choice for the later one. */
  handoffDir: string;
}

// Loaded when used: the IMDS client and measure/ (TEE detection, TPM) cost every stage start-up otherwise.
export const realStageConfigDeps: StageConfigDeps = {
  sources: async () => [(await import("../config/sources/aliyun.ts")).aliyunUserData()],
  measure: async (bundle) => (await import("./measure-config.ts")).measureBundle(bundle),
  handoffDir: HANDOFF_DIR,
};

/**
 * The configuration a stage runs with (config/sources/): the first stage picks user data (measured)
 * or the initrd's and hands the choice on; the later stage takes the handoff, never fetching again.
 * `onInitrdGlobal` gets the initrd's [global] first, so a failure while choosing follows it.
 */
export async function loadStageConfig(
  stage: Stage,
  configDir: string,
  onInitrdGlobal: (g: GlobalConfig) => void,
  deps: StageConfigDeps = realStageConfigDeps,
): Promise<LoadedConfig> {
  if (stage === AFTER_SYSROOT) {
    const handed = await readHandoff(deps.handoffDir);
    return handed ? { global: handed.bundle.global, fde: handed.bundle.fde } : await loadConfig(configDir);
  }
  const initrd = await loadConfig(configDir);
  onInitrdGlobal(initrd.global);
  const selected = await selectConfig({
    initrd,
    sources: initrd.fde ? await deps.sources() : [],
    measure: deps.measure,
    warn: (line) => log.warn(line),
    info: (line) => log.info(line),
  });
  await writeHandoff(selected.userData?.text, deps.handoffDir);
  return selected.config;
}
