/**
 * Picks the register for this machine, the same way attest/ picks the evidence (a forced `tee`
 * wins, else TDX by its CPU/kernel signs, else a TPM): the measurement must land in the register
 * the evidence covers. When there is none, says why; there is no no-op measurer.
 */
import { existsSync } from "node:fs";
import { detectPlatform, TEE_DRIVERS } from "../attest/platform.ts";
import type { TsmFs } from "../attest/tsm.ts";
import { DEFAULT_PATHS, type HostPaths, TEE_TYPES, type TeeType } from "../attest/types.ts";
import { log } from "../log.ts";
import { type AaelEvent, aaelText, encodeEntry, entryDigest } from "./aael.ts";
import { appendRecord, RECORDS_PATH, truncateRecords } from "./records.ts";
import type { RegisterSpec } from "./registers.ts";
import { openTdxRegister, type TdxExtendOptions } from "./tdx.ts";
import { openTpmRegister } from "./tpm.ts";

export interface Measurer {
  /** The register extended, e.g. "TDX RTMR3" (for the console and the log). */
  readonly register: string;
  /** Records the entry and extends the register with its digest; throws FdeError on failure. */
  extend(event: AaelEvent): Promise<void>;
}

/** A measurer, or why there is none (one sentence naming the interface or module missing). */
export type MeasurerResult = Measurer | { unavailable: string };

export interface MeasureOptions {
  /** `tee` from the kbs provider config; wins over CRYPTPILOT_TEE and detection. */
  tee?: string;
  env?: Record<string, string | undefined>;
  paths?: HostPaths;
  fs?: TsmFs;
  /** TCTI for the TPM (default: TPM2TOOLS_TCTI/TCTI, else /dev/tpmrm0). */
  tcti?: string;
  /** Where the records go (default RECORDS_PATH under paths.sysRoot). */
  records?: string;
  /** TDX seams for tests (sysfs directory, ioctl). */
  tdx?: TdxExtendOptions;
}

/** The low-level extend of one register with one digest of its algorithm. */
export interface RegisterExtender {
  readonly spec: RegisterSpec;
  /** How: "sysfs ...", "ioctl ...", "ESAPI ...". */
  readonly via: string;
  extend(digest: Uint8Array): Promise<void>;
}

export async function openMeasurer(options: MeasureOptions = {}): Promise<MeasurerResult> {
  const paths = options.paths ?? DEFAULT_PATHS;
  const env = options.env ?? process.env;
  const forced = options.tee ?? env.CRYPTPILOT_TEE;
  let tee: TeeType | undefined;
  if (forced !== undefined && forced !== "") {
    if (!(TEE_TYPES as readonly string[]).includes(forced))
      return { unavailable: `unknown TEE "${forced}"; use one of: ${TEE_TYPES.join(", ")}` };
    tee = forced as TeeType;
  } else {
    try {
      const { platform } = await detectPlatform(paths, options.fs);
      if (platform !== "none") tee = platform;
      else if (existsSync(`${paths.sysRoot}/dev/tpmrm0`) || existsSync(`${paths.sysRoot}/dev/tpm0`))
        tee = "tpm";
    } catch (err) {
      return { unavailable: (err as Error).message };
    }
  }
  let reg: RegisterExtender | { unavailable: string };
  switch (tee) {
    case "tdx":
      reg = openTdxRegister(paths.sysRoot, options.tdx);
      break;
    case "tpm":
      reg = await openTpmRegister(options.tcti, env);
      break;
    case "snp":
      return {
        unavailable: `${TEE_DRIVERS.snp.name} has no runtime measurement register that trustee's SNP verifier replays (no RTMR; a vTPM is not used in a CVM)`,
      };
    case "sample":
      return { unavailable: 'tee = "sample" has no measurement register' };
    case undefined:
      return {
        unavailable: `no measurement register: not a TDX guest (CPU flag tdx_guest, ${TEE_DRIVERS.tdx.device}) and no TPM (${paths.sysRoot}/dev/tpmrm0)`,
      };
  }
  if ("unavailable" in reg) return reg;
  return measurer(reg, options.records ?? `${paths.sysRoot}${RECORDS_PATH}`);
}

/** Record first, then extend; a failed extend takes the record back so log and register agree. */
export function measurer(reg: RegisterExtender, records: string): Measurer {
  return {
    register: reg.spec.name,
    async extend(event: AaelEvent) {
      const entry = encodeEntry(event, reg.spec.mrIndex, reg.spec.alg);
      const before = appendRecord(records, entry);
      try {
        await reg.extend(entryDigest(event, reg.spec.alg));
      } catch (err) {
        try {
          truncateRecords(records, before);
        } catch (undo) {
          log.warn(`cannot take back the AAEL record in ${records}: ${(undo as Error).message}`);
        }
        throw err;
      }
      log.info(`measured "${aaelText(event)}" into ${reg.spec.name} (${reg.via})`);
    },
  };
}
