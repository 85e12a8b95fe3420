/**
 * Measuring a user-data configuration bundle before the first stage uses it (issue #17): the
 * AAEL entry `cryptpilot.alibabacloud.com load_config_untrusted <sha384>` into the register the
 * evidence covers (measure/). No register, or a failed extend: the bundle is refused.
 */
import { forcedTees } from "../config/fde.ts";
import type { MeasureBundle } from "../config/sources/index.ts";
import { loadConfigUntrusted, type MeasureOptions, openMeasurer } from "../measure/index.ts";
import { loadModules } from "./kernel-modules.ts";

export interface MeasureBundleDeps {
  /** Loads the TEE guest drivers (the TDX measurement interface comes with tdx_guest). */
  loadTeeModules: () => Promise<void>;
  open: (options: MeasureOptions) => ReturnType<typeof openMeasurer>;
}

const realDeps: MeasureBundleDeps = {
  loadTeeModules: () => loadModules({ tee: true }),
  open: openMeasurer,
};

export function bundleMeasurer(deps: MeasureBundleDeps = realDeps): MeasureBundle {
  return async (bundle) => {
    await deps.loadTeeModules();
    // A kbs provider's forced `tee`, if the bundle names one: the evidence it asks for decides the register.
    const tee = forcedTees(bundle.bundle.fde)[0];
    const m = await deps.open(tee === undefined ? {} : { tee });
    if ("unavailable" in m) return { refused: m.unavailable };
    await m.extend(loadConfigUntrusted(bundle.sha384));
    return { register: m.register };
  };
}

export const measureBundle: MeasureBundle = bundleMeasurer();
