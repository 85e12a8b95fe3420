/**
 * Picks the evidence source. Auto-detection follows guest-components' order (tdx, then snp,
 * then tpm; the SGX/Azure/CSV/CCA/SE attesters in between are not supported here). Unlike
 * upstream, no TEE does NOT fall back to the unsigned "sample" evidence: that needs an explicit
 * `tee = "sample"` in the provider config or CRYPTPILOT_TEE=sample.
 */
import { KeyProviderError } from "../errors.ts";
import { createSampleAttester } from "./sample.ts";
import { createSnpAttester, detectSnp } from "./snp.ts";
import { createTdxAttester, detectTdx } from "./tdx.ts";
import type { TsmFs } from "./tsm.ts";
import { type Attester, DEFAULT_PATHS, type HostPaths, TEE_TYPES, type TeeType } from "./types.ts";

export type { Attester, TeeType } from "./types.ts";

export interface SelectOptions {
  /** `tee` from the provider config; wins over the environment. */
  tee?: string;
  env?: Record<string, string | undefined>;
  paths?: HostPaths;
  fs?: TsmFs;
}

function create(tee: TeeType, paths: HostPaths, fs?: TsmFs): Promise<Attester> | Attester {
  switch (tee) {
    case "tdx":
      return createTdxAttester(paths, fs);
    case "snp":
      return createSnpAttester(paths, fs);
    case "sample":
      return createSampleAttester();
    case "tpm":
      throw new KeyProviderError("kbs", "TPM evidence is not available in this build", {
        hint: 'use tee = "tdx" or "snp", or the tpm2 key provider',
      });
  }
}

/** The TEE this machine offers, or undefined. */
export async function detectTee(paths: HostPaths = DEFAULT_PATHS, fs?: TsmFs): Promise<TeeType | undefined> {
  if (await detectTdx(paths, fs)) return "tdx";
  if (detectSnp(paths)) return "snp";
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
    return create(forced as TeeType, paths, options.fs);
  }
  const tee = await detectTee(paths, options.fs);
  if (tee === undefined) {
    throw new KeyProviderError(
      "kbs",
      `no TEE found: no configfs-tsm TDX provider under ${paths.tsmRoot}, no ${paths.sysRoot}/dev/tdx_guest, no ${paths.sysRoot}/sys/devices/platform/sev-guest`,
      {
        hint: 'run inside a TDX or SEV-SNP guest, or set tee = "sample" in the kbs provider config for development',
      },
    );
  }
  return create(tee, paths, options.fs);
}
