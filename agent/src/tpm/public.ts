/**
 * TPMT_PUBLIC templates for the three objects we create, and a parser for the public areas we
 * read back (the AK's RSA modulus becomes the evidence's public key).
 */
import { createPublicKey, type KeyObject } from "node:crypto";
import { FdeError } from "../errors.ts";
import { TPM2_ALG, TPM2_ECC_NIST_P256, TpmReader, TpmWriter } from "./marshal.ts";

// TPMA_OBJECT bits (TPM 2.0 Part 2, 8.3).
export const TPMA_OBJECT = {
  fixedTPM: 0x00000002,
  fixedParent: 0x00000010,
  sensitiveDataOrigin: 0x00000020,
  userWithAuth: 0x00000040,
  noDA: 0x00000400,
  restricted: 0x00010000,
  decrypt: 0x00020000,
  sign: 0x00040000,
} as const;

const A = TPMA_OBJECT;

/**
 * The storage root key: an ECC P-256 primary under the owner hierarchy with the TCG Provisioning
 * Guidance SRK template (as systemd 254+ uses, and `tpm2_createprimary -C o -G
 * ecc256:null:aes128cfb -a 'restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda'`).
 * It is re-derived from the owner seed on every boot, so nothing needs to be persisted. ECC
 * because deriving an RSA primary means a prime search (hundreds of ms on a real TPM).
 * `legacy`: the same without noDA, the primary systemd before 254 (Debian 12: 252) seals under.
 */
export function srkTemplate(legacy = false): Uint8Array {
  return new TpmWriter()
    .u16(TPM2_ALG.ECC)
    .u16(TPM2_ALG.SHA256)
    .u32(
      A.fixedTPM |
        A.fixedParent |
        A.sensitiveDataOrigin |
        A.userWithAuth |
        (legacy ? 0 : A.noDA) |
        A.restricted |
        A.decrypt,
    )
    .tpm2b(new Uint8Array(0))
    .u16(TPM2_ALG.AES)
    .u16(128)
    .u16(TPM2_ALG.CFB)
    .u16(TPM2_ALG.NULL) // scheme
    .u16(TPM2_ECC_NIST_P256)
    .u16(TPM2_ALG.NULL) // kdf
    .tpm2b(new Uint8Array(0)) // unique.x
    .tpm2b(new Uint8Array(0)) // unique.y
    .done();
}

/**
 * The attestation key: an RSA-2048 restricted signing primary (RSASSA-SHA256) under the
 * endorsement hierarchy. Both trustee verifiers accept only RSA (upstream requires RSASSA). As a
 * primary with a fixed template it is the same key on every boot of the same TPM (derived from
 * the endorsement seed), so a verifier can pin it, like upstream's persistent AK.
 */
export function akTemplate(): Uint8Array {
  return new TpmWriter()
    .u16(TPM2_ALG.RSA)
    .u16(TPM2_ALG.SHA256)
    .u32(A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.userWithAuth | A.restricted | A.sign)
    .tpm2b(new Uint8Array(0))
    .u16(TPM2_ALG.NULL) // symmetric
    .u16(TPM2_ALG.RSASSA)
    .u16(TPM2_ALG.SHA256)
    .u16(2048)
    .u32(0) // default exponent 65537
    .tpm2b(new Uint8Array(0))
    .done();
}

/**
 * A sealed data object usable only through its policy (no userWithAuth): fixedTPM|fixedParent,
 * plus noDA when there is no PIN (a PIN must count towards dictionary-attack lockout; a pure PCR
 * policy has no guessable secret).
 */
export function sealedTemplate(policyDigest: Uint8Array, withPin: boolean): Uint8Array {
  return new TpmWriter()
    .u16(TPM2_ALG.KEYEDHASH)
    .u16(TPM2_ALG.SHA256)
    .u32(A.fixedTPM | A.fixedParent | (withPin ? 0 : A.noDA))
    .tpm2b(policyDigest)
    .u16(TPM2_ALG.NULL) // keyedHash scheme
    .tpm2b(new Uint8Array(0))
    .done();
}

export interface PublicArea {
  type: number;
  nameAlg: number;
  attributes: number;
  authPolicy: Uint8Array;
  /** RSA only: modulus and exponent. */
  rsa?: { n: Uint8Array; exponent: number; scheme: number; schemeHash: number };
}

function skipSymmetric(r: TpmReader): void {
  if (r.u16() !== TPM2_ALG.NULL) {
    r.u16();
    r.u16();
  }
}

function readScheme(r: TpmReader): { scheme: number; hash: number } {
  const scheme = r.u16();
  return { scheme, hash: scheme === TPM2_ALG.NULL ? 0 : r.u16() };
}

/** Parse a TPMT_PUBLIC (the contents of a TPM2B_PUBLIC). */
export function parsePublic(bytes: Uint8Array): PublicArea {
  const r = new TpmReader(bytes, "TPMT_PUBLIC");
  const type = r.u16();
  const nameAlg = r.u16();
  const attributes = r.u32();
  const authPolicy = r.tpm2b();
  const area: PublicArea = { type, nameAlg, attributes, authPolicy };
  if (type === TPM2_ALG.RSA) {
    skipSymmetric(r);
    const { scheme, hash } = readScheme(r);
    r.u16(); // keyBits
    const exponent = r.u32() || 65537;
    area.rsa = { n: r.tpm2b(), exponent, scheme, schemeHash: hash };
  }
  return area;
}

/** The RSA public key of a TPMT_PUBLIC as a node:crypto KeyObject (for SPKI DER/PEM export). */
export function rsaPublicKey(area: PublicArea): KeyObject {
  if (!area.rsa) throw new FdeError("the TPM public area is not an RSA key");
  const e = Buffer.alloc(4);
  e.writeUInt32BE(area.rsa.exponent);
  let start = 0;
  while (start < 3 && e[start] === 0) start++;
  return createPublicKey({
    key: {
      kty: "RSA",
      n: Buffer.from(area.rsa.n).toString("base64url"),
      e: e.subarray(start).toString("base64url"),
    },
    format: "jwk",
  });
}
