/**
 * The sealed key lives in the volume's LUKS2 header as a token, the way systemd-cryptenroll
 * stores its "systemd-tpm2" token, so no extra file has to travel with the disk. Field names
 * follow systemd's; the type is our own ("cryptpilot-tpm2") because the payload differs: systemd
 * seals a random passphrase for a new keyslot, we seal the volume's existing key.
 */

import { run } from "../command.ts";
import { readHeaderJson } from "../disk/luks.ts";
import { LUKS2_MAX_TOKENS, LUKS2_TOKEN_MAX_BYTES } from "../disk/luks2-header.ts";
import { FdeError } from "../errors.ts";
import type { PcrBank } from "./marshal.ts";
import type { SealedKey } from "./seal.ts";

export const TOKEN_TYPE = "cryptpilot-tpm2";

export interface Tpm2Token {
  type: typeof TOKEN_TYPE;
  keyslots: string[];
  "tpm2-blob": string;
  "tpm2-pcrs": number[];
  "tpm2-pcr-bank": PcrBank;
  "tpm2-primary-alg": "ecc";
  "tpm2-policy-hash": string;
  "tpm2-pin": boolean;
  /** Not in systemd's token: the PCR values at sealing time, to name what changed. */
  "tpm2-pcr-values": Record<string, string>;
}

export function tokenFromSealed(sealed: SealedKey, keyslot: number | undefined): Tpm2Token {
  return {
    type: TOKEN_TYPE,
    keyslots: keyslot === undefined ? [] : [String(keyslot)],
    "tpm2-blob": Buffer.from(sealed.blob).toString("base64"),
    "tpm2-pcrs": sealed.pcrs,
    "tpm2-pcr-bank": sealed.bank,
    "tpm2-primary-alg": "ecc",
    "tpm2-policy-hash": Buffer.from(sealed.policyDigest).toString("hex"),
    "tpm2-pin": sealed.pin,
    "tpm2-pcr-values": sealed.pcrValues,
  };
}

/**
 * The keyslot a token (ours or systemd's) unlocks, when it names exactly one. Anything else
 * (none, several, malformed) gives undefined: cryptsetup then tries every keyslot, as before.
 */
export function tokenKeySlot(json: unknown): number | undefined {
  const slots = (json as { keyslots?: unknown }).keyslots;
  if (!Array.isArray(slots) || slots.length !== 1) return undefined;
  const slot = slots[0];
  return typeof slot === "string" && /^\d{1,2}$/.test(slot) ? Number(slot) : undefined;
}

const BANKS = ["sha1", "sha256", "sha384", "sha512"];

/**
 * Bounds on a token read from a header (host-written JSON). A sealed blob is a TPM2B_PRIVATE plus
 * a TPM2B_PUBLIC, a few hundred bytes; 8 KiB of base64 leaves room for larger TPM objects.
 */
export const TPM2_BLOB_MAX_B64_CHARS = 8192;
/** A TPM has 24 PCRs: a list naming more than that (or one twice) is not a real policy. */
export const TPM2_MAX_PCRS = 24;
/** A PCR value in hex: sha512 is 128 characters. */
const PCR_VALUE_MAX_HEX = 128;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** Validate a token read from a header; `where` names the device and token id for messages. */
export function sealedFromToken(json: unknown, where: string, type = TOKEN_TYPE): SealedKey {
  const t = json as Partial<Tpm2Token>;
  const bad = (field: string) =>
    new FdeError(`${where}: the ${type} token has an invalid or missing "${field}"`, {
      hint: "re-enroll with 'cryptpilot-fde tpm2 enroll'",
    });
  const blob = t["tpm2-blob"];
  // Buffer.from(base64) skips what is not base64: the check keeps a garbage blob from parsing.
  if (typeof blob !== "string" || blob.length > TPM2_BLOB_MAX_B64_CHARS || !BASE64.test(blob))
    throw bad("tpm2-blob");
  const pcrs = t["tpm2-pcrs"];
  if (
    !Array.isArray(pcrs) ||
    pcrs.length > TPM2_MAX_PCRS ||
    new Set(pcrs).size !== pcrs.length ||
    !pcrs.every((p) => Number.isInteger(p) && p >= 0 && p < TPM2_MAX_PCRS)
  )
    throw bad("tpm2-pcrs");
  const bank = t["tpm2-pcr-bank"];
  if (typeof bank !== "string" || !BANKS.includes(bank)) throw bad("tpm2-pcr-bank");
  if (t["tpm2-primary-alg"] !== "ecc") throw bad("tpm2-primary-alg");
  const policy = t["tpm2-policy-hash"];
  if (typeof policy !== "string" || !/^[0-9a-f]{64}$/.test(policy)) throw bad("tpm2-policy-hash");
  if (typeof t["tpm2-pin"] !== "boolean") throw bad("tpm2-pin");
  const values = t["tpm2-pcr-values"] ?? {};
  if (
    typeof values !== "object" ||
    values === null ||
    Array.isArray(values) ||
    Object.keys(values).length > TPM2_MAX_PCRS ||
    !Object.entries(values).every(
      ([k, v]) =>
        /^\d{1,2}$/.test(k) &&
        typeof v === "string" &&
        v.length <= PCR_VALUE_MAX_HEX &&
        /^[0-9a-f]*$/i.test(v),
    )
  )
    throw bad("tpm2-pcr-values");
  return {
    blob: Buffer.from(blob, "base64"),
    bank: bank as PcrBank,
    pcrs,
    policyDigest: Buffer.from(policy, "hex"),
    pin: t["tpm2-pin"],
    pcrValues: values as Record<string, string>,
  };
}

/** systemd-cryptenroll's token; the tpm2 provider also unlocks volumes enrolled with it. */
export const SYSTEMD_TOKEN_TYPE = "systemd-tpm2";

/**
 * A systemd-tpm2 token as a sealed key. Supported: PCR policies without a PIN (systemd's PINs
 * are salted and hashed before use) and without signed policies or pcrlock. The unsealed secret
 * is not the passphrase itself: systemd uses its base64 encoding (see systemdPassphrase).
 */
export function sealedFromSystemdToken(json: unknown, where: string): SealedKey {
  const t = json as Record<string, unknown>;
  const unsupported = (what: string) =>
    new FdeError(`${where}: this systemd-tpm2 token uses ${what}, which the tpm2 provider does not support`, {
      hint: "re-enroll with 'cryptpilot-fde tpm2 enroll', or with systemd-cryptenroll --tpm2-pcrs=... and no PIN",
    });
  if (t["tpm2-pin"] === true) throw unsupported("a PIN");
  if (t["tpm2-pubkey"] !== undefined && t["tpm2-pubkey"] !== null && t["tpm2-pubkey"] !== "") {
    throw unsupported("a signed PCR policy (--tpm2-public-key)");
  }
  if (t.tpm2_pcrlock === true) throw unsupported("pcrlock");
  if (t["tpm2-primary-alg"] !== undefined && t["tpm2-primary-alg"] !== "ecc") {
    throw unsupported(`an ${String(t["tpm2-primary-alg"]).toUpperCase()} primary key`);
  }
  const pcrs = t["tpm2-hash-pcrs"] ?? t["tpm2-pcrs"];
  return {
    ...sealedFromToken(
      {
        "tpm2-blob": t["tpm2-blob"],
        "tpm2-pcrs": pcrs,
        "tpm2-pcr-bank": t["tpm2-pcr-bank"] ?? "sha256",
        "tpm2-primary-alg": "ecc",
        "tpm2-policy-hash": t["tpm2-policy-hash"],
        "tpm2-pin": false,
      },
      where,
      SYSTEMD_TOKEN_TYPE,
    ),
    // systemd 254+ records the SRK it used ("tpm2-srk", the TCG template); older ones derive a primary without noDA.
    legacySrk: t["tpm2-srk"] === undefined,
  };
}

/** The passphrase a systemd-tpm2 keyslot takes: the unsealed secret, base64-encoded. */
export function systemdPassphrase(secret: Uint8Array): Uint8Array {
  return new TextEncoder().encode(Buffer.from(secret).toString("base64"));
}

interface LuksMetadata {
  tokens?: Record<string, { type?: string }>;
}

/** The cryptpilot-tpm2 and systemd-tpm2 tokens in the header, oldest first. */
export async function findTokens(device: string): Promise<{ id: number; type: string; token: unknown }[]> {
  const meta = (await readHeaderJson(device)) as LuksMetadata;
  const tokens = meta.tokens ?? {};
  if (typeof tokens !== "object" || tokens === null || Object.keys(tokens).length > LUKS2_MAX_TOKENS) {
    throw new FdeError(
      `${device}: the LUKS2 header's tokens are not an object of at most ${LUKS2_MAX_TOKENS}`,
    );
  }
  return Object.entries(tokens)
    .filter(([, token]) => token !== null && typeof token === "object")
    .filter(([, token]) => token.type === TOKEN_TYPE || token.type === SYSTEMD_TOKEN_TYPE)
    .map(([id, token]) => {
      const bytes = JSON.stringify(token).length;
      if (bytes > LUKS2_TOKEN_MAX_BYTES) {
        throw new FdeError(
          `${device}: LUKS2 token ${id.slice(0, 20)} is ${bytes} bytes of JSON (at most ${LUKS2_TOKEN_MAX_BYTES}); cryptpilot writes about 2 KiB`,
          { hint: "the header was edited outside the guest; re-enroll with 'cryptpilot-fde tpm2 enroll'" },
        );
      }
      return [id, token] as const;
    })
    .map(([id, token]) => ({ id: Number(id), type: token.type!, token }))
    .sort((a, b) => a.id - b.id);
}

const ours = async (device: string) => (await findTokens(device)).filter((t) => t.type === TOKEN_TYPE);

/** Store the token, replacing any previous cryptpilot-tpm2 token, and return its id. */
export async function storeToken(device: string, token: Tpm2Token): Promise<number> {
  const old = await ours(device);
  await run("cryptsetup", ["token", "import", "--json-file", "-", device], {
    stdin: JSON.stringify(token),
    hint: `cannot write the TPM token into the LUKS2 header of ${device}`,
  });
  const added = (await ours(device)).find((t) => !old.some((o) => o.id === t.id));
  if (!added) throw new FdeError(`cryptsetup did not store the TPM token in ${device}`);
  for (const { id } of old) await run("cryptsetup", ["token", "remove", "--token-id", String(id), device]);
  return added.id;
}

/**
 * The keyslot `key` opens, found by cryptsetup itself (which also proves the key is right before
 * we seal it). Works on a LUKS2 file without device-mapper.
 */
export async function keyslotForKey(device: string, key: Uint8Array): Promise<number> {
  const { stderr, stdout } = await run(
    "cryptsetup",
    ["open", "--test-passphrase", "--verbose", "--key-file", "-", device],
    {
      stdin: key,
      okCodes: [0, 1, 2],
    },
  );
  const text = `${new TextDecoder().decode(stdout)}\n${stderr}`;
  const m = /Key slot (\d+) unlocked/.exec(text);
  if (!m) {
    throw new FdeError(`the given key does not open ${device}, so it is not sealed`, {
      hint: "pass the key that currently unlocks the volume (the output of its existing provider, or a key file)",
    });
  }
  return Number(m[1]);
}
