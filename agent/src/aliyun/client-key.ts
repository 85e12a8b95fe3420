/**
 * Client Key (application access point) credentials of a KMS instance: the downloaded
 * clientKey_<KeyId>.json holds a PKCS#12 (RSA-2048 key, legacy RC2-40/3DES PBE, SHA-1 MAC) that the
 * password from clientKey_<KeyId>_Password.txt unlocks. Neither Bun's crypto nor WebCrypto read
 * PKCS#12 with those ciphers, so node-forge (imported lazily: it is large) does the unwrapping.
 */
import { createPrivateKey, type KeyObject, sign } from "node:crypto";
import { FdeError } from "../errors.ts";

export interface ClientKeyFile {
  KeyId: string;
  /** Base64 of the PKCS#12. */
  PrivateKeyData: string;
}

export interface ClientKey {
  keyId: string;
  /** Subject CN of the client certificate, e.g. "kst-xxx-client": for messages only. */
  subject: string;
  /** base64(RSASSA-PKCS1-v1_5 SHA-256 signature) of the UTF-8 text. */
  sign(stringToSign: string): string;
  /**
   * The certificate and key as PEM for a TLS client certificate, as the official SDK presents
   * them; undefined when the PKCS#12 holds no certificate.
   */
  tlsIdentity?: { cert: string; key: string };
}

/** Parses the clientKey_*.json text; `source` names where it came from for the error message. */
export function parseClientKeyFile(json: string, source: string): ClientKeyFile {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (cause) {
    throw new FdeError(`${source} is not valid JSON (expected the content of clientKey_<KeyId>.json)`, {
      cause,
    });
  }
  const v = value as Partial<ClientKeyFile> | null;
  if (
    !v ||
    typeof v.KeyId !== "string" ||
    typeof v.PrivateKeyData !== "string" ||
    !v.KeyId ||
    !v.PrivateKeyData
  ) {
    throw new FdeError(`${source} must be a JSON object with string fields "KeyId" and "PrivateKeyData"`);
  }
  return { KeyId: v.KeyId, PrivateKeyData: v.PrivateKeyData };
}

/**
 * Unlocks the PKCS#12. The password is the text of the _Password.txt file; trailing whitespace
 * (the file's newline) is not part of it, as in the official clients.
 */
export async function loadClientKey(file: ClientKeyFile, password: string): Promise<ClientKey> {
  const { default: forge } = await import("node-forge");
  const der = Buffer.from(file.PrivateKeyData, "base64");
  let p12: ReturnType<typeof forge.pkcs12.pkcs12FromAsn1>;
  try {
    const asn1 = forge.asn1.fromDer(forge.util.createBuffer(der.toString("binary")));
    p12 = forge.pkcs12.pkcs12FromAsn1(asn1, password.trimEnd());
  } catch (cause) {
    const wrongPassword = /MAC could not be verified|Invalid password/i.test(
      String((cause as Error)?.message),
    );
    throw new FdeError(
      wrongPassword
        ? `client key ${file.KeyId}: client_key_password does not unlock its PrivateKeyData (PKCS#12 MAC check failed)`
        : `client key ${file.KeyId}: PrivateKeyData is not a readable PKCS#12`,
      {
        cause,
        hint: "use the clientKey_<KeyId>.json and clientKey_<KeyId>_Password.txt downloaded together",
      },
    );
  }
  const keyBagType = forge.pki.oids.pkcs8ShroudedKeyBag as string;
  const certBagType = forge.pki.oids.certBag as string;
  const forgeKey = p12.getBags({ bagType: keyBagType })[keyBagType]?.[0]?.key;
  const cert = p12.getBags({ bagType: certBagType })[certBagType]?.[0]?.cert;
  if (!forgeKey || !("n" in forgeKey)) {
    throw new FdeError(`client key ${file.KeyId}: the PKCS#12 holds no RSA private key`);
  }
  const pem = forge.pki.privateKeyInfoToPem(
    forge.pki.wrapRsaPrivateKey(forge.pki.privateKeyToAsn1(forgeKey)),
  );
  const key: KeyObject = createPrivateKey(pem);
  const cn = cert?.subject.getField("CN")?.value;
  return {
    keyId: file.KeyId,
    subject: typeof cn === "string" ? cn : "",
    sign: (s) => sign("sha256", Buffer.from(s, "utf8"), key).toString("base64"),
    tlsIdentity: cert ? { cert: forge.pki.certificateToPem(cert), key: pem } : undefined,
  };
}
