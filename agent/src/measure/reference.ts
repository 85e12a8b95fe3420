/**
 * What a key broker's policy should expect for one AAEL entry: the entry's text (what trustee
 * exposes to the policy) and, per register, the digest it is extended with and the register
 * value when it is the only entry since boot (the case for a user-data configuration, measured
 * first thing in the initrd).
 */
import { type AaelEvent, aaelText, entryDigest, extend } from "./aael.ts";
import { type RegisterSpec, TDX_REGISTER, TPM_REGISTER } from "./registers.ts";

export interface RegisterReference {
  register: string;
  /** The index in the TCG2 entry (trustee's replay key). */
  mr_index: number;
  alg: string;
  /** Hex digest the register is extended with. */
  entry_digest: string;
  /** Hex register value after this entry alone. */
  value_if_only_entry: string;
}

export interface ReferenceValue {
  domain: string;
  operation: string;
  content: string;
  /** `<domain> <operation> <content>`, as the AAEL carries it. */
  event: string;
  registers: RegisterReference[];
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

export function registerReference(event: AaelEvent, spec: RegisterSpec): RegisterReference {
  const digest = entryDigest(event, spec.alg);
  return {
    register: spec.name,
    mr_index: spec.mrIndex,
    alg: spec.alg,
    entry_digest: hex(digest),
    value_if_only_entry: hex(extend(spec.alg, spec.initial, digest)),
  };
}

export function referenceValue(event: AaelEvent): ReferenceValue {
  return {
    domain: event.domain,
    operation: event.operation,
    content: event.content,
    event: aaelText(event),
    registers: [TDX_REGISTER, TPM_REGISTER].map((spec) => registerReference(event, spec)),
  };
}
