/**
 * The registers AAEL entries go into, one definition each. The TCG2 entry records `mrIndex`,
 * the index trustee's verifier replays the entry into and compares with the quote.
 */
import type { MeasureAlg } from "./aael.ts";

export interface RegisterSpec {
  /** For messages and `show-reference-value`, e.g. "TDX RTMR3". */
  readonly name: string;
  /** The index written into each TCG2 entry (what the verifier replays against). */
  readonly mrIndex: number;
  readonly alg: MeasureAlg;
  /** The register's value at boot, before any entry (what replay starts from). */
  readonly initial: Uint8Array;
}

/**
 * TDX: RTMR3 (CC measurement register 4). AAEL's default PCR 17 maps to CC MR 4 in
 * guest-components (pcr_to_ccmr), and trustee's TDX verifier replays CC MR 4 against RTMR3.
 * RTMRs start at zero; SHA-384.
 */
export const TDX_RTMR = 3;
export const TDX_REGISTER: RegisterSpec = {
  name: `TDX RTMR${TDX_RTMR}`,
  mrIndex: TDX_RTMR + 1,
  alg: "sha384",
  initial: new Uint8Array(48),
};

/**
 * TPM: PCR 23 (SHA-256 bank). guest-components' default AAEL register is PCR 17, but a TPM only
 * lets localities 2-4 extend PCR 17 (DRTM; /dev/tpmrm0 is locality 0, so TPM2_PCR_Extend fails
 * with TPM_RC_LOCALITY) and PCR 17 starts at all-ones, while trustee's TPM verifier replays the
 * AA event log from zero. PCR 23 (application support) is extendable from locality 0, starts at
 * zero and no boot component extends it. It is resettable from locality 0, so it proves what
 * the guest recorded, not that guest root did not reset it later (root holds the key anyway).
 */
export const TPM_PCR = 23;
export const TPM_REGISTER: RegisterSpec = {
  name: `TPM PCR ${TPM_PCR} (SHA-256)`,
  mrIndex: TPM_PCR,
  alg: "sha256",
  initial: new Uint8Array(32),
};
