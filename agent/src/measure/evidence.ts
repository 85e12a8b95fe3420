/**
 * The AAEL records as the evidence carries them (guest-components' read_eventlog):
 * - TDX `cc_eventlog`: the firmware's CCEL (without its end marker), then the records, then the
 *   end marker; without a CCEL, a Spec ID header declaring SHA-384 comes first.
 * - TPM `aa_eventlog` (openanolis trustee): a standalone log, Spec ID header (SHA-256), records,
 *   end marker; replayed from zero into the SHA-256 PCRs and compared with the quote.
 */
import type { MeasureAlg } from "./aael.ts";
import { LOG_END, standaloneLog } from "./records.ts";

/** `ccel` as readCcel returns it (ending in LOG_END) or undefined; `records` from readRecords. */
export function withAael(ccel: Uint8Array | undefined, records: Uint8Array | undefined, alg: MeasureAlg) {
  if (!records) return ccel;
  if (!ccel) return standaloneLog(records, [alg]);
  const body = ccel.subarray(0, ccel.length - LOG_END.length);
  const out = new Uint8Array(body.length + records.length + LOG_END.length);
  out.set(body);
  out.set(records, body.length);
  out.set(LOG_END, body.length + records.length);
  return out;
}
