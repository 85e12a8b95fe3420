/**
 * Sealing a volume key to the TPM under a PCR policy (plus a PIN through PolicyAuthValue), and
 * unsealing it through a salted, parameter-encrypted policy session.
 *
 * The parent is the ECC storage root key re-derived from the owner seed (public.ts), so the
 * sealed object (TPM2B_PRIVATE || TPM2B_PUBLIC, the layout systemd-cryptenroll and tpm2_load
 * use) is all that needs storing. Unsealing uses the same key persisted at 0x81000001 when the
 * TPM has it (as systemd 254+ does), saving the derivation.
 */
import { createHash } from "node:crypto";
import { FdeError } from "../errors.ts";
import { log } from "../log.ts";
import { ESYS_TR, type Esys, SESSION_ATTR } from "./esys.ts";
import { hex, type PcrBank, TpmReader } from "./marshal.ts";
import { sealedTemplate, srkTemplate } from "./public.ts";
import { TPM_RC, TpmError } from "./rc.ts";

/** The largest secret a TPM keyed-hash object holds (MAX_SYM_DATA). */
export const MAX_SEALED_BYTES = 128;

export interface SealPolicy {
  bank: PcrBank;
  /** PCR indices, ascending. */
  pcrs: number[];
  /** Adds PolicyAuthValue; the object's authValue is this PIN. */
  pin?: string;
}

export interface SealedKey {
  /** TPM2B_PRIVATE followed by TPM2B_PUBLIC, wire format. */
  blob: Uint8Array;
  bank: PcrBank;
  pcrs: number[];
  /** The policy digest the object is bound to (SHA-256). */
  policyDigest: Uint8Array;
  pin: boolean;
  /** PCR values at sealing time (public), to name the PCRs that changed when unsealing fails. */
  pcrValues: Record<string, string>;
  /** Sealed under the pre-254 systemd primary (srkTemplate(true)): systemd-cryptenroll tokens. */
  legacySrk?: boolean;
}

/** Thrown when the PCRs no longer match the sealed policy. */
export class PcrPolicyMismatchError extends FdeError {
  override name = "PcrPolicyMismatchError";
  constructor(
    message: string,
    readonly changed: number[],
  ) {
    super(message, {
      hint: "the boot chain changed since the key was sealed (firmware, Secure Boot keys, bootloader, kernel or initrd, depending on the PCRs); unlock with the recovery passphrase and run 'cryptpilot-fde tpm2 enroll' again",
    });
  }
}

const te = new TextEncoder();

function sortedPcrs(pcrs: number[]): number[] {
  return [...new Set(pcrs)].sort((a, b) => a - b);
}

function readValues(esys: Esys, bank: PcrBank, pcrs: number[]): Uint8Array[] {
  const map = esys.pcrRead([{ bank, pcrs }]);
  return pcrs.map((p) => map.get(`${bank}:${p}`)!);
}

/** Seal `key` under the storage root key with PolicyPCR over the current PCR values. */
export function sealKey(esys: Esys, key: Uint8Array, policy: SealPolicy): SealedKey {
  if (key.length === 0 || key.length > MAX_SEALED_BYTES) {
    throw new FdeError(`a TPM can seal 1 to ${MAX_SEALED_BYTES} bytes; this key has ${key.length}`);
  }
  const pcrs = sortedPcrs(policy.pcrs);
  const selection = [{ bank: policy.bank, pcrs }];
  const srk = esys.createPrimary(ESYS_TR.RH_OWNER, srkTemplate()).handle;
  try {
    const values = readValues(esys, policy.bank, pcrs);
    // PolicyPCR's digest uses the session's hash (SHA-256) over the values in selection order.
    const pcrDigest = createHash("sha256").update(Buffer.concat(values)).digest();
    const trial = esys.startSession("trial");
    let policyDigest: Uint8Array;
    try {
      esys.policyPcr(trial, selection, pcrDigest);
      if (policy.pin !== undefined) esys.policyAuthValue(trial);
      policyDigest = esys.policyGetDigest(trial);
    } finally {
      esys.flush(trial);
    }
    // Salted HMAC session with parameter encryption: the key crosses the bus encrypted.
    const session = esys.startSession("hmac", {
      saltKey: srk,
      attributes: SESSION_ATTR.decrypt | SESSION_ATTR.encrypt,
    });
    let sealed: { privateBlob: Uint8Array; publicBlob: Uint8Array };
    const pin = policy.pin === undefined ? undefined : te.encode(policy.pin);
    try {
      sealed = esys.create(srk, session, sealedTemplate(policyDigest, pin !== undefined), {
        userAuth: pin,
        data: key,
      });
    } finally {
      pin?.fill(0);
      esys.flush(session);
    }
    return {
      blob: Buffer.concat([sealed.privateBlob, sealed.publicBlob]),
      bank: policy.bank,
      pcrs,
      policyDigest,
      pin: policy.pin !== undefined,
      pcrValues: Object.fromEntries(pcrs.map((p, i) => [String(p), hex(values[i]!)])),
    };
  } finally {
    esys.flush(srk);
  }
}

/** Split a stored blob into its TPM2B_PRIVATE and TPM2B_PUBLIC (both with their size fields). */
export function splitBlob(blob: Uint8Array): { privateBlob: Uint8Array; publicBlob: Uint8Array } {
  const r = new TpmReader(blob, "sealed blob");
  const priv = r.tpm2b();
  const pub = r.tpm2b();
  if (r.remaining !== 0) throw new FdeError(`sealed blob has ${r.remaining} unexpected trailing bytes`);
  const privateBlob = blob.slice(0, 2 + priv.length);
  return { privateBlob, publicBlob: blob.slice(privateBlob.length, privateBlob.length + 2 + pub.length) };
}

function describeMismatch(esys: Esys, sealed: SealedKey): PcrPolicyMismatchError {
  const now = readValues(esys, sealed.bank, sealed.pcrs);
  const list = `${sealed.bank}:${sealed.pcrs.join(",")}`;
  const recorded = sealed.pcrs.every((p) => sealed.pcrValues[String(p)] !== undefined);
  const changed = recorded ? sealed.pcrs.filter((p, i) => sealed.pcrValues[String(p)] !== hex(now[i]!)) : [];
  let detail: string;
  if (!recorded) {
    detail = `the token does not record the sealed values; now ${sealed.pcrs.map((p, i) => `PCR ${p} is ${hex(now[i]!)}`).join(", ")}`;
  } else if (changed.length > 0) {
    detail = changed
      .map(
        (p) => `PCR ${p} is ${hex(now[sealed.pcrs.indexOf(p)]!)} (sealed to ${sealed.pcrValues[String(p)]})`,
      )
      .join("; ");
  } else {
    detail = "the policy digest differs although the recorded PCR values match (the token was edited?)";
  }
  return new PcrPolicyMismatchError(
    `TPM PCR policy mismatch: the key is sealed to PCRs ${list} and they have changed: ${detail}`,
    changed,
  );
}

/** The handle TCG's provisioning guidance reserves for the SRK; systemd 254+ persists its SRK there. */
export const PERSISTENT_SRK = 0x81000001;

/**
 * The persistent SRK when it has exactly our template's public parameters (then it is the key our
 * template derives, unless it was made with a non-empty unique field, which Load reveals), else
 * undefined. Saves CreatePrimary, a key derivation that takes tens of ms on a hardware TPM.
 */
function persistentSrk(esys: Esys, template: Uint8Array): number | undefined {
  const handle = esys.fromTpmHandle(PERSISTENT_SRK);
  if (handle === undefined) return undefined;
  // The template ends with the two empty unique coordinates (4 bytes); the key has them filled.
  const params = template.subarray(0, template.length - 4);
  const pub = esys.readPublic(handle);
  if (pub.length > params.length && params.every((b, i) => pub[i] === b)) return handle;
  log.debug(`tpm: the persistent key at 0x${PERSISTENT_SRK.toString(16)} is not our SRK; deriving it`);
  esys.closeHandle(handle);
  return undefined;
}

/**
 * Load the sealed object under the SRK: the persistent one if usable, else a primary derived from
 * the owner seed. Returns the parent (also the salt key) and whether the caller must flush it.
 */
function loadSealed(
  esys: Esys,
  sealed: SealedKey,
  privateBlob: Uint8Array,
  publicBlob: Uint8Array,
): { srk: number; transient: boolean; object: number } {
  const template = srkTemplate(sealed.legacySrk);
  const persistent = persistentSrk(esys, template);
  if (persistent !== undefined) {
    try {
      return {
        srk: persistent,
        transient: false,
        object: esys.load(persistent, ESYS_TR.PASSWORD, privateBlob, publicBlob),
      };
    } catch (err) {
      log.debug(
        `tpm: the sealed object does not load under the persistent SRK (${(err as Error).message}); deriving it`,
      );
      esys.closeHandle(persistent);
    }
  }
  const srk = esys.createPrimary(ESYS_TR.RH_OWNER, template).handle;
  try {
    return { srk, transient: true, object: esys.load(srk, ESYS_TR.PASSWORD, privateBlob, publicBlob) };
  } catch (err) {
    esys.flush(srk);
    throw err;
  }
}

/**
 * Unseal through a policy session salted with the storage root key and with response
 * encryption, so the key is never on the TPM bus in clear. A policy mismatch fails Unseal with
 * TPM_RC_POLICY_FAIL (checked before any authValue, so a PIN is not counted), which is then
 * reported by PCR number; no separate PolicyGetDigest round trip on the way.
 */
export function unsealKey(esys: Esys, sealed: SealedKey, pin?: string): Uint8Array {
  if (sealed.pin && pin === undefined) {
    throw new FdeError("the key is sealed with a PIN, but no PIN was given (set pin in the tpm2 table)");
  }
  const { privateBlob, publicBlob } = splitBlob(sealed.blob);
  const { srk, transient, object } = loadSealed(esys, sealed, privateBlob, publicBlob);
  const handles: number[] = [object];
  try {
    const session = esys.startSession("policy", { saltKey: srk, attributes: SESSION_ATTR.encrypt });
    handles.push(session);
    esys.policyPcr(session, [{ bank: sealed.bank, pcrs: sealed.pcrs }]);
    if (sealed.pin) {
      esys.policyAuthValue(session);
      esys.setAuth(object, te.encode(pin));
    }
    try {
      return esys.unseal(object, session);
    } catch (err) {
      if (err instanceof TpmError && err.is(TPM_RC.AUTH_FAIL)) {
        throw new FdeError(
          "the TPM rejected the PIN (wrong PIN; repeated failures lock the TPM out for a while)",
          {
            cause: err,
          },
        );
      }
      if (err instanceof TpmError && err.is(TPM_RC.LOCKOUT)) {
        throw new FdeError(
          "the TPM is in dictionary-attack lockout after wrong PINs; wait or reset the lockout",
          {
            cause: err,
          },
        );
      }
      if (err instanceof TpmError && err.is(TPM_RC.POLICY_FAIL)) throw describeMismatch(esys, sealed);
      throw err;
    }
  } finally {
    for (const h of handles.reverse()) esys.flush(h);
    if (transient) esys.flush(srk);
    else esys.closeHandle(srk);
  }
}
