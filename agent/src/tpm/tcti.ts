/** Which TPM to talk to: a TCTI configuration string as understood by Tss2_TctiLdr_Initialize. */
import { existsSync } from "node:fs";
import { FdeError } from "../errors.ts";

export const DEFAULT_TCTI = "device:/dev/tpmrm0";

/**
 * The TCTI from the provider config, else the environment variables tpm2-tools reads
 * (TPM2TOOLS_TCTI, then TCTI), else the kernel's resource-managed TPM device.
 */
export function resolveTcti(
  configured?: string,
  env: Record<string, string | undefined> = process.env,
): string {
  return configured || env.TPM2TOOLS_TCTI || env.TCTI || DEFAULT_TCTI;
}

/** Fail early, with a clear message, when a device TCTI names a device node that does not exist. */
export function checkTctiDevice(tcti: string): void {
  const m = /^device(?::(.*))?$/.exec(tcti);
  if (!m) return;
  const path = m[1] || "/dev/tpm0";
  if (!existsSync(path)) {
    throw new FdeError(`no TPM found: the TPM device ${path} does not exist (TCTI "${tcti}")`, {
      hint: 'the machine or VM needs a TPM 2.0 (for QEMU: a swtpm chardev with -tpmdev emulator and -device tpm-tis), and the initrd needs the tpm_tis/tpm_crb kernel modules; or set another TCTI with tcti = "..." or TPM2TOOLS_TCTI',
    });
  }
}
