/**
 * Runtime measurement (issue #17): extend the register trustee's verifiers replay with an
 * Attestation Agent Event Log (AAEL) entry and keep the entry for the evidence, so the key
 * broker's policy sees what the guest loaded after measured boot (e.g. a configuration bundle
 * from instance user data).
 *
 * - TDX: RTMR3 (CC MR 4, AAEL's PCR 17 mapped as guest-components maps it), SHA-384, through
 *   the kernel's measurement sysfs file or, on kernels without it, TDX_CMD_EXTEND_RTMR.
 * - TPM: PCR 23, SHA-256 bank, through ESAPI (not guest-components' default PCR 17, which
 *   locality 0 cannot extend: registers.ts).
 * - SEV-SNP, sample, nothing: no register a verifier replays -> `{ unavailable: reason }`.
 * There is no no-op measurer: a caller that gets `unavailable` must not use what it wanted to
 * measure (upstream's NopeMeasure is deliberately not copied).
 *
 * The records are kept in RECORDS_PATH (0600) and attached to the evidence by attest/.
 */
export {
  AAEL_DOMAIN,
  type AaelEvent,
  aaelEvent,
  aaelText,
  entryDigest,
  LOAD_CONFIG_UNTRUSTED,
  loadConfigUntrusted,
} from "./aael.ts";
export { type MeasureOptions, type Measurer, type MeasurerResult, openMeasurer } from "./open.ts";
export { RECORDS_DIR, RECORDS_PATH, readRecords } from "./records.ts";
export { type ReferenceValue, referenceValue } from "./reference.ts";
export { TDX_REGISTER, TPM_REGISTER } from "./registers.ts";
