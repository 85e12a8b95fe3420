/**
 * The ephemeral TEE key: generated per attestation, its public half goes into the runtime data
 * (and so into the hardware report), the KBS encrypts resources to it. Never leaves memory.
 */
import { exportJWK, type FlattenedJWE, flattenedDecrypt, generateKeyPair } from "jose";

export type TeeKeyAlgorithm = "ECDH-ES+A256KW" | "RSA-OAEP-256";

/** Exactly the members trustee's TeePubKey keeps; anything else would change the hash (§1.7). */
export type TeePubKey =
  | { kty: "EC"; crv: string; alg: string; x: string; y: string }
  | { kty: "RSA"; alg: string; n: string; e: string };

export interface TeeKeyPair {
  alg: TeeKeyAlgorithm;
  publicJwk: TeePubKey;
  privateKey: CryptoKey;
}

export async function generateTeeKeyPair(alg: TeeKeyAlgorithm = "ECDH-ES+A256KW"): Promise<TeeKeyPair> {
  if (alg === "RSA-OAEP-256") {
    const { publicKey, privateKey } = await generateKeyPair(alg, { modulusLength: 3072 });
    const jwk = await exportJWK(publicKey);
    return { alg, privateKey, publicJwk: { kty: "RSA", alg, n: jwk.n!, e: jwk.e! } };
  }
  const { publicKey, privateKey } = await generateKeyPair(alg, { crv: "P-256" });
  const jwk = await exportJWK(publicKey);
  return { alg, privateKey, publicJwk: { kty: "EC", crv: "P-256", alg, x: jwk.x!, y: jwk.y! } };
}

/** Decrypt a KBS resource response (flattened JWE, enc A256GCM, alg matching our key). */
export async function decryptResource(jwe: FlattenedJWE, key: TeeKeyPair): Promise<Uint8Array> {
  const { plaintext } = await flattenedDecrypt(jwe, key.privateKey, {
    keyManagementAlgorithms: [key.alg],
    contentEncryptionAlgorithms: ["A256GCM"],
  });
  return plaintext;
}
