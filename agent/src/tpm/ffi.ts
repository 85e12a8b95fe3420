/**
 * bun:ffi bindings to the TPM2 Software Stack (tpm2-tss): ESAPI (libtss2-esys), the TCTI loader
 * (libtss2-tctildr), marshalling (libtss2-mu) and response-code decoding (libtss2-rc).
 *
 * The libraries are opened on first use, not at start-up: most boots never touch a TPM, and a
 * system without tpm2-tss must still run every other command. Only the functions we call are
 * declared.
 *
 * C structs: ESAPI takes and returns C structs (TPM2B_PUBLIC, TPML_PCR_SELECTION, ...) whose
 * layout includes compiler padding and unions sized for the largest member. Instead of writing
 * those layouts by hand, we build the TPM wire format in TypeScript (marshal.ts) and call
 * Tss2_MU_<T>_Unmarshal to fill a C struct, and Tss2_MU_<T>_Marshal to turn a returned struct
 * back into wire bytes. libtss2-mu is a dependency of libtss2-esys anyway, and the wire format
 * is fixed by the TPM specification, so this cannot drift from the library's own headers.
 */
import { dlopen, type FFIFunction, FFIType, type Library, type Pointer, ptr } from "bun:ffi";
import { FdeError } from "../errors.ts";

const { u8, u16, u32, ptr: P, cstring } = FFIType;

/** The C struct types we convert with libtss2-mu. */
export const MU_TYPES = [
  "TPM2B_PUBLIC",
  "TPM2B_PRIVATE",
  "TPM2B_SENSITIVE_CREATE",
  "TPM2B_DATA",
  "TPM2B_DIGEST",
  "TPM2B_SENSITIVE_DATA",
  "TPM2B_ATTEST",
  "TPM2B_NAME",
  "TPM2B_NV_PUBLIC",
  "TPM2B_MAX_NV_BUFFER",
  "TPML_PCR_SELECTION",
  "TPML_DIGEST",
  "TPML_DIGEST_VALUES",
  "TPMT_SYM_DEF",
  "TPMT_SIG_SCHEME",
  "TPMT_SIGNATURE",
  "TPMS_CAPABILITY_DATA",
] as const;
export type MuType = (typeof MU_TYPES)[number];

/**
 * Bytes reserved for one C struct. The largest we pass in is TPML_DIGEST_VALUES (1060 bytes in
 * tpm2-tss 3.x) and the largest we marshal out is TPM2B_ATTEST (2306); MU never writes past the
 * struct, so a generous fixed size is safe.
 */
export const C_STRUCT_MAX = 4096;

function esysSymbols() {
  return {
    Esys_Initialize: { args: [P, P, P], returns: u32 },
    Esys_Finalize: { args: [P], returns: FFIType.void },
    Esys_Free: { args: [P], returns: FFIType.void },
    Esys_TR_SetAuth: { args: [P, u32, P], returns: u32 },
    Esys_TR_FromTPMPublic: { args: [P, u32, u32, u32, u32, P], returns: u32 },
    Esys_TR_Close: { args: [P, P], returns: u32 },
    Esys_TRSess_SetAttributes: { args: [P, u32, u8, u8], returns: u32 },
    Esys_StartAuthSession: { args: [P, u32, u32, u32, u32, u32, P, u8, P, u16, P], returns: u32 },
    Esys_CreatePrimary: { args: [P, u32, u32, u32, u32, P, P, P, P, P, P, P, P, P], returns: u32 },
    Esys_Create: { args: [P, u32, u32, u32, u32, P, P, P, P, P, P, P, P, P], returns: u32 },
    Esys_Load: { args: [P, u32, u32, u32, u32, P, P, P], returns: u32 },
    Esys_Unseal: { args: [P, u32, u32, u32, u32, P], returns: u32 },
    Esys_ReadPublic: { args: [P, u32, u32, u32, u32, P, P, P], returns: u32 },
    Esys_PolicyPCR: { args: [P, u32, u32, u32, u32, P, P], returns: u32 },
    Esys_PolicyAuthValue: { args: [P, u32, u32, u32, u32], returns: u32 },
    Esys_PolicyGetDigest: { args: [P, u32, u32, u32, u32, P], returns: u32 },
    Esys_PCR_Read: { args: [P, u32, u32, u32, P, P, P, P], returns: u32 },
    Esys_PCR_Extend: { args: [P, u32, u32, u32, u32, P], returns: u32 },
    Esys_Quote: { args: [P, u32, u32, u32, u32, P, P, P, P, P], returns: u32 },
    Esys_NV_ReadPublic: { args: [P, u32, u32, u32, u32, P, P], returns: u32 },
    Esys_NV_Read: { args: [P, u32, u32, u32, u32, u32, u16, u16, P], returns: u32 },
    Esys_GetCapability: { args: [P, u32, u32, u32, u32, u32, u32, P, P], returns: u32 },
    Esys_FlushContext: { args: [P, u32], returns: u32 },
  } as const;
}

function tctildrSymbols() {
  return {
    Tss2_TctiLdr_Initialize: { args: [P, P], returns: u32 },
    Tss2_TctiLdr_Finalize: { args: [P], returns: FFIType.void },
  } as const;
}

function muSymbols() {
  const s: Record<string, FFIFunction> = {};
  for (const t of MU_TYPES) {
    // (const uint8_t buffer[], size_t size, size_t *offset, T *dest)
    s[`Tss2_MU_${t}_Unmarshal`] = { args: [P, FFIType.u64, P, P], returns: u32 };
    // (const T *src, uint8_t buffer[], size_t size, size_t *offset)
    s[`Tss2_MU_${t}_Marshal`] = { args: [P, P, FFIType.u64, P], returns: u32 };
  }
  return s;
}

function rcSymbols() {
  return { Tss2_RC_Decode: { args: [u32], returns: cstring } } as const;
}

export interface Tss2 {
  esys: Library<ReturnType<typeof esysSymbols>>["symbols"];
  tctildr: Library<ReturnType<typeof tctildrSymbols>>["symbols"];
  mu: Record<string, (...args: unknown[]) => number>;
  rc: Library<ReturnType<typeof rcSymbols>>["symbols"];
}

let loaded: Tss2 | undefined;

function open<Fns extends Record<string, FFIFunction>>(lib: string, symbols: Fns): Library<Fns>["symbols"] {
  try {
    return dlopen(lib, symbols).symbols;
  } catch (cause) {
    throw new FdeError(`TPM support needs the shared library ${lib}, which could not be loaded`, {
      cause,
      hint: "install tpm2-tss (Debian: libtss2-esys-3.0.2-0 libtss2-tctildr0 libtss2-mu0 libtss2-rc0 and the TCTI, e.g. libtss2-tcti-device0); in the initrd the cryptpilot dracut module installs them",
    });
  }
}

/**
 * tpm2-tss logs warnings to stderr for TPM errors we handle ourselves (a missing NV index, a
 * policy failure we turn into a message). It reads TSS2_LOG from the C environment, which Bun's
 * process.env does not write, so set it through libc unless the user chose a level.
 */
function quietTssLog(): void {
  if (process.env.TSS2_LOG !== undefined) return;
  try {
    dlopen("libc.so.6", { setenv: { args: [P, P, FFIType.i32], returns: FFIType.i32 } }).symbols.setenv(
      cstr("TSS2_LOG"),
      cstr("all+none"),
      0,
    );
  } catch {
    // Only cosmetic: without it tpm2-tss prints its own warnings next to ours.
  }
}

/** Open the tpm2-tss libraries once (throws FdeError naming the missing library). */
export function tss2(): Tss2 {
  if (!loaded) {
    quietTssLog();
    loaded = {
      esys: open("libtss2-esys.so.0", esysSymbols()),
      tctildr: open("libtss2-tctildr.so.0", tctildrSymbols()),
      mu: open("libtss2-mu.so.0", muSymbols()) as unknown as Tss2["mu"],
      rc: open("libtss2-rc.so.0", rcSymbols()),
    };
  }
  return loaded;
}

/** A NUL-terminated C string. */
export function cstr(s: string): Uint8Array {
  return new TextEncoder().encode(`${s}\0`);
}

/** A one-slot out-parameter for a pointer or size_t. */
export function outPtr(): BigUint64Array {
  return new BigUint64Array(1);
}

export function addressOf(view: Uint8Array | BigUint64Array | Uint32Array): Pointer {
  return ptr(view);
}
