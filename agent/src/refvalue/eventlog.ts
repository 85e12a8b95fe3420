/**
 * TCG crypto-agile event logs (TCG PC Client PFP spec): the TDX CCEL and the TPM log Linux
 * exposes at /sys/kernel/security/tpm0/binary_bios_measurements. The first record is a SHA-1
 * format TCG_PCR_EVENT carrying the Spec ID event, which lists the digest sizes of the rest.
 */

import { u16, u32 } from "../disk/image/source.ts";
import { FdeError } from "../errors.ts";
import { toHex } from "./hash.ts";

export const EV_NO_ACTION = 0x3;
export const EV_EVENT_TAG = 0x6;
export const EV_IPL = 0xd;
export const EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003;

/** TCG algorithm ids and the labels the CoCo trustee parser uses. */
export const TCG_ALG: Record<number, string> = {
  4: "SHA-1",
  11: "SHA-256",
  12: "SHA-384",
  13: "SHA-512",
  18: "SM3",
};

export interface LogEvent {
  /** PCR index (TPM log) or CC measurement-register index (CCEL: 1..4 = RTMR0..3). */
  index: number;
  type: number;
  /** Lower-case hex digest per algorithm label ("SHA-384", ...). */
  digests: Record<string, string>;
  data: Uint8Array;
}

export interface EventLog {
  /** Digest algorithms announced by the Spec ID event: TCG id and size. */
  algorithms: { id: number; size: number }[];
  events: LogEvent[];
}

export function parseEventLog(log: Uint8Array, what: string): EventLog {
  const bad = (why: string, at: number) =>
    new FdeError(`${what}: not a valid TCG crypto-agile event log (${why} at byte ${at})`);
  if (log.length < 32 + 28) throw bad("too short", 0);
  if (u32(log, 4) !== EV_NO_ACTION) throw bad("first event is not EV_NO_ACTION", 4);
  const headerSize = u32(log, 28);
  const spec = log.subarray(32, 32 + headerSize);
  if (new TextDecoder().decode(spec.subarray(0, 15)) !== "Spec ID Event03")
    throw bad("no 'Spec ID Event03' header", 32);
  const count = u32(spec, 24);
  const algorithms: { id: number; size: number }[] = [];
  for (let i = 0; i < count; i++) algorithms.push({ id: u16(spec, 28 + i * 4), size: u16(spec, 30 + i * 4) });
  const sizes = new Map(algorithms.map((a) => [a.id, a.size]));

  const events: LogEvent[] = [];
  let o = 32 + headerSize;
  while (o + 8 <= log.length) {
    // The unused tail of a CCEL area is all 0xFF or all 0x00.
    const head = log.subarray(o, o + 8);
    if (head.every((b) => b === 0xff) || head.every((b) => b === 0)) break;
    const start = o;
    if (o + 12 > log.length) throw bad("truncated event header", start);
    const index = u32(log, o);
    const type = u32(log, o + 4);
    const n = u32(log, o + 8);
    o += 12;
    const digests: Record<string, string> = {};
    for (let i = 0; i < n; i++) {
      if (o + 2 > log.length) throw bad("truncated digest", start);
      const alg = u16(log, o);
      const size = sizes.get(alg);
      if (size === undefined) throw bad(`digest algorithm 0x${alg.toString(16)} not in the Spec ID event`, o);
      if (o + 2 + size > log.length) throw bad("truncated digest", o);
      digests[TCG_ALG[alg] ?? `0x${alg.toString(16)}`] = toHex(log.subarray(o + 2, o + 2 + size));
      o += 2 + size;
    }
    if (o + 4 > log.length) throw bad("truncated event size", start);
    const size = u32(log, o);
    o += 4;
    if (o + size > log.length) throw bad("event data runs past the end", start);
    events.push({ index, type, digests, data: log.subarray(o, o + size) });
    o += size;
  }
  return { algorithms, events };
}

/** GRUB's EV_IPL text: up to the first NUL (some GRUB builds log a stray byte after it). */
export function eventText(e: LogEvent): string {
  const nul = e.data.indexOf(0);
  return new TextDecoder().decode(e.data.subarray(0, nul < 0 ? e.data.length : nul));
}

/** File paths in the device path of an EV_EFI_BOOT_SERVICES_APPLICATION (UEFI_IMAGE_LOAD_EVENT). */
export function imageLoadFilePaths(e: LogEvent): string[] {
  const d = e.data;
  if (d.length < 32) return [];
  const length = u32(d, 24);
  const paths: string[] = [];
  for (let o = 32; o + 4 <= Math.min(d.length, 32 + length); ) {
    const nodeType = d[o]!;
    const subType = d[o + 1]!;
    const len = u16(d, o + 2);
    if (len < 4 || nodeType === 0x7f) break;
    if (nodeType === 4 && subType === 4) {
      let s = "";
      for (let i = o + 4; i + 1 < o + len; i += 2) {
        const c = u16(d, i);
        if (c === 0) break;
        s += String.fromCharCode(c);
      }
      paths.push(s);
    }
    o += len;
  }
  return paths;
}

/** The tagged-event payload of an EV_EVENT_TAG (TCG_PCClientTaggedEvent): id and data. */
export function taggedEvent(e: LogEvent): { id: number; data: Uint8Array } {
  const size = u32(e.data, 4);
  return { id: u32(e.data, 0), data: e.data.subarray(8, 8 + size) };
}
