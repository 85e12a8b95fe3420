/**
 * LUKS2 through the cryptsetup CLI. Keys always travel on stdin (`--key-file=-`), never in argv.
 * The subsystem label is cryptpilot's init marker: "cryptpilot-initializing" while a volume is
 * being formatted, "cryptpilot" once it is usable.
 */
import { createHash, getHashes } from "node:crypto";
import { type FileHandle, open as openFile } from "node:fs/promises";
import { run } from "../command.ts";
import { FdeError } from "../errors.ts";
import { log } from "../log.ts";

export const SUBSYSTEM_READY = "cryptpilot";
export const SUBSYSTEM_INITIALIZING = "cryptpilot-initializing";

const LUKS2_MAGIC = [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]; // "LUKS\xba\xbe"
/** Offset and length of the subsystem field in the LUKS2 binary header (cryptsetup luks2.h). */
const SUBSYSTEM_OFFSET = 208;
const SUBSYSTEM_LENGTH = 48;

/**
 * What cryptpilot formats every LUKS2 volume with (formatArgs, encryptOffline); luks2-header.ts
 * refuses a header that says anything else.
 */
export const LUKS2_CIPHER = "aes-xts-plain64";
export const LUKS2_SECTOR_SIZE = 4096;
/** --key-size: the XTS part only; cryptsetup adds the HMAC key's 256 bits itself with --integrity. */
export const XTS_KEY_BITS = 512;
/** --integrity's argument; the header spells it "hmac(sha256)" (LUKS2_INTEGRITY). */
export const INTEGRITY_ARG = "hmac-sha256";
export const LUKS2_INTEGRITY = "hmac(sha256)";

/** The cipher, sector and key-size arguments every format and offline encryption passes. */
const CIPHER_ARGS = [
  "--cipher",
  LUKS2_CIPHER,
  "--sector-size",
  String(LUKS2_SECTOR_SIZE),
  "--key-size",
  String(XTS_KEY_BITS),
];

export interface LuksFormatOptions {
  /** dm-integrity with hmac(sha256) tags (768-bit volume key: 512 for XTS plus 256 for the HMAC). */
  integrity?: boolean;
  /** Skip the full-device integrity wipe (the caller only reads what it wrote first). */
  integrityNoWipe?: boolean;
  subsystem?: string;
  /**
   * The key is random whatever its length: the minimal PBKDF even below HIGH_ENTROPY_KEY_BYTES.
   * (Every random key in the product is at least 32 bytes, so pbkdfFor already picks it.)
   */
  randomKey?: boolean;
}

/** From this length on a key is taken as random (a machine key), not a passphrase. */
export const HIGH_ENTROPY_KEY_BYTES = 32;

export interface PbkdfChoice {
  /** cryptsetup arguments (none: its default, a benchmarked argon2id). */
  args: string[];
  /** Which KDF and why, for the log (no key material). */
  summary: string;
}

/**
 * The key slot's KDF. A KDF only slows down guessing a low-entropy passphrase; a key of 32 bytes or
 * more is taken as random (as systemd-cryptenroll does for its TPM2/FIDO2 token keys), and 2^256
 * guesses stay out of reach without stretching. So such keys get PBKDF2 with cryptsetup's minimum
 * of 1000 iterations instead of a benchmarked argon2id (tens of seconds under emulation and up to
 * 1 GiB of memory, at every format and every open). A shorter key keeps the default argon2id.
 */
export function pbkdfFor(keyBytes: number, randomKey = false): PbkdfChoice {
  if (randomKey || keyBytes >= HIGH_ENTROPY_KEY_BYTES) {
    return {
      args: ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"],
      summary: `key slot KDF: pbkdf2, 1000 iterations (${randomKey ? "random key" : `key of ${HIGH_ENTROPY_KEY_BYTES} bytes or more, taken as random`})`,
    };
  }
  return {
    args: [],
    summary: `key slot KDF: argon2id, cryptsetup default (key shorter than ${HIGH_ENTROPY_KEY_BYTES} bytes, taken as a passphrase)`,
  };
}

/** Header parse result: undefined = no LUKS2 header at all; "" = LUKS2 without a subsystem. */
export function parseLuks2Subsystem(header: Uint8Array): string | undefined {
  if (header.length < SUBSYSTEM_OFFSET + SUBSYSTEM_LENGTH) return undefined;
  if (!LUKS2_MAGIC.every((b, i) => header[i] === b)) return undefined;
  if (header[6] !== 0 || header[7] !== 2) return undefined; // big-endian version 2
  const field = header.subarray(SUBSYSTEM_OFFSET, SUBSYSTEM_OFFSET + SUBSYSTEM_LENGTH);
  const end = field.indexOf(0);
  return new TextDecoder().decode(end < 0 ? field : field.subarray(0, end));
}

/** Read the subsystem label straight from the primary binary header (no dm, no cryptsetup). */
export async function readSubsystem(device: string): Promise<string | undefined> {
  const fh = await openFile(device, "r");
  try {
    const buf = new Uint8Array(512);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return parseLuks2Subsystem(buf.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

/** Binary header layout (cryptsetup luks2.h): 4096 bytes, the JSON area follows up to hdr_size. */
export const BINARY_HEADER_BYTES = 4096;
const LUKS2_MAGIC_SECONDARY = [0x53, 0x4b, 0x55, 0x4c, 0xba, 0xbe]; // "SKUL\xba\xbe"
const CHECKSUM_ALG_OFFSET = 72;
const CHECKSUM_OFFSET = 448;
const CHECKSUM_LENGTH = 64;
/** hdr_size may be 16 KiB to 4 MiB (powers of two): where a secondary header can sit. */
export const HEADER_SIZES = Array.from({ length: 9 }, (_, i) => 16384 * 2 ** i);

const NO_MAGIC = "no LUKS2 header magic";

/**
 * Bounds on the JSON area before it is parsed: the host writes it, and up to 4 MiB of nested or
 * tiny containers would cost the parser hundreds of MiB (measured: 4 MiB of "{}," is 100 MiB).
 * cryptsetup's own metadata is 5 levels deep; a token adds a few; a header has some hundred
 * objects and arrays.
 */
export const LUKS2_JSON_MAX_DEPTH = 32;
export const LUKS2_JSON_MAX_CONTAINERS = 16384;

/** Why TEXT (JSON bytes) is too deep or has too many objects/arrays, or undefined. Linear, no parse. */
export function jsonShapeProblem(text: Uint8Array): string | undefined {
  let depth = 0;
  let containers = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped byte
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > LUKS2_JSON_MAX_DEPTH)
        return `JSON area is nested deeper than ${LUKS2_JSON_MAX_DEPTH} levels`;
      if (++containers > LUKS2_JSON_MAX_CONTAINERS)
        return `JSON area has more than ${LUKS2_JSON_MAX_CONTAINERS} objects and arrays`;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return undefined;
}

/** One checksum-verified copy of the LUKS2 header (binary header plus JSON area). */
export interface HeaderCopy {
  seqid: bigint;
  /** hdr_size: where this copy says the secondary sits. */
  size: number;
  /** Where this copy sits on the device: 0 for the primary, hdr_size for the secondary. */
  offset: number;
  /** The hash the checksum uses (cryptsetup writes "sha256"). */
  checksumAlg: string;
  /** The hdr_size bytes of this copy exactly as read (what was verified). */
  bytes: Uint8Array;
  json: unknown;
}

/** The checksum over a header copy: hdr_size bytes with the checksum field taken as zeros. */
function headerChecksum(area: Uint8Array, alg: string): Uint8Array {
  const zeroed = area.slice();
  zeroed.fill(0, CHECKSUM_OFFSET, CHECKSUM_OFFSET + CHECKSUM_LENGTH);
  const out = new Uint8Array(CHECKSUM_LENGTH);
  out.set(createHash(alg).update(zeroed).digest());
  return out;
}

/**
 * One header copy at `offset`, or why it is unusable: magic, version, hdr_offset, size and the
 * checksum over hdr_size bytes (checksum field zeroed) must all hold.
 */
async function readHeaderCopy(
  fh: FileHandle,
  offset: number,
  magic: number[],
  expectedSize?: number,
): Promise<HeaderCopy | string> {
  const bin = new Uint8Array(BINARY_HEADER_BYTES);
  const { bytesRead } = await fh.read(bin, 0, bin.length, offset);
  if (bytesRead < bin.length || !magic.every((b, i) => bin[i] === b)) return NO_MAGIC;
  const view = new DataView(bin.buffer);
  if (view.getUint16(6) !== 2) return `version ${view.getUint16(6)}, not 2`;
  const size = Number(view.getBigUint64(8));
  if (!HEADER_SIZES.includes(size) || (expectedSize !== undefined && size !== expectedSize)) {
    return `invalid header size ${size}`;
  }
  if (view.getBigUint64(256) !== BigInt(offset)) return "header offset field does not match its position";
  const algField = bin.subarray(CHECKSUM_ALG_OFFSET, CHECKSUM_ALG_OFFSET + 32);
  const alg = new TextDecoder().decode(algField.subarray(0, Math.max(0, algField.indexOf(0))));
  if (!getHashes().includes(alg)) return `unsupported checksum algorithm "${alg}"`;
  // Read once: everything below (checksum, JSON, the private copy) uses these bytes only.
  const area = new Uint8Array(size);
  if ((await fh.read(area, 0, size, offset)).bytesRead < size) return "header is truncated";
  const stored = area.subarray(CHECKSUM_OFFSET, CHECKSUM_OFFSET + CHECKSUM_LENGTH);
  const expected = headerChecksum(area, alg);
  if (!expected.every((b, i) => stored[i] === b)) return "checksum mismatch";
  const text = area.subarray(BINARY_HEADER_BYTES);
  const end = text.indexOf(0);
  const json = end < 0 ? text : text.subarray(0, end);
  const shape = jsonShapeProblem(json);
  if (shape) return shape;
  try {
    return {
      seqid: new DataView(area.buffer).getBigUint64(16),
      size,
      offset,
      checksumAlg: alg,
      bytes: area,
      json: JSON.parse(new TextDecoder().decode(json)),
    };
  } catch {
    return "JSON area does not parse";
  }
}

/**
 * The header copy `copy` re-labelled as the primary (offset 0) or secondary (offset hdr_size):
 * magic, hdr_offset and checksum rewritten, everything else (JSON, seqid) byte for byte the same.
 */
export function relabelHeaderCopy(copy: HeaderCopy, offset: 0 | "secondary"): Uint8Array {
  const out = copy.bytes.slice();
  const at = offset === 0 ? 0 : copy.size;
  out.set(at === 0 ? LUKS2_MAGIC : LUKS2_MAGIC_SECONDARY, 0);
  new DataView(out.buffer).setBigUint64(256, BigInt(at));
  out.set(headerChecksum(out, copy.checksumAlg), CHECKSUM_OFFSET);
  return out;
}

/**
 * The LUKS2 header copy cryptsetup would use, read straight from the device without spawning
 * cryptsetup (~0.35 s in an emulated guest). Like cryptsetup: both copies are checksum-verified,
 * the one with the higher seqid wins, and a damaged primary falls back to the secondary (searched
 * at every possible offset when the primary's hdr_size cannot be trusted).
 */
export async function readHeader(device: string): Promise<HeaderCopy> {
  const fh = await openFile(device, "r");
  try {
    const primary = await readHeaderCopy(fh, 0, LUKS2_MAGIC);
    let secondary: HeaderCopy | string = "not found at any hdr_size offset";
    const offsets = typeof primary === "string" ? HEADER_SIZES : [primary.size];
    for (const offset of offsets) {
      const copy = await readHeaderCopy(fh, offset, LUKS2_MAGIC_SECONDARY, offset);
      // Keep the reason of an offset that had a header (a bare "no magic" says less).
      if (typeof copy !== "string" || offsets.length === 1 || copy !== NO_MAGIC) secondary = copy;
      if (typeof copy !== "string") break;
    }
    if (typeof primary !== "string" && typeof secondary !== "string") {
      return secondary.seqid > primary.seqid ? secondary : primary;
    }
    if (typeof primary !== "string") return primary;
    if (typeof secondary !== "string") {
      log.warn(`${device}: the primary LUKS2 header is damaged (${primary}); using the secondary copy`);
      return secondary;
    }
    throw new FdeError(`${device} has no valid LUKS2 header: primary: ${primary}; secondary: ${secondary}`, {
      hint: "is this a LUKS2 volume? a header damaged in both copies needs a header backup (cryptsetup luksHeaderRestore)",
    });
  } finally {
    await fh.close();
  }
}

/**
 * The LUKS2 JSON metadata (keyslots, tokens, segments, ...) of the copy cryptsetup would use, as
 * `cryptsetup luksDump --dump-json-metadata` prints it (see readHeader).
 */
export async function readHeaderJson(device: string): Promise<unknown> {
  return (await readHeader(device)).json;
}

/** `pbkdf` defaults to the choice for an unknown (zero-length) key: a passphrase's argon2id. */
export function formatArgs(
  device: string,
  options: LuksFormatOptions,
  pbkdf: PbkdfChoice = pbkdfFor(0, options.randomKey),
): string[] {
  const args = ["luksFormat", "--batch-mode", "--type", "luks2", ...CIPHER_ARGS];
  if (options.integrity) {
    args.push("--integrity", INTEGRITY_ARG);
    if (options.integrityNoWipe) args.push("--integrity-no-wipe");
  }
  if (options.subsystem) args.push("--subsystem", options.subsystem);
  args.push(...pbkdf.args, "--key-file=-", device);
  return args;
}

export async function format(
  device: string,
  key: Uint8Array,
  options: LuksFormatOptions = {},
): Promise<void> {
  const pbkdf = pbkdfFor(key.length, options.randomKey);
  log.info(`  ${device}: ${pbkdf.summary}`);
  await run("cryptsetup", formatArgs(device, options, pbkdf), {
    stdin: key,
    hint: `check that ${device} exists, is not in use and is large enough for a LUKS2 header`,
  });
}

/**
 * cryptsetup's arguments to open DEVICE as NAME with the key on stdin, only KEYSLOT when given.
 * With HEADER cryptsetup reads the LUKS2 metadata from that file (a checked private copy, see
 * luks2-header.ts), not from DEVICE. External token plugins stay off: tokens are host-written
 * JSON, and the agent unseals its tpm2 tokens itself.
 */
export function openArgs(device: string, name: string, keySlot?: number, header?: string): string[] {
  const slot = keySlot === undefined ? [] : ["--key-slot", String(keySlot)];
  const hdr = header === undefined ? [] : ["--header", header];
  return [
    "open",
    "--type",
    "luks2",
    "--disable-external-tokens",
    ...hdr,
    ...slot,
    "--key-file=-",
    device,
    name,
  ];
}

/**
 * Open DEVICE as /dev/mapper/NAME. With KEYSLOT only that keyslot is tried (no KDF run for the
 * others). A wrong key fails with cryptsetup's exit code 2. Callers that open a header the host
 * could have written use luks2-header.ts openChecked, which passes HEADER.
 */
export async function open(
  device: string,
  name: string,
  key: Uint8Array,
  keySlot?: number,
  header?: string,
): Promise<void> {
  await run("cryptsetup", openArgs(device, name, keySlot, header), {
    stdin: key,
    hint: `the key did not open ${device}, or dm-crypt is missing`,
  });
}

export async function close(name: string): Promise<void> {
  await run("cryptsetup", ["close", name]);
}

export async function setSubsystem(device: string, subsystem: string): Promise<void> {
  await run("cryptsetup", ["config", "--batch-mode", "--subsystem", subsystem, device]);
}

/**
 * Encrypt a plaintext image file in place, offline, in userspace (works without device-mapper).
 * The file must already have `reduceBytes` of spare room at its end; the LUKS2 header goes in front.
 */
export async function encryptOffline(
  file: string,
  key: Uint8Array,
  reduceBytes: number,
  subsystem = SUBSYSTEM_READY,
): Promise<void> {
  const pbkdf = pbkdfFor(key.length);
  log.info(`  ${pbkdf.summary}`);
  await run(
    "cryptsetup",
    [
      "reencrypt",
      "--batch-mode",
      "--encrypt",
      "--type",
      "luks2",
      ...CIPHER_ARGS,
      "--subsystem",
      subsystem,
      "--reduce-device-size",
      `${reduceBytes / 1024 / 1024}M`,
      ...pbkdf.args,
      "--key-file=-",
      file,
    ],
    { stdin: key },
  );
}

/** The dm-integrity mapping cryptsetup stacks under NAME for a LUKS2 volume with integrity. */
const integrityMapping = (name: string) => `${name}_dif`;

export interface IntegritySize {
  /** Length of the active dm-integrity table (what NAME can use now). */
  mappedSectors: number;
  /** What the kernel computed from the device size when it loaded the table. */
  providedSectors: number;
}

/**
 * `dmsetup status NAME_dif`: "START LENGTH integrity MISMATCHES PROVIDED_SECTORS RECALC"
 * (kernel dm-integrity status, STATUSTYPE_INFO).
 */
export function parseIntegrityStatus(line: string): IntegritySize {
  const f = line.trim().split(/\s+/);
  const mapped = Number(f[1]);
  const provided = Number(f[4]);
  if (f[2] !== "integrity" || !Number.isSafeInteger(mapped) || !Number.isSafeInteger(provided)) {
    throw new FdeError(`unexpected dm-integrity status "${line.trim()}"`);
  }
  return { mappedSectors: mapped, providedSectors: provided };
}

export async function integritySize(name: string): Promise<IntegritySize> {
  const { stdout } = await run("dmsetup", ["status", integrityMapping(name)]);
  return parseIntegrityStatus(new TextDecoder().decode(stdout));
}

const WIPE_CHUNK_BYTES = 4 * 1024 * 1024;

/**
 * Write zeros over [start, end) of an opened LUKS2 integrity mapping, so every sector there has a
 * valid tag and can be read (a sector dm-integrity never wrote fails reads with an I/O error).
 */
export async function wipeIntegrityRange(device: string, start: number, end: number): Promise<void> {
  const zeros = new Uint8Array(Math.min(WIPE_CHUNK_BYTES, Math.max(0, end - start)));
  const fh = await openFile(device, "r+");
  try {
    for (let pos = start; pos < end; pos += zeros.length) {
      const len = Math.min(zeros.length, end - pos);
      const { bytesWritten } = await fh.write(zeros, 0, len, pos);
      if (bytesWritten !== len) throw new FdeError(`short write to ${device} at byte ${pos}`);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}
