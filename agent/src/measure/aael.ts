/**
 * Attestation Agent Event Log (AAEL) entries in the TCG2 encoding trustee's verifiers read
 * (trustee kbs/docs/confidential-containers-eventlog.md; guest-components' eventlog/tcg2.rs):
 * each entry is a TCG_PCR_EVENT2 record of type EV_EVENT_TAG whose event data is a tagged event
 * (id "AAEL" as a little-endian u32, size, then the text `<domain> <operation> <content>` without
 * a line feed), with one digest: the register's hash of that event data. The register is
 * extended with exactly that digest.
 */
import { createHash } from "node:crypto";
import { FdeError } from "../errors.ts";

/** The AAEL domain cryptpilot records under (upstream cryptpilot-core measure/attestation_agent). */
export const AAEL_DOMAIN = "cryptpilot.alibabacloud.com";

/** The operation recorded before a configuration from an unmeasured source is used. */
export const LOAD_CONFIG_UNTRUSTED = "load_config_untrusted";

/** TCG event type EV_EVENT_TAG (PC Client PFP), the type AAEL entries use. */
export const EV_EVENT_TAG = 0x6;

/** Tagged-event id of AAEL entries: the ASCII bytes "AAEL" read as a little-endian u32. */
export const AAEL_TAGGED_EVENT_ID = 0x4141454c;

/** Longest AAEL text accepted (a config hash entry is ~130 bytes); bounds log and records. */
export const AAEL_TEXT_MAX = 4096;

/** Hash algorithms of the registers we extend, with their TCG algorithm ids. */
export type MeasureAlg = "sha256" | "sha384";
export const TCG_ALG_ID: Readonly<Record<MeasureAlg, number>> = { sha256: 0x000b, sha384: 0x000c };
export const ALG_DIGEST_SIZE: Readonly<Record<MeasureAlg, number>> = { sha256: 32, sha384: 48 };

export interface AaelEvent {
  readonly domain: string;
  readonly operation: string;
  readonly content: string;
}

/** Domain and operation: printable ASCII without white space (the spec's rule). */
const WORD = /^[\x21-\x7e]+$/;
/** Content: printable ASCII, spaces allowed, no line feed or other control character. */
const CONTENT = /^[\x20-\x7e]+$/;

/** A checked AAEL event; throws FdeError naming the field that breaks the spec's rules. */
export function aaelEvent(domain: string, operation: string, content: string): AaelEvent {
  if (!WORD.test(domain))
    throw new FdeError(`AAEL domain ${JSON.stringify(domain)} must be printable ASCII without white space`);
  if (!WORD.test(operation))
    throw new FdeError(
      `AAEL operation ${JSON.stringify(operation)} must be printable ASCII without white space`,
    );
  if (!CONTENT.test(content))
    throw new FdeError(
      `AAEL content for ${domain} ${operation} must be non-empty printable ASCII without line feeds`,
    );
  const event = { domain, operation, content };
  if (aaelText(event).length > AAEL_TEXT_MAX)
    throw new FdeError(`AAEL entry longer than ${AAEL_TEXT_MAX} bytes`);
  return event;
}

/** A lowercase hex SHA-384 (the bundle hash upstream records). */
const SHA384_HEX = /^[0-9a-f]{96}$/;

/** The entry recorded before a configuration bundle with this sha384 (hex) is used. */
export function loadConfigUntrusted(bundleSha384Hex: string): AaelEvent {
  if (!SHA384_HEX.test(bundleSha384Hex))
    throw new FdeError(
      `the configuration hash to measure must be 96 lowercase hex digits (sha384), got ${JSON.stringify(bundleSha384Hex.slice(0, 120))}`,
    );
  return aaelEvent(AAEL_DOMAIN, LOAD_CONFIG_UNTRUSTED, bundleSha384Hex);
}

/** The entry's text as the spec writes it (no trailing line feed in the TCG2 encoding). */
export function aaelText(event: AaelEvent): string {
  return `${event.domain} ${event.operation} ${event.content}`;
}

/** The TCG2 event data: tagged-event id, size, text. */
export function taggedEventData(event: AaelEvent): Uint8Array {
  const text = new TextEncoder().encode(aaelText(event));
  const out = new Uint8Array(8 + text.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, AAEL_TAGGED_EVENT_ID, true);
  view.setUint32(4, text.length, true);
  out.set(text, 8);
  return out;
}

/** The digest the register is extended with: the register's hash of the tagged event data. */
export function entryDigest(event: AaelEvent, alg: MeasureAlg): Uint8Array {
  return new Uint8Array(createHash(alg).update(taggedEventData(event)).digest());
}

/** One TCG_PCR_EVENT2 record: register index, EV_EVENT_TAG, one digest, event data. */
export function encodeEntry(event: AaelEvent, mrIndex: number, alg: MeasureAlg): Uint8Array {
  const data = taggedEventData(event);
  const digest = entryDigest(event, alg);
  const out = new Uint8Array(12 + 2 + digest.length + 4 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, mrIndex, true);
  view.setUint32(4, EV_EVENT_TAG, true);
  view.setUint32(8, 1, true);
  view.setUint16(12, TCG_ALG_ID[alg], true);
  out.set(digest, 14);
  view.setUint32(14 + digest.length, data.length, true);
  out.set(data, 18 + digest.length);
  return out;
}

/** extend(old, digest) = H(old || digest), as TPM PCRs and TDX RTMRs do. */
export function extend(alg: MeasureAlg, value: Uint8Array, digest: Uint8Array): Uint8Array {
  return new Uint8Array(createHash(alg).update(value).update(digest).digest());
}

/** The register value after extending `initial` with each digest in turn. */
export function replay(alg: MeasureAlg, initial: Uint8Array, digests: readonly Uint8Array[]): Uint8Array {
  let value = initial;
  for (const d of digests) value = extend(alg, value, d);
  return value;
}
