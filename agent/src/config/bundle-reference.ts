/**
 * What a key broker's policy pins for a user-data configuration bundle (issue #17): the bundle's
 * sha384 (upstream's gen_hash_hex), the AAEL entry the boot records before using it, and the
 * digests per register (measure/reference.ts). `config reference-value FILE` prints it.
 */
import { ConfigError } from "../errors.ts";
import { loadConfigUntrusted, type ReferenceValue, referenceValue } from "../measure/index.ts";
import { readBundle } from "./bundle.ts";
import { readRegularText } from "./read.ts";
import { CONFIG_MAX_BYTES } from "./toml.ts";

export interface BundleReference {
  /** The file read. */
  bundle: string;
  /** sha384 (hex) of upstream's hash content: the AAEL entry's content. */
  sha384: string;
  aael: ReferenceValue;
}

/** The reference value of the bundle text `text` (named `file` in errors). */
export function bundleReferenceOf(file: string, text: string): BundleReference {
  const { sha384 } = readBundle(file, text);
  return { bundle: file, sha384, aael: referenceValue(loadConfigUntrusted(sha384)) };
}

/** Reads the bundle file (a regular file of at most CONFIG_MAX_BYTES, UTF-8). */
export async function bundleReference(file: string): Promise<BundleReference> {
  const text = await readRegularText(file, CONFIG_MAX_BYTES, "configuration bundle");
  if (text === undefined) throw new ConfigError(`cannot read ${file}: no such file`);
  return bundleReferenceOf(file, text);
}
