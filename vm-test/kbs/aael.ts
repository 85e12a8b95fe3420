/**
 * The test broker's check of the Attestation Agent Event Log (AAEL) in evidence, as trustee's
 * verifiers do it, plus what trustee does not: each entry's digest must be the hash of its own
 * event data (else a log could show one configuration hash while the register holds another),
 * and the AAEL register must replay even when no log is sent (a register extended without a
 * log is refused).
 * - tpm: `aa_eventlog` (a TCG2 log), SHA-256 digests replayed from zero per PCR and compared with
 *   the quoted SHA-256 PCRs (already verified against the quote by tpm2_checkquote).
 * - tdx: `cc_eventlog` (CCEL + AAEL), SHA-384 digests of CC MR 1..4 replayed from zero and
 *   compared with RTMR0..3 of the quote.
 * The AAEL entries are returned for the policy (trustee exposes them in its policy input).
 */
import { createHash } from "node:crypto";
import { parseCcel } from "../../agent/src/attest/ccel.ts";
import { AAEL_TAGGED_EVENT_ID, EV_EVENT_TAG, TCG_ALG_ID } from "../../agent/src/measure/aael.ts";
import { TDX_REGISTER, TPM_REGISTER } from "../../agent/src/measure/registers.ts";

export interface AaelEntry {
  domain: string;
  operation: string;
  content: string;
  /** The register index the entry was replayed into. */
  index: number;
}

/** A base64 event log larger than this is refused before decoding (a CCEL is ~10-100 KiB). */
export const EVENTLOG_B64_MAX = 2 * 1024 * 1024;

type Alg = "sha256" | "sha384";

function decodeLog(value: unknown, field: string): Uint8Array | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw new Error(`${field} is not a base64 string`);
  if (value.length > EVENTLOG_B64_MAX) throw new Error(`${field} is larger than ${EVENTLOG_B64_MAX} bytes`);
  return new Uint8Array(Buffer.from(value, "base64"));
}

/** Replays `log` into per-index values from zero; returns them and the AAEL entries. */
function replayLog(log: Uint8Array, alg: Alg, field: string) {
  let parsed: ReturnType<typeof parseCcel>;
  try {
    parsed = parseCcel(log);
  } catch (e) {
    throw new Error(`${field}: ${(e as Error).message}`);
  }
  const size = alg === "sha256" ? 32 : 48;
  const values = new Map<number, Buffer>();
  const entries: AaelEntry[] = [];
  for (const ev of parsed.events) {
    if (ev.type === 0x3) continue; // EV_NO_ACTION: informational, never extended
    const d = ev.digests.find((x) => x.alg === TCG_ALG_ID[alg]);
    if (!d) continue;
    if (ev.type === EV_EVENT_TAG && isAael(ev.data)) {
      if (!Buffer.from(createHash(alg).update(ev.data).digest()).equals(Buffer.from(d.digest)))
        throw new Error(`${field}: an AAEL entry's ${alg} digest is not the hash of its event data`);
      entries.push({ ...splitText(ev.data, field), index: ev.mrIndex });
    }
    const old = values.get(ev.mrIndex) ?? Buffer.alloc(size);
    values.set(ev.mrIndex, createHash(alg).update(old).update(d.digest).digest());
  }
  return { values, entries };
}

function isAael(data: Uint8Array): boolean {
  if (data.length < 8) return false;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  return view.getUint32(0, true) === AAEL_TAGGED_EVENT_ID && view.getUint32(4, true) === data.length - 8;
}

function splitText(data: Uint8Array, field: string): { domain: string; operation: string; content: string } {
  const text = Buffer.from(data.subarray(8)).toString("latin1");
  const m = /^([\x21-\x7e]+) ([\x21-\x7e]+) ([\x20-\x7e]+)$/.exec(text);
  if (!m)
    throw new Error(`${field}: an AAEL entry is not "<domain> <operation> <content>" in printable ASCII`);
  return { domain: m[1]!, operation: m[2]!, content: m[3]! };
}

const hexEq = (a: Uint8Array, hex: string | undefined) =>
  hex !== undefined && Buffer.from(a).toString("hex") === hex.toLowerCase();

/** TPM evidence: replay `aa_eventlog` against the quoted SHA-256 PCRs. */
export function verifyTpmAael(evidence: Record<string, unknown>): AaelEntry[] {
  const quote = evidence.quote as Record<string, { pcrs?: string[] }> | undefined;
  const pcrs = quote?.SHA256?.pcrs ?? (evidence.tpm_quote as { pcrs?: string[] } | undefined)?.pcrs;
  if (!Array.isArray(pcrs))
    throw new Error("tpm evidence: no quoted SHA-256 PCRs to replay the AA event log against");
  const log = decodeLog(evidence.aa_eventlog, "aa_eventlog");
  const { values, entries } = log
    ? replayLog(log, "sha256", "aa_eventlog")
    : { values: new Map(), entries: [] };
  // The AAEL PCR is checked even without a log: extended but unlogged is refused.
  if (!values.has(TPM_REGISTER.mrIndex)) values.set(TPM_REGISTER.mrIndex, Buffer.alloc(32));
  for (const [index, value] of values) {
    if (!hexEq(value, pcrs[index]))
      throw new Error(
        `aa_eventlog does not replay: PCR ${index} replays to ${Buffer.from(value).toString("hex")}, the quote has ${pcrs[index]}`,
      );
  }
  return entries;
}

/** RTMR0..3 of a TDX quote (v4 or v5 body). */
function quoteRtmrs(quote: Buffer): Buffer[] {
  const version = quote.readUInt16LE(0);
  const body = version === 4 ? 48 : version === 5 ? 54 : undefined;
  if (body === undefined || quote.length < body + 584)
    throw new Error(`tdx quote: unsupported version ${version} or too short`);
  return [0, 1, 2, 3].map((i) => quote.subarray(body + 328 + 48 * i, body + 376 + 48 * i));
}

/** TDX evidence: replay `cc_eventlog` (CC MR 1..4) against RTMR0..3. */
export function verifyTdxAael(evidence: Record<string, unknown>): AaelEntry[] {
  if (typeof evidence.quote !== "string") throw new Error("tdx evidence: no quote");
  const rtmrs = quoteRtmrs(Buffer.from(evidence.quote, "base64"));
  const log = decodeLog(evidence.cc_eventlog, "cc_eventlog");
  const { values, entries } = log
    ? replayLog(log, "sha384", "cc_eventlog")
    : { values: new Map(), entries: [] };
  if (!values.has(TDX_REGISTER.mrIndex)) values.set(TDX_REGISTER.mrIndex, Buffer.alloc(48));
  for (const [index, value] of values) {
    if (index < 1 || index > 4)
      throw new Error(`cc_eventlog: CC measurement register ${index} does not exist`);
    if (!Buffer.from(value).equals(rtmrs[index - 1]!))
      throw new Error(
        `cc_eventlog does not replay: RTMR${index - 1} replays to ${Buffer.from(value).toString("hex")}, the quote has ${rtmrs[index - 1]!.toString("hex")}`,
      );
  }
  return entries;
}

/** The AAEL entries of verified evidence, or an Error saying why the log is refused. */
export function verifyAael(tee: string, evidence: unknown): AaelEntry[] {
  const ev = (evidence ?? {}) as Record<string, unknown>;
  if (tee === "tpm") return verifyTpmAael(ev);
  if (tee === "tdx") return verifyTdxAael(ev);
  return [];
}

/**
 * A policy rule's AAEL condition: keys are `<domain> <operation>`, values the contents allowed.
 * Every entry with that key must have an allowed content; a non-empty list also requires at
 * least one such entry, and an empty list requires none (e.g. "no user-data configuration").
 */
export type AaelCondition = Record<string, string[]>;

export function aaelMatches(condition: AaelCondition | undefined, entries: readonly AaelEntry[]): boolean {
  if (!condition) return true;
  for (const [key, allowed] of Object.entries(condition)) {
    const found = entries.filter((e) => `${e.domain} ${e.operation}` === key);
    if (allowed.length === 0 ? found.length > 0 : found.length === 0) return false;
    if (!found.every((e) => allowed.includes(e.content))) return false;
  }
  return true;
}
