/**
 * The TDX CC event log (CCEL): the ACPI table gives the log area's length; the log itself is a
 * TCG crypto-agile event log (a SHA-1-format Spec ID header, then TCG_PCR_EVENT2 records) padded
 * with 0xFF or 0x00 to the end of the area. guest-components sends the log trimmed to its last
 * event and terminated with eight 0xFF bytes; this module does the same.
 */
import { existsSync, readFileSync } from "node:fs";
import { FdeError } from "../errors.ts";

/** Digest sizes by TCG algorithm id (SHA-1, SHA-256, SHA-384, SHA-512, SM3-256). */
const DIGEST_SIZES: Record<number, number> = { 4: 20, 11: 32, 12: 48, 13: 64, 18: 32 };

export interface CcelEvent {
  /** Measurement-register index as stored (CC MR index: 1..4 map to RTMR0..3). */
  mrIndex: number;
  type: number;
  digests: { alg: number; digest: Uint8Array }[];
  data: Uint8Array;
}

export interface ParsedCcel {
  /** Byte length up to the end of the last event. */
  length: number;
  /** Events after the Spec ID header. */
  events: CcelEvent[];
}

function isTerminator(buf: Uint8Array, at: number): boolean {
  if (at + 8 > buf.length) return true;
  const head = buf.subarray(at, at + 8);
  return head.every((b) => b === 0xff) || head.every((b) => b === 0);
}

export function parseCcel(buf: Uint8Array): ParsedCcel {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const need = (at: number, n: number) => {
    if (at + n > buf.length) throw new FdeError(`CCEL event log truncated at byte ${at}`);
  };
  // Spec ID header: pcrIndex, eventType, SHA-1 digest (20), eventSize, event.
  need(0, 32);
  let at = 32 + view.getUint32(28, true);
  need(0, at);
  const events: CcelEvent[] = [];
  while (!isTerminator(buf, at)) {
    need(at, 12);
    const mrIndex = view.getUint32(at, true);
    const type = view.getUint32(at + 4, true);
    const count = view.getUint32(at + 8, true);
    let p = at + 12;
    const digests: CcelEvent["digests"] = [];
    for (let i = 0; i < count; i++) {
      need(p, 2);
      const alg = view.getUint16(p, true);
      const size = DIGEST_SIZES[alg];
      if (size === undefined)
        throw new FdeError(`CCEL event at byte ${at}: unknown digest algorithm 0x${alg.toString(16)}`);
      need(p + 2, size);
      digests.push({ alg, digest: buf.subarray(p + 2, p + 2 + size) });
      p += 2 + size;
    }
    need(p, 4);
    const size = view.getUint32(p, true);
    need(p + 4, size);
    events.push({ mrIndex, type, digests, data: buf.subarray(p + 4, p + 4 + size) });
    at = p + 4 + size;
  }
  return { length: at, events };
}

/**
 * Log area minimum length (LAML) from the raw ACPI CCEL table: header (36 bytes), CC type,
 * sub-type, 2 reserved bytes, then LAML (u64) and LASA (u64).
 */
export function ccelTableLength(table: Uint8Array): number | undefined {
  if (table.length < 56 || new TextDecoder().decode(table.subarray(0, 4)) !== "CCEL") return undefined;
  return Number(new DataView(table.buffer, table.byteOffset, table.byteLength).getBigUint64(40, true));
}

/** The event log as the TDX evidence carries it, or undefined when the firmware exposes none. */
export function readCcel(sysRoot: string): Uint8Array | undefined {
  const dataPath = `${sysRoot}/sys/firmware/acpi/tables/data/CCEL`;
  if (!existsSync(dataPath)) return undefined;
  let data: Uint8Array = readFileSync(dataPath);
  const tablePath = `${sysRoot}/sys/firmware/acpi/tables/CCEL`;
  const laml = existsSync(tablePath) ? ccelTableLength(readFileSync(tablePath)) : undefined;
  if (laml !== undefined && laml < data.length) data = data.subarray(0, laml);
  const { length } = parseCcel(data);
  const out = new Uint8Array(length + 8);
  out.set(data.subarray(0, length));
  out.fill(0xff, length);
  return out;
}
