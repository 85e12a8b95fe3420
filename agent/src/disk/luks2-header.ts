/**
 * LUKS2 header policy (issue #14): the host owns the disk, so a LUKS2 header is attacker input.
 * A header whose keyslot opens with ANY key (cipher_null keyslot area) and whose volume key the
 * host chose would let the host read every write, and through a persistent dm-snapshot COW
 * override verity-checked rootfs blocks (CVE-2025-59054, CVE-2025-58356). So before cryptsetup
 * sees a header, the agent reads it once, checks THAT copy against exactly what cryptpilot itself
 * writes (luks.formatArgs, luks.encryptOffline, tpm2 enroll / systemd-cryptenroll keyslots), and
 * hands cryptsetup a private copy of it (`--header`), so a header swapped after the check is
 * never read.
 */
import { randomUUID } from "node:crypto";
import { mkdirSync } from "node:fs";
import { open as openFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { FdeError } from "../errors.ts";
import { log } from "../log.ts";
import { sizeSectors } from "./blockdev.ts";
import {
  BINARY_HEADER_BYTES,
  type HeaderCopy,
  LUKS2_CIPHER,
  LUKS2_INTEGRITY,
  LUKS2_SECTOR_SIZE,
  open,
  readHeader,
  relabelHeaderCopy,
  XTS_KEY_BITS,
} from "./luks.ts";

/** The profile a volume must have: what the configuration asks for. */
export interface HeaderProfile {
  /** [delta] integrity / a volume's integrity: dm-integrity with hmac(sha256) under the encryption. */
  integrity: boolean;
}

/** Volume key bytes: the XTS key, plus 256 bits for hmac(sha256) with integrity. */
export const VOLUME_KEY_BYTES = { plain: XTS_KEY_BITS / 8, integrity: XTS_KEY_BITS / 8 + 32 } as const;
/** Keyslot-area key sizes a keyslot may use with aes-xts-plain64 (256- or 512-bit XTS). */
export const KEYSLOT_AREA_KEY_BYTES = [32, 64];
/** cryptsetup's anti-forensic split: always 4000 stripes in LUKS2. */
export const AF_STRIPES = 4000;
/** Hashes for PBKDF2, the AF splitter and digests: sha256 is cryptsetup's, sha512 systemd-cryptenroll's. */
export const LUKS2_HASHES = ["sha256", "sha384", "sha512"];
/** cryptsetup's PBKDF2 minimum; cryptpilot's random-key keyslots use exactly this. */
export const PBKDF2_MIN_ITERATIONS = 1000;
/**
 * Upper bound on PBKDF2 iterations (keyslots and digests): several times what cryptsetup's 2 s
 * benchmark picks on a fast CPU (a few million). More would only let the host stall the boot.
 */
export const PBKDF2_MAX_ITERATIONS = 2 ** 24;
/** Argon2 bounds: cryptsetup's minimum time cost, its default memory cap (1 GiB) and threads. */
export const ARGON2_MIN_TIME = 4;
export const ARGON2_MIN_MEMORY_KIB = 32;
export const ARGON2_MAX_MEMORY_KIB = 1024 * 1024;
export const ARGON2_MAX_CPUS = 4;
/**
 * Bound on time x memory (KiB passes): 32 passes over 1 GiB. cryptsetup's benchmark trades one
 * for the other (less memory on a small machine, more passes), so the product is what bounds
 * the time a host-written KDF can cost; a 2 s benchmark on a fast CPU stays well below it.
 */
export const ARGON2_MAX_WORK = 32 * ARGON2_MAX_MEMORY_KIB;
/** LUKS2 limits (luks2.h): at most 32 keyslots and 32 tokens. */
export const LUKS2_MAX_KEYSLOTS = 32;
export const LUKS2_MAX_TOKENS = 32;
/** One token's JSON (re-serialised); a cryptpilot-tpm2 token is about 2 KiB. */
export const LUKS2_TOKEN_MAX_BYTES = 64 * 1024;
/** A token's type string (systemd-tpm2, cryptpilot-tpm2, ...). */
export const LUKS2_TOKEN_TYPE_MAX_CHARS = 64;
/**
 * The keyslots area: cryptsetup's default is 16 MiB minus both header copies, and every
 * cryptpilot volume has that layout. The private copy is sparse, but the bound keeps it small.
 */
export const KEYSLOTS_AREA_MAX_BYTES = 16 * 1024 * 1024;
/** One keyslot's area: 96 key bytes x 4000 stripes is 375 KiB; bounded so one read stays small. */
export const KEYSLOT_AREA_MAX_BYTES = 1024 * 1024;
/** Base64 salts and digests: cryptsetup writes 32-byte values (44 characters). */
const B64_MAX_CHARS = 256;
/** Where private header copies go: tmpfs in the initrd, never on a disk the host can read. */
export const HEADER_COPY_DIR = "/run/cryptpilot";

/** The checked parts of a header, what the private copy needs. */
export interface CheckedHeader {
  copy: HeaderCopy;
  keyslotsSize: number;
  /** Keyslot areas [offset, offset + size) on the device (and in the copy). */
  areas: { offset: number; size: number }[];
}

const REPLACED = "cryptpilot writes";
const HINT =
  "the LUKS2 header is not one cryptpilot wrote: it was replaced or edited outside the guest. Nothing was opened; a persistent volume keeps its data and is never reformatted on this error: restore the header from a backup (cryptsetup luksHeaderRestore) or re-create the volume";

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** A decimal byte count as LUKS2 stores it (a JSON string), as a safe integer, or undefined. */
function u64(v: unknown): number | undefined {
  if (typeof v !== "string" || !/^\d{1,16}$/.test(v)) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * Check LUKS2 JSON metadata against what cryptpilot writes. Throws an FdeError naming DEVICE and
 * the field. `deviceBytes` is the size of the data device; `hdrSize` the binary header's hdr_size.
 * Pure: every input is explicit, so tests feed crafted JSON directly.
 */
export function checkLuks2Metadata(
  json: unknown,
  opts: { device: string; profile: HeaderProfile; hdrSize: number; deviceBytes: number },
): { keyslotsSize: number; areas: { offset: number; size: number }[] } {
  const { device, profile, hdrSize, deviceBytes } = opts;
  const fail = (what: string): never => {
    throw new FdeError(`${device}: LUKS2 ${what} — the header was replaced`, { hint: HINT });
  };
  const str = (v: unknown) => JSON.stringify(v)?.slice(0, 80) ?? String(v);
  const only = (o: Obj, where: string, allowed: string[]) => {
    for (const k of Object.keys(o))
      if (!allowed.includes(k)) fail(`${where} has the field "${k.slice(0, 40)}", which ${REPLACED} never`);
  };
  const map = (v: unknown, where: string, max: number): [string, Obj][] => {
    if (!isObj(v)) return fail(`"${where}" is missing or not an object`);
    const entries = Object.entries(v);
    if (entries.length > max) fail(`"${where}" has ${entries.length} entries (at most ${max})`);
    return entries.map(([id, o]) => {
      if (!/^\d{1,2}$/.test(id) || !isObj(o)) fail(`${where} "${id.slice(0, 20)}" is not a numbered object`);
      return [id, o as Obj];
    });
  };
  const hash = (v: unknown, where: string) => {
    if (typeof v !== "string" || !LUKS2_HASHES.includes(v))
      fail(`${where} uses hash ${str(v)}; ${REPLACED} ${LUKS2_HASHES.join("/")}`);
  };
  const b64 = (v: unknown, where: string) => {
    if (typeof v !== "string" || v.length === 0 || v.length > B64_MAX_CHARS || !/^[A-Za-z0-9+/=]+$/.test(v))
      fail(`${where} is not a base64 value of at most ${B64_MAX_CHARS} characters`);
  };
  const iterations = (v: unknown, where: string) => {
    if (
      !Number.isSafeInteger(v) ||
      (v as number) < PBKDF2_MIN_ITERATIONS ||
      (v as number) > PBKDF2_MAX_ITERATIONS
    )
      fail(`${where} has ${str(v)} PBKDF2 iterations (${PBKDF2_MIN_ITERATIONS} to ${PBKDF2_MAX_ITERATIONS})`);
  };

  if (!isObj(json)) return fail("metadata is not a JSON object");
  only(json, "metadata", ["keyslots", "tokens", "segments", "digests", "config"]);

  // config: the layout (json area inside hdr_size, keyslots area before the data), no flags.
  const config = json.config;
  if (!isObj(config)) return fail(`"config" is missing`);
  only(config, "config", ["json_size", "keyslots_size", "flags", "requirements"]);
  if (u64(config.json_size) !== hdrSize - BINARY_HEADER_BYTES)
    fail(`config json_size ${str(config.json_size)} does not match hdr_size ${hdrSize}`);
  const keyslotsSize = u64(config.keyslots_size);
  if (keyslotsSize === undefined || keyslotsSize % 4096 !== 0 || keyslotsSize > KEYSLOTS_AREA_MAX_BYTES)
    return fail(
      `config keyslots_size ${str(config.keyslots_size)} is not a multiple of 4096 up to ${KEYSLOTS_AREA_MAX_BYTES}`,
    );
  const areaStart = 2 * hdrSize;
  const areaEnd = areaStart + keyslotsSize;
  // Persistent flags (allow-discards, no-journal, ...) and requirements (online reencryption):
  // cryptpilot sets none, and each one changes how the volume is mapped.
  for (const k of ["flags", "requirements"] as const) {
    const v = config[k];
    if (v === undefined) continue;
    const empty = Array.isArray(v) ? v.length === 0 : isObj(v) && Object.keys(v).length === 0;
    if (!empty) fail(`config ${k} is ${str(v)}; ${REPLACED} none`);
  }

  // segments: exactly one crypt segment with cryptpilot's cipher, sector size and integrity.
  const segments = map(json.segments, "segments", 1);
  if (segments.length !== 1) fail(`header has ${segments.length} segments; ${REPLACED} exactly one`);
  const [segId, seg] = segments[0]!;
  const sw = `segment ${segId}`;
  only(seg, sw, ["type", "offset", "size", "iv_tweak", "encryption", "sector_size", "integrity", "flags"]);
  if (seg.type !== "crypt") fail(`${sw} has type ${str(seg.type)}; ${REPLACED} "crypt"`);
  if (seg.encryption !== LUKS2_CIPHER)
    fail(`${sw} uses cipher ${str(seg.encryption)}; ${REPLACED} ${LUKS2_CIPHER}`);
  if (seg.sector_size !== LUKS2_SECTOR_SIZE)
    fail(`${sw} has sector size ${str(seg.sector_size)}; ${REPLACED} ${LUKS2_SECTOR_SIZE}`);
  if (seg.iv_tweak !== "0") fail(`${sw} has iv_tweak ${str(seg.iv_tweak)}; ${REPLACED} "0"`);
  if (seg.size !== "dynamic") fail(`${sw} has size ${str(seg.size)}; ${REPLACED} "dynamic"`);
  if (seg.flags !== undefined && !(Array.isArray(seg.flags) && seg.flags.length === 0))
    fail(`${sw} has flags ${str(seg.flags)} (reencryption or backup segment); ${REPLACED} none`);
  const dataOffset = u64(seg.offset);
  if (
    dataOffset === undefined ||
    dataOffset < areaEnd ||
    dataOffset % LUKS2_SECTOR_SIZE !== 0 ||
    dataOffset >= deviceBytes
  )
    fail(
      `${sw} offset ${str(seg.offset)} is not after the keyslots area (${areaEnd}) and inside the ${deviceBytes}-byte device`,
    );
  if (profile.integrity) {
    const integ = seg.integrity;
    if (!isObj(integ))
      return fail(`${sw} has no integrity, but the configuration asks for ${LUKS2_INTEGRITY}`);
    only(integ, `${sw} integrity`, ["type", "journal_encryption", "journal_integrity", "key_size"]);
    if (integ.type !== LUKS2_INTEGRITY)
      fail(`${sw} uses integrity ${str(integ.type)}; ${REPLACED} ${LUKS2_INTEGRITY}`);
    if (integ.journal_encryption !== "none" || integ.journal_integrity !== "none")
      fail(`${sw} integrity has a journal cipher or hash; ${REPLACED} "none"`);
    if (integ.key_size !== undefined && integ.key_size !== 32)
      fail(`${sw} integrity key_size ${str(integ.key_size)}; ${REPLACED} 32`);
  } else if (seg.integrity !== undefined) {
    fail(`${sw} has integrity ${str(seg.integrity)}, but the configuration has integrity off`);
  }
  const volumeKeyBytes = profile.integrity ? VOLUME_KEY_BYTES.integrity : VOLUME_KEY_BYTES.plain;

  // keyslots: luks2 type, a real cipher on the area, AF luks1/4000, bounded KDFs, areas in place.
  const keyslots = map(json.keyslots, "keyslots", LUKS2_MAX_KEYSLOTS);
  if (keyslots.length === 0) fail("header has no keyslot");
  const areas: { offset: number; size: number }[] = [];
  for (const [id, ks] of keyslots) {
    const w = `keyslot ${id}`;
    only(ks, w, ["type", "key_size", "af", "area", "kdf", "priority"]);
    if (ks.type !== "luks2") fail(`${w} has type ${str(ks.type)}; ${REPLACED} "luks2"`);
    if (ks.key_size !== volumeKeyBytes)
      fail(
        `${w} holds a ${str(ks.key_size)}-byte volume key; ${REPLACED} ${volumeKeyBytes} bytes${profile.integrity ? " (with integrity)" : ""}`,
      );
    if (ks.priority !== undefined && ![0, 1, 2].includes(ks.priority as number))
      fail(`${w} has priority ${str(ks.priority)}`);
    const area = ks.area;
    if (!isObj(area)) return fail(`${w} has no area`);
    only(area, `${w} area`, ["type", "offset", "size", "encryption", "key_size"]);
    if (area.type !== "raw") fail(`${w} area has type ${str(area.type)}; ${REPLACED} "raw"`);
    if (area.encryption !== LUKS2_CIPHER)
      fail(`${w} uses cipher ${str(area.encryption)}; ${REPLACED} ${LUKS2_CIPHER}`);
    if (!KEYSLOT_AREA_KEY_BYTES.includes(area.key_size as number))
      fail(`${w} area key_size ${str(area.key_size)}; ${REPLACED} ${KEYSLOT_AREA_KEY_BYTES.join(" or ")}`);
    const off = u64(area.offset);
    const size = u64(area.size);
    const afBytes = volumeKeyBytes * AF_STRIPES;
    if (
      off === undefined ||
      size === undefined ||
      off % 4096 !== 0 ||
      size < afBytes ||
      size > KEYSLOT_AREA_MAX_BYTES ||
      off < areaStart ||
      off + size > areaEnd
    )
      return fail(
        `${w} area [${str(area.offset)}, +${str(area.size)}) is not inside the keyslots area [${areaStart}, ${areaEnd}) or does not fit ${afBytes} bytes`,
      );
    for (const other of areas)
      if (off < other.offset + other.size && other.offset < off + size)
        fail(`${w} area overlaps another keyslot's area`);
    areas.push({ offset: off, size });
    const af = ks.af;
    if (!isObj(af)) return fail(`${w} has no af`);
    only(af, `${w} af`, ["type", "stripes", "hash"]);
    if (af.type !== "luks1" || af.stripes !== AF_STRIPES)
      fail(`${w} af is ${str(af)}; ${REPLACED} luks1 with ${AF_STRIPES} stripes`);
    hash(af.hash, `${w} af`);
    const kdf = ks.kdf;
    if (!isObj(kdf)) return fail(`${w} has no kdf`);
    if (kdf.type === "pbkdf2") {
      only(kdf, `${w} kdf`, ["type", "hash", "iterations", "salt"]);
      hash(kdf.hash, `${w} kdf`);
      iterations(kdf.iterations, `${w} kdf`);
    } else if (kdf.type === "argon2i" || kdf.type === "argon2id") {
      only(kdf, `${w} kdf`, ["type", "time", "memory", "cpus", "salt"]);
      const within = (v: unknown, lo: number, hi: number) =>
        Number.isSafeInteger(v) && (v as number) >= lo && (v as number) <= hi;
      if (!within(kdf.time, ARGON2_MIN_TIME, ARGON2_MAX_WORK / ARGON2_MIN_MEMORY_KIB))
        fail(`${w} kdf time ${str(kdf.time)} (at least ${ARGON2_MIN_TIME})`);
      if (!within(kdf.memory, ARGON2_MIN_MEMORY_KIB, ARGON2_MAX_MEMORY_KIB))
        fail(`${w} kdf memory ${str(kdf.memory)} KiB (${ARGON2_MIN_MEMORY_KIB} to ${ARGON2_MAX_MEMORY_KIB})`);
      if ((kdf.time as number) * (kdf.memory as number) > ARGON2_MAX_WORK)
        fail(
          `${w} kdf costs ${str(kdf.time)} passes over ${str(kdf.memory)} KiB (time x memory at most ${ARGON2_MAX_WORK})`,
        );
      if (!within(kdf.cpus, 1, ARGON2_MAX_CPUS))
        fail(`${w} kdf cpus ${str(kdf.cpus)} (1 to ${ARGON2_MAX_CPUS})`);
    } else {
      fail(`${w} uses KDF ${str(kdf.type)}; ${REPLACED} pbkdf2, argon2i or argon2id`);
    }
    b64(kdf.salt, `${w} kdf salt`);
  }

  // digests: one pbkdf2 digest binding the keyslots to the one segment.
  const digests = map(json.digests, "digests", 1);
  if (digests.length !== 1) fail(`header has ${digests.length} digests; ${REPLACED} exactly one`);
  const [dId, dg] = digests[0]!;
  const dw = `digest ${dId}`;
  only(dg, dw, ["type", "keyslots", "segments", "hash", "iterations", "salt", "digest"]);
  if (dg.type !== "pbkdf2") fail(`${dw} has type ${str(dg.type)}; ${REPLACED} "pbkdf2"`);
  hash(dg.hash, dw);
  iterations(dg.iterations, dw);
  b64(dg.salt, `${dw} salt`);
  b64(dg.digest, `${dw} value`);
  const ids = new Set(keyslots.map(([id]) => id));
  if (!Array.isArray(dg.segments) || dg.segments.length !== 1 || dg.segments[0] !== segId)
    fail(`${dw} is for segments ${str(dg.segments)}; ${REPLACED} ["${segId}"]`);
  if (
    !Array.isArray(dg.keyslots) ||
    dg.keyslots.length !== ids.size ||
    !dg.keyslots.every((k) => ids.has(k as string))
  )
    fail(`${dw} is for keyslots ${str(dg.keyslots)}, not every keyslot once`);

  // tokens: bounded, with a type; their content is checked by whoever reads them (tpm/token.ts).
  for (const [id, token] of map(json.tokens ?? {}, "tokens", LUKS2_MAX_TOKENS)) {
    const bytes = JSON.stringify(token).length;
    if (bytes > LUKS2_TOKEN_MAX_BYTES)
      fail(`token ${id} is ${bytes} bytes of JSON (at most ${LUKS2_TOKEN_MAX_BYTES})`);
    if (
      typeof token.type !== "string" ||
      token.type.length === 0 ||
      token.type.length > LUKS2_TOKEN_TYPE_MAX_CHARS
    )
      fail(`token ${id} has no type of at most ${LUKS2_TOKEN_TYPE_MAX_CHARS} characters`);
    if (!Array.isArray(token.keyslots) || !token.keyslots.every((k) => ids.has(k as string)))
      fail(`token ${id} names keyslots ${str(token.keyslots)} that the header does not have`);
  }
  return { keyslotsSize, areas };
}

/** The size in bytes of DEVICE: a file's length, or a block device's size from sysfs. */
async function deviceBytes(device: string): Promise<number> {
  const st = await stat(device);
  return st.isBlockDevice() ? (await sizeSectors(device)) * 512 : st.size;
}

/** Read DEVICE's header (both copies verified, see luks.readHeader) and check it. */
export async function readCheckedHeader(device: string, profile: HeaderProfile): Promise<CheckedHeader> {
  const copy = await readHeader(device);
  const bytes = await deviceBytes(device);
  const checked = checkLuks2Metadata(copy.json, { device, profile, hdrSize: copy.size, deviceBytes: bytes });
  return { copy, ...checked };
}

/**
 * Write the checked header as a private LUKS2 header file in DIR (mode 0600, unique name): the
 * checked copy as both primary and secondary (so cryptsetup has no other copy to prefer), then
 * the keyslot areas, each read once from DEVICE. The rest stays a hole (tmpfs allocates nothing).
 * The keyslot bytes need no check: without the key they decrypt to nothing the host can choose.
 */
export async function writeHeaderCopy(
  device: string,
  checked: CheckedHeader,
  dir = HEADER_COPY_DIR,
): Promise<string> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, `luks2-header-${randomUUID()}`);
  const { copy } = checked;
  const out = await openFile(file, "wx", 0o600);
  try {
    const src = await openFile(device, "r");
    try {
      await out.write(relabelHeaderCopy(copy, 0), 0, copy.size, 0);
      await out.write(relabelHeaderCopy(copy, "secondary"), 0, copy.size, copy.size);
      for (const area of checked.areas) {
        const buf = new Uint8Array(area.size);
        const { bytesRead } = await src.read(buf, 0, area.size, area.offset);
        if (bytesRead !== area.size)
          throw new FdeError(`${device}: a LUKS2 keyslot area ends beyond the device`, { hint: HINT });
        await out.write(buf, 0, area.size, area.offset);
        buf.fill(0);
      }
    } finally {
      await src.close();
    }
    // cryptsetup wants the whole metadata + keyslots area in a header file.
    await out.truncate(2 * copy.size + checked.keyslotsSize);
  } catch (err) {
    await out.close();
    await rm(file, { force: true });
    throw err;
  }
  await out.close();
  return file;
}

export interface OpenCheckedOptions {
  profile: HeaderProfile;
  keySlot?: number;
  /** Where the private header copy goes (tests); default HEADER_COPY_DIR. */
  dir?: string;
  /** A header the caller already read and checked (readCheckedHeader), so its error comes first. */
  checked?: CheckedHeader;
}

/**
 * Open DEVICE as /dev/mapper/NAME after checking its LUKS2 header: cryptsetup reads the checked
 * private copy (`--header`), the data from DEVICE. The copy is removed afterwards either way.
 */
export async function openChecked(
  device: string,
  name: string,
  key: Uint8Array,
  opts: OpenCheckedOptions,
): Promise<void> {
  const started = performance.now();
  const checked = opts.checked ?? (await readCheckedHeader(device, opts.profile));
  const file = await writeHeaderCopy(device, checked, opts.dir);
  log.debug(`${device}: LUKS2 header checked and copied in ${(performance.now() - started).toFixed(1)} ms`);
  try {
    await open(device, name, key, opts.keySlot, file);
  } finally {
    await rm(file, { force: true });
  }
}
