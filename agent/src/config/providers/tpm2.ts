/** tpm2: a key sealed to the TPM under a PCR policy. Upstream: `{}` (unimplemented there). */
import * as v from "valibot";
import { compact, NonEmpty, type ProviderTable } from "./common.ts";

export interface Tpm2Config {
  type: "tpm2";
  /** PCR indexes the seal is bound to (default [7], Secure Boot state, as systemd-cryptenroll). */
  pcrs: number[];
  pcrBank: "sha1" | "sha256" | "sha384" | "sha512";
  /** Optional PIN combined with the PCR policy (PolicyAuthValue). */
  pin?: string;
  /** TPM access (TCTI string); default TPM2TOOLS_TCTI/TCTI from the environment, else device:/dev/tpmrm0. */
  tcti?: string;
}

export const tpm2: ProviderTable<Tpm2Config> = {
  type: "tpm2",
  schema: v.pipe(
    v.strictObject({
      pcrs: v.optional(
        v.pipe(
          v.array(v.pipe(v.number(), v.integer("must be an integer"), v.minValue(0), v.maxValue(23))),
          v.check((list) => new Set(list).size === list.length, "lists a PCR twice"),
        ),
        [7],
      ),
      pcr_bank: v.optional(v.picklist(["sha1", "sha256", "sha384", "sha512"]), "sha256"),
      pin: v.optional(NonEmpty),
      tcti: v.optional(NonEmpty),
    }),
    v.transform((t): Tpm2Config => {
      const out: Tpm2Config = { type: "tpm2", pcrs: t.pcrs, pcrBank: t.pcr_bank };
      if (t.pin !== undefined) out.pin = t.pin;
      if (t.tcti !== undefined) out.tcti = t.tcti;
      return out;
    }),
  ),
  toToml: (c) => compact({ pcrs: c.pcrs, pcr_bank: c.pcrBank, pin: c.pin, tcti: c.tcti }),
};
