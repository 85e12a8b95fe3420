/** Extending the AAEL PCR through our ESAPI layer (tpm/esys.ts). */
import { FdeError } from "../errors.ts";
import type { RegisterExtender } from "./open.ts";
import { TPM_PCR, TPM_REGISTER } from "./registers.ts";

export async function openTpmRegister(
  tcti: string | undefined,
  env: Record<string, string | undefined>,
): Promise<RegisterExtender | { unavailable: string }> {
  // Loaded only here: TDX/SNP boots never pull in the TSS bindings.
  const { resolveTcti } = await import("../tpm/tcti.ts");
  const { withTpm } = await import("../tpm/esys.ts");
  const resolved = resolveTcti(tcti, env);
  try {
    const banks = await withTpm(resolved, (esys) => esys.pcrBanks());
    const bank = banks.find((b) => b.bank === "sha256");
    if (!bank?.pcrs.includes(TPM_PCR))
      return { unavailable: `the TPM (${resolved}) has no SHA-256 PCR ${TPM_PCR} allocated` };
  } catch (err) {
    return { unavailable: `the TPM (${resolved}) cannot be used: ${(err as Error).message}` };
  }
  return {
    spec: TPM_REGISTER,
    via: `ESAPI on ${resolved}`,
    async extend(digest) {
      try {
        await withTpm(resolved, (esys) => esys.pcrExtend(TPM_PCR, "sha256", digest));
      } catch (cause) {
        throw new FdeError(`TPM: extending PCR ${TPM_PCR} failed: ${(cause as Error).message}`, { cause });
      }
    },
  };
}
