/**
 * The digest algorithms of `--hash-algo` and the labels cryptpilot uses in its JSON keys.
 *
 * SM3 is labelled "SM3", as upstream cryptpilot and the CoCo trustee CCEL parser spell it
 * (reference-values.md §1.2). openanolis/trustee's TPM policy spells it "SM-3"; we keep
 * upstream's key so that existing RVPS registrations and policies keep matching, and note the
 * difference in the documentation.
 */
import { createHash } from "node:crypto";
import { UsageError } from "../errors.ts";
import { Sm3 } from "./sm3.ts";

export type HashAlgo = "sha1" | "sha256" | "sha384" | "sm3";

export const HASH_ALGOS: readonly HashAlgo[] = ["sha1", "sha256", "sha384", "sm3"];

export const HASH_LABEL: Record<HashAlgo, string> = {
  sha1: "SHA-1",
  sha256: "SHA-256",
  sha384: "SHA-384",
  sm3: "SM3",
};

export interface Hasher {
  update(data: Uint8Array): unknown;
  digest(): Uint8Array;
}

export function newHasher(algo: HashAlgo): Hasher {
  if (algo === "sm3") return new Sm3();
  const h = createHash(algo);
  return { update: (d) => h.update(d), digest: () => new Uint8Array(h.digest()) };
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

/** Hex digest of one buffer. */
export function hashHex(algo: HashAlgo, data: Uint8Array): string {
  const h = newHasher(algo);
  h.update(data);
  return toHex(h.digest());
}

export function parseHashAlgo(value: string): HashAlgo {
  const v = value.toLowerCase();
  if ((HASH_ALGOS as readonly string[]).includes(v)) return v as HashAlgo;
  throw new UsageError(`--hash-algo: unknown algorithm '${value}'; choose one of ${HASH_ALGOS.join(", ")}`);
}
