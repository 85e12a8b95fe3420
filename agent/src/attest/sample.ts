/**
 * The "sample" TEE of guest-components: no hardware, no signature. The verifier only checks that
 * report_data is the runtime-data digest, byte for byte (48 bytes, unpadded). For development and
 * tests only; index.ts selects it solely on an explicit setting.
 */
import type { Attester } from "./types.ts";

export function createSampleAttester(): Attester {
  return {
    tee: "sample",
    async evidence(digest: Uint8Array) {
      return { svn: "1", report_data: Buffer.from(digest).toString("base64") };
    },
  };
}
