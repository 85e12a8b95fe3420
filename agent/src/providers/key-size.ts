/**
 * The largest key a provider may hand to cryptsetup. Keys are LUKS2 passphrases or key files:
 * real ones are 32-512 bytes (a random 32/64-byte key, a base64 or hex text of it). 64 KiB is
 * a hundred times that, still far below cryptsetup's 8 MiB key-file limit, and keeps what a
 * hostile peer can make us hold in memory (and zero) small. A larger "key" is a wrong resource
 * or an attack, never a key: it is refused, not truncated.
 */
import { KeyProviderError } from "../errors.ts";

export const MAX_KEY_BYTES = 64 * 1024;

/** Throws a KeyProviderError naming the provider and `what` when `key` is empty or too large. */
export function checkKeySize(provider: string, key: Uint8Array, what: string, emptyHint: string): Uint8Array {
  if (key.length === 0) {
    throw new KeyProviderError(provider, `${what} is empty`, { hint: emptyHint });
  }
  if (key.length > MAX_KEY_BYTES) {
    const n = key.length;
    key.fill(0);
    throw new KeyProviderError(
      provider,
      `${what} is ${n} bytes, more than the ${MAX_KEY_BYTES / 1024} KiB a key may have (MAX_KEY_BYTES)`,
      {
        hint: "a LUKS2 key is at most a few hundred bytes: check that the right resource or secret is named",
      },
    );
  }
  return key;
}
