/** TPM / TSS response codes turned into readable errors (Tss2_RC_Decode plus our own words). */
import { FdeError } from "../errors.ts";
import { tss2 } from "./ffi.ts";

// Base TPM response codes (TPM 2.0 Part 2, 6.6), without handle/session/parameter numbers.
export const TPM_RC = {
  POLICY_FAIL: 0x09d,
  AUTH_FAIL: 0x08e,
  BAD_AUTH: 0x0a2,
  VALUE: 0x084,
  HANDLE: 0x08b,
  HIERARCHY: 0x085,
  LOCKOUT: 0x921,
  RETRY: 0x922,
  INITIALIZE: 0x100,
} as const;

/**
 * The TPM-layer code without the handle/session/parameter number, or undefined for errors from
 * the TSS layers (TCTI, ESAPI, MU), which set the layer in bits 16-23.
 */
export function tpmBaseCode(rc: number): number | undefined {
  if (rc >>> 16 !== 0) return undefined;
  // Format-one codes (bit 7) carry the error number in bits 0-5 and a location in bits 6-11.
  return rc & 0x80 ? rc & 0xbf : rc;
}

function decode(rc: number): string {
  try {
    return String(tss2().rc.Tss2_RC_Decode(rc) ?? "unknown");
  } catch {
    return "(libtss2-rc unavailable)";
  }
}

/** A failed TSS call: the function, the hex code and libtss2-rc's text. */
export class TpmError extends FdeError {
  override name = "TpmError";
  readonly rc: number;
  readonly call: string;
  constructor(call: string, rc: number, context?: string, hint?: string) {
    super(`TPM: ${context ? `${context}: ` : ""}${call} failed with 0x${rc.toString(16)} (${decode(rc)})`, {
      hint,
    });
    this.rc = rc;
    this.call = call;
  }

  /** True when the TPM rejected the command with this base code. */
  is(base: number): boolean {
    return tpmBaseCode(this.rc) === base;
  }
}

export function check(call: string, rc: number, context?: string, hint?: string): void {
  if (rc !== 0) throw new TpmError(call, rc, context, hint);
}
