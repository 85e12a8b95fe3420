/**
 * Picks the evidence source. Auto-detection follows guest-components' order (tdx, then snp,
 * then tpm; the SGX/Azure/CSV/CCA/SE attesters in between are not supported here). The platform
 * comes from the CPU and kernel (platform.ts), not from the attestation interface: a TDX or SNP
 * guest whose interface is missing fails naming the driver; it never falls back to TPM
 * evidence (a vTPM in a CVM may be the host's) nor to sample evidence. Only an explicit `tee`
 * setting (or CRYPTPILOT_TEE) picks another source. The TPM module (ESAPI bindings) is imported
 * only when TPM evidence is wanted.
 */
import { KeyProviderError } from "../errors.ts";
import { log } from "../log.ts";
import type { SnpEvidenceFormat } from "../providers/snp-format.ts";
import {
  attestInterface,
  detectPlatform,
  missingInterface,
  SNP_PLATFORM_DEVICE,
  TEE_DRIVERS,
} from "./platform.ts";
import { createSampleAttester } from "./sample.ts";
import { createSnpAttester } from "./snp.ts";
import { createTdxAttester } from "./tdx.ts";
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
  /** `snp_evidence_format` from the provider config (providers/snp-format.ts). */
  snpEvidenceFormat?: SnpEvidenceFormat;
}

async function create(tee: TeeType, paths: HostPaths, options: SelectOptions): Promise<Attester> {
  switch (tee) {
    case "tdx":
      return createTdxAttester(paths, options.fs);
    case "snp":
      return createSnpAttester(paths, options.fs, { format: options.snpEvidenceFormat });
    case "sample":
      return createSampleAttester();
    case "tpm":
      return (await import("./tpm.ts")).createTpmAttester(options.tpm);
  }
}

/**
 * The TEE this machine is (tdx, snp: from the CPU and kernel, whether or not its attestation
 * interface is there), else tpm when it has a TPM, else undefined.
 */
export async function detectTee(paths: HostPaths = DEFAULT_PATHS, fs?: TsmFs): Promise<TeeType | undefined> {
  const { platform } = await detectPlatform(paths, fs);
  if (platform !== "none") return platform;
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
  // The detection's time is logged (verbose) for bench/boot.ts: issue #15 bounds what it adds.
  const started = performance.now();
  const detected = () => `detected in ${(performance.now() - started).toFixed(1)} ms`;
  const info = await detectPlatform(paths, options.fs);
  if (info.platform !== "none") {
    const via = attestInterface(info.platform, info.interfaces);
    if (via === undefined) {
      const { message, hint } = missingInterface({ ...info, platform: info.platform }, paths.tsmRoot);
      throw new KeyProviderError("kbs", message, { hint });
    }
    log.debug(
      `attest: ${info.platform} guest (${info.signs.join(", ")}), evidence via ${via}, ${detected()}`,
    );
    return create(info.platform, paths, options);
  }
  if ((await import("./tpm.ts")).detectTpm(paths)) {
    log.debug(`attest: no TDX or SEV-SNP sign, TPM evidence, ${detected()}`);
    return create("tpm", paths, options);
  }
  throw new KeyProviderError(
    "kbs",
    `no TEE found: no TDX or SEV-SNP sign (CPU flag tdx_guest, ${paths.sysRoot}${SNP_PLATFORM_DEVICE}, a configfs-tsm provider under ${paths.tsmRoot}, ${paths.sysRoot}${TEE_DRIVERS.tdx.device} or ${TEE_DRIVERS.snp.device}) and no ${paths.sysRoot}/dev/tpmrm0 or /dev/tpm0`,
    {
      hint: 'run inside a TDX or SEV-SNP guest or with a TPM, or set tee = "sample" in the kbs provider config for development',
    },
  );
}
