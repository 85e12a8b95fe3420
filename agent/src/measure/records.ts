/**
 * The AAEL records this boot extended, kept for the evidence: raw TCG2 entries (aael.ts), one
 * after another, in a root-only file under /run (tmpfs, survives switch-root, gone at the next
 * boot, when the registers are reset too). attest/ wraps them with a Spec ID header and the end
 * marker (eventLog()) for the evidence.
 */
import {
  closeSync,
  constants,
  fstatSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readSync,
  writeSync,
} from "node:fs";
import { FdeError } from "../errors.ts";
import { ALG_DIGEST_SIZE, EV_EVENT_TAG, type MeasureAlg, TCG_ALG_ID } from "./aael.ts";

export const RECORDS_DIR = "/run/cryptpilot";
export const RECORDS_PATH = `${RECORDS_DIR}/aael`;

/** The records file is never larger than this (a config entry is ~200 bytes). */
export const RECORDS_MAX = 64 * 1024;

/** Appends one encoded entry; returns the old length so a failed extend can take it back. */
export function appendRecord(path: string, entry: Uint8Array): number {
  mkdirSync(dirOf(path), { recursive: true, mode: 0o700 });
  let fd: number;
  try {
    // O_NOFOLLOW: a planted symlink must not redirect the write; 0600: the log is ours.
    fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  } catch (cause) {
    throw new FdeError(`cannot open the runtime measurement log ${path}: ${(cause as Error).message}`, {
      cause,
    });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.uid !== process.getuid?.() || (st.mode & 0o077) !== 0)
      throw new FdeError(
        `the runtime measurement log ${path} is not a private regular file owned by this user`,
      );
    if (st.size + entry.length > RECORDS_MAX)
      throw new FdeError(`the runtime measurement log ${path} would exceed ${RECORDS_MAX} bytes`);
    writeAll(fd, entry, st.size);
    return st.size;
  } finally {
    closeSync(fd);
  }
}

/** Cuts the file back to `length` (undoing appendRecord after a failed extend). */
export function truncateRecords(path: string, length: number): void {
  const fd = openSync(path, constants.O_WRONLY | constants.O_NOFOLLOW);
  try {
    ftruncateSync(fd, length);
  } finally {
    closeSync(fd);
  }
}

/** The records, or undefined when nothing was measured this boot. Bounded by RECORDS_MAX. */
export function readRecords(path: string = RECORDS_PATH): Uint8Array | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new FdeError(`cannot read the runtime measurement log ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new FdeError(`the runtime measurement log ${path} is not a regular file`);
    if (st.size > RECORDS_MAX)
      throw new FdeError(`the runtime measurement log ${path} is larger than ${RECORDS_MAX} bytes`);
    const buf = new Uint8Array(st.size);
    let done = 0;
    while (done < buf.length) {
      const n = readSync(fd, buf, done, buf.length - done, done);
      if (n === 0) break;
      done += n;
    }
    return done === 0 ? undefined : buf.subarray(0, done);
  } finally {
    closeSync(fd);
  }
}

/** TCG_EfiSpecIDEvent signature (PC Client PFP 10.4.5.1). */
const SPEC_ID_SIGNATURE = "Spec ID Event03\0";
const EV_NO_ACTION = 0x3;

/**
 * A crypto-agile log header (TCG_PCR_EVENT with a TCG_EfiSpecIDEvent) declaring `algs`, for a
 * log that has no firmware part: trustee's CcEventLog parser needs it to learn digest sizes.
 */
export function specIdHeader(algs: readonly MeasureAlg[]): Uint8Array {
  const eventSize = 16 + 4 + 4 + 4 + 4 * algs.length + 1;
  const out = new Uint8Array(32 + eventSize);
  const view = new DataView(out.buffer);
  view.setUint32(4, EV_NO_ACTION, true);
  view.setUint32(28, eventSize, true);
  out.set(new TextEncoder().encode(SPEC_ID_SIGNATURE), 32);
  // platformClass 0, specVersionMinor 0, specVersionMajor 2, specErrata 0, uintnSize 2 (64-bit).
  out[32 + 21] = 2;
  out[32 + 23] = 2;
  view.setUint32(32 + 24, algs.length, true);
  algs.forEach((alg, i) => {
    view.setUint16(32 + 28 + 4 * i, TCG_ALG_ID[alg], true);
    view.setUint16(32 + 30 + 4 * i, ALG_DIGEST_SIZE[alg], true);
  });
  return out;
}

/** Eight 0xFF bytes: the end of a TCG2 log as guest-components sends it. */
export const LOG_END = new Uint8Array(8).fill(0xff);

/** Header + records + end marker: the AAEL as a standalone TCG2 log (TPM `aa_eventlog`). */
export function standaloneLog(records: Uint8Array, algs: readonly MeasureAlg[]): Uint8Array {
  const header = specIdHeader(algs);
  const out = new Uint8Array(header.length + records.length + LOG_END.length);
  out.set(header);
  out.set(records, header.length);
  out.set(LOG_END, header.length + records.length);
  return out;
}

export interface RecordEntry {
  mrIndex: number;
  type: number;
  digests: { alg: number; digest: Uint8Array }[];
  data: Uint8Array;
}

/** Parses raw records (no header); bounded by the input, rejects anything truncated or unknown. */
export function parseRecords(buf: Uint8Array, what = "the AAEL records"): RecordEntry[] {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const sizes = new Map<number, number>(
    (Object.keys(TCG_ALG_ID) as MeasureAlg[]).map((a) => [TCG_ALG_ID[a], ALG_DIGEST_SIZE[a]]),
  );
  const out: RecordEntry[] = [];
  let at = 0;
  const need = (n: number) => {
    if (at + n > buf.length) throw new FdeError(`${what}: truncated at byte ${at}`);
  };
  while (at < buf.length) {
    need(12);
    const mrIndex = view.getUint32(at, true);
    const type = view.getUint32(at + 4, true);
    const count = view.getUint32(at + 8, true);
    if (type !== EV_EVENT_TAG)
      throw new FdeError(
        `${what}: entry at byte ${at} has event type 0x${type.toString(16)}, not EV_EVENT_TAG`,
      );
    if (count < 1 || count > sizes.size)
      throw new FdeError(`${what}: entry at byte ${at} has ${count} digests`);
    at += 12;
    const digests: RecordEntry["digests"] = [];
    for (let i = 0; i < count; i++) {
      need(2);
      const alg = view.getUint16(at, true);
      const size = sizes.get(alg);
      if (size === undefined)
        throw new FdeError(`${what}: unknown digest algorithm 0x${alg.toString(16)} at byte ${at}`);
      need(2 + size);
      digests.push({ alg, digest: buf.subarray(at + 2, at + 2 + size) });
      at += 2 + size;
    }
    need(4);
    const size = view.getUint32(at, true);
    at += 4;
    need(size);
    out.push({ mrIndex, type, digests, data: buf.subarray(at, at + size) });
    at += size;
  }
  return out;
}

function writeAll(fd: number, data: Uint8Array, position: number): void {
  let done = 0;
  while (done < data.length) done += writeSync(fd, data, done, data.length - done, position + done);
}

function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}
