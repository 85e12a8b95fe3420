/** otp: a fresh random key on every call, so the volume is re-formatted on every open. */
import type { OtpConfig } from "../config/providers/otp.ts";
import type { KeyProvider, ProviderContext } from "./provider.ts";

/** 64 bytes = 512 bits, more than any LUKS2 cipher can use. */
const KEY_BYTES = 64;

export function create(_config: OtpConfig, _ctx: ProviderContext): KeyProvider {
  return {
    name: "otp",
    temporary: true,
    describe: () => "otp (random one-time key; contents are lost when the volume is closed)",
    getKey: async () => crypto.getRandomValues(new Uint8Array(KEY_BYTES)),
  };
}
