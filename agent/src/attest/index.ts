/**
 * Picks the evidence source. Auto-detection follows guest-components' order (tdx, then snp,
 * then tpm; the SGX/Azure/CSV/CCA/SE attesters in between are not supported here). The TPM
 * module (ESAPI bindings) is imported only when TPM evidence is wanted. Unlike
 * upstream, no TEE does NOT fall back to the unsigned "sample" evidence: that needs an explicit
 * `tee = "sample"` in the provider config or CRYPTPILOT_TEE=sample.
 */
import { KeyProviderError } from "../errors.ts";
import { createSampleAttester } from "./sample.ts";
import { createSnpAttester, detectSnp } from "./snp.ts";
import { createTdxAttester, detectTdx } from "./tdx.ts";
import type { TpmAttesterOptions } from "./tpm.ts";
import type { TsmFs } from "./tsm.ts";
import { type Attester, DEFAULT_PATHS, type HostPaths, TEE_TYPES, type TeeType } from "./types.ts";

export type { Attester, TeeType } from "./types.ts";

export interface SelectOptions {
  /** `tee` from the provider config; wins over the environment. */
  tee?: string;
  env?: Record<string, string | undefined>;
  paths?: HostPaths;
  fs?: TsmFs;
  /** TCTI and event log for TPM evidence (default: TPM2TOOLS_TCTI/TCTI, else /dev/tpmrm0). */
  tpm?: TpmAttesterOptions;
}

async function create(tee: TeeType, paths: HostPaths, options: SelectOptions): Promise<Attester> {
  switch (tee) {
    case "tdx":
      return createTdxAttester(paths, options.fs);
    case "snp":
      return createSnpAttester(paths, options.fs);
    case "sample":
      return createSampleAttester();
    case "tpm":
      return (await import("./tpm.ts")).createTpmAttester(options.tpm);
  }
}

/** The TEE this machine offers, or undefined. */
export async function detectTee(paths: HostPaths = DEFAULT_PATHS, fs?: TsmFs): Promise<TeeType | undefined> {
  if (await detectTdx(paths, fs)) return "tdx";
  if (detectSnp(paths)) return "snp";
  if ((await import("./tpm.ts")).detectTpm(paths)) return "tpm";
  return undefined;
}

export async function selectAttester(options: SelectOptions = {}): Promise<Attester> {
  const paths = options.paths ?? DEFAULT_PATHS;
  const env = options.env ?? process.env;
  const forced = options.tee ?? env.CRYPTPILOT_TEE;
  if (forced !== undefined && forced !== "") {
    if (!(TEE_TYPES as readonly string[]).includes(forced)) {
      throw new KeyProviderError(
        "kbs",
        `unknown TEE "${forced}" (from ${options.tee ? "the tee setting" : "CRYPTPILOT_TEE"})`,
        {
          hint: `use one of: ${TEE_TYPES.join(", ")}`,
        },
      );
    }
    return create(forced as TeeType, paths, options);
  }
  const tee = await detectTee(paths, options.fs);
  if (tee === undefined) {
    throw new KeyProviderError(
      "kbs",
      `no TEE found: no configfs-tsm TDX provider under ${paths.tsmRoot}, no ${paths.sysRoot}/dev/tdx_guest, no ${paths.sysRoot}/sys/devices/platform/sev-guest, no ${paths.sysRoot}/dev/tpmrm0 or /dev/tpm0`,
      {
        hint: 'run inside a TDX or SEV-SNP guest or with a TPM, or set tee = "sample" in the kbs provider config for development',
      },
    );
  }
  return create(tee, paths, options);
}
