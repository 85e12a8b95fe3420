/**
 * Reading /etc/cryptpilot/*.toml out of an initrd image: concatenated cpio "newc" archives (dracut
 * puts an uncompressed early-microcode archive first), the last usually compressed.
 * This is what upstream gets with `lsinitrd --unpack`, without root or external tools.
 */
import { gunzipSync, zstdDecompressSync } from "node:zlib";
import { ConfigError } from "../errors.ts";
import { escapeText } from "../escape.ts";
import { CONFIG_MAX_BYTES } from "./toml.ts";

/**
 * Largest initrd read, compressed or unpacked: dracut initrds are 50-250 MiB unpacked. A crafted
 * stream that would inflate past this stops with an error instead of eating memory.
 */
export const INITRD_MAX_BYTES = 512 << 20;
/** Longest cpio member name (PATH_MAX). */
export const CPIO_MAX_NAME = 4096;

export const INITRD_CONFIG_FILES = ["fde.toml", "global.toml", "metadata.toml"] as const;
export type InitrdConfigFiles = Partial<Record<(typeof INITRD_CONFIG_FILES)[number], string>>;

const CPIO_MAGIC = ["070701", "070702"];
const HEADER = 110;
const align4 = (n: number) => (n + 3) & ~3;

const startsWith = (b: Uint8Array, at: number, magic: number[]) => magic.every((m, i) => b[at + i] === m);
const FORMATS: [string, number[]][] = [
  ["xz", [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ["lz4 (frame format)", [0x04, 0x22, 0x4d, 0x18]],
  ["bzip2", [0x42, 0x5a, 0x68]],
  ["lzma", [0x5d, 0x00, 0x00]],
];

/** LZ4 "legacy" frames (`lz4 -l`, what dracut and the kernel use): 8 MiB blocks with a size prefix. */
function lz4Legacy(src: Uint8Array, what: string, maxBytes: number): Uint8Array {
  const BLOCK = 8 << 20;
  const chunks: Uint8Array[] = [];
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const damaged = (at: number) =>
    new ConfigError(
      `${what}: damaged lz4 block (at compressed byte ${at}); the initrd is corrupt or crafted`,
    );
  let total = 0;
  let ip = 4;
  const out = new Uint8Array(BLOCK);
  while (ip + 4 <= src.length) {
    const size = view.getUint32(ip, true);
    if (size === 0x184c2102) {
      ip += 4; // a concatenated legacy stream
      continue;
    }
    if (size === 0) break;
    ip += 4;
    const end = ip + size;
    if (end > src.length) throw new ConfigError(`${what}: truncated lz4 block at byte ${ip - 4}`);
    let op = 0;
    // Every index below is checked against `end` (input) and BLOCK (output) before it is used.
    const length = (n: number) => {
      let b = 255;
      while (b === 255) {
        if (ip >= end) throw damaged(ip);
        n += b = src[ip++]!;
      }
      return n;
    };
    while (ip < end) {
      const token = src[ip++]!;
      let literals = token >> 4;
      if (literals === 15) literals = length(literals);
      if (ip + literals > end || op + literals > BLOCK) throw damaged(ip);
      out.set(src.subarray(ip, ip + literals), op);
      ip += literals;
      op += literals;
      if (ip >= end) break; // the last sequence has literals only
      if (ip + 2 > end) throw damaged(ip);
      const offset = src[ip]! | (src[ip + 1]! << 8);
      ip += 2;
      let match = token & 15;
      if (match === 15) match = length(match);
      match += 4;
      if (offset === 0 || offset > op || op + match > BLOCK) throw damaged(ip);
      // Overlapping copies repeat the last bytes, so copy forward byte by byte when they overlap.
      if (offset >= match) out.copyWithin(op, op - offset, op - offset + match);
      else for (let i = 0; i < match; i++) out[op + i] = out[op - offset + i]!;
      op += match;
    }
    total += op;
    if (total > maxBytes)
      throw new ConfigError(`${what}: the lz4 stream unpacks to more than ${maxBytes} bytes; refusing it`);
    // A copy: a small block must not keep an 8 MiB buffer alive.
    chunks.push(out.slice(0, op));
  }
  const joined = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    joined.set(c, at);
    at += c.length;
  }
  return joined;
}

/** gzip and zstd through node:zlib with an output cap, so a bomb stops before it is allocated. */
function capped(
  format: string,
  what: string,
  maxBytes: number,
  fn: (o: { maxOutputLength: number }) => Uint8Array,
) {
  try {
    return fn({ maxOutputLength: maxBytes });
  } catch (cause) {
    const tooBig = (cause as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE";
    throw new ConfigError(
      tooBig
        ? `${what}: the ${format} stream unpacks to more than ${maxBytes} bytes; refusing it`
        : `${what}: the ${format}-compressed part of the initrd does not decompress: ${(cause as Error).message}`,
      { cause },
    );
  }
}

function decompress(data: Uint8Array, what: string, maxBytes: number): Uint8Array {
  if (startsWith(data, 0, [0x1f, 0x8b])) return capped("gzip", what, maxBytes, (o) => gunzipSync(data, o));
  if (startsWith(data, 0, [0x28, 0xb5, 0x2f, 0xfd]))
    return capped("zstd", what, maxBytes, (o) => zstdDecompressSync(data, o));
  if (startsWith(data, 0, [0x02, 0x21, 0x4c, 0x18])) return lz4Legacy(data, what, maxBytes);
  const known = FORMATS.find(([, magic]) => startsWith(data, 0, magic));
  throw new ConfigError(
    known
      ? `${what}: the initrd is ${known[0]}-compressed; this build reads uncompressed, gzip, zstd and lz4 -l initrds`
      : `${what} is not an initrd (no cpio archive or known compression at the start)`,
    { hint: known ? "rebuild the initrd with dracut --zstd (or --gzip)" : undefined },
  );
}

/** One hex header field of a cpio newc header: exactly 8 hex digits, else the archive is refused. */
function hexField(b: Uint8Array, at: number, index: number, label: string, what: string): number {
  let n = 0;
  for (let i = 0; i < 8; i++) {
    const c = b[at + 6 + index * 8 + i]!;
    const d =
      c >= 0x30 && c <= 0x39
        ? c - 0x30
        : c >= 0x41 && c <= 0x46
          ? c - 0x37
          : c >= 0x61 && c <= 0x66
            ? c - 0x57
            : -1;
    if (d < 0) {
      throw new ConfigError(
        `${what}: damaged cpio archive at byte ${at}: the header has a non-hex ${label} field ('${escapeText(new TextDecoder().decode(b.subarray(at + 6 + index * 8, at + 14 + index * 8)))}'); the initrd is corrupt or crafted`,
      );
    }
    n = n * 16 + d;
  }
  return n;
}

/** Walk one cpio newc archive at `offset`; returns the offset after its trailer. */
function readCpio(b: Uint8Array, offset: number, found: InitrdConfigFiles, what: string): number {
  const text = new TextDecoder();
  let at = offset;
  for (;;) {
    if (at + HEADER > b.length || !CPIO_MAGIC.includes(text.decode(b.subarray(at, at + 6)))) {
      throw new ConfigError(`${what}: damaged cpio archive at byte ${at}`);
    }
    const mode = hexField(b, at, 1, "c_mode", what);
    const size = hexField(b, at, 6, "c_filesize", what);
    const nameSize = hexField(b, at, 11, "c_namesize", what);
    const dataAt = align4(at + HEADER + nameSize);
    // Each member ends inside the archive, so every step moves forward by at least one header.
    if (nameSize < 1 || nameSize > CPIO_MAX_NAME || dataAt + size > b.length) {
      throw new ConfigError(
        `${what}: damaged cpio archive at byte ${at}: the member declares a ${nameSize}-byte name and ${size} bytes of data, past the end of the archive (${b.length} bytes) or over the ${CPIO_MAX_NAME}-byte name limit; the initrd is corrupt or crafted`,
      );
    }
    const name = text.decode(b.subarray(at + HEADER, at + HEADER + nameSize - 1));
    if (name === "TRAILER!!!") return align4(dataAt + size);
    const path = name.replace(/^\.?\/+/, "");
    const base = path.slice("etc/cryptpilot/".length);
    // Regular files only (S_IFREG): a symlink's data is its target, not the file.
    if (path.startsWith("etc/cryptpilot/") && (mode & 0o170000) === 0o100000) {
      if ((INITRD_CONFIG_FILES as readonly string[]).includes(base)) {
        if (size > CONFIG_MAX_BYTES) {
          throw new ConfigError(
            `${what}: /${escapeText(path)} is ${size} bytes, larger than the ${CONFIG_MAX_BYTES}-byte limit for a configuration file`,
          );
        }
        found[base as keyof InitrdConfigFiles] = text.decode(b.subarray(dataAt, dataAt + size));
      }
    }
    at = align4(dataAt + size);
  }
}

/**
 * The cryptpilot configuration files inside an initrd image (`what` names it in errors). As the
 * kernel does, only the last part may be compressed, once: its content is cpio, not another stream.
 */
export async function readInitrdConfig(image: Uint8Array, what: string): Promise<InitrdConfigFiles> {
  if (image.length > INITRD_MAX_BYTES)
    throw new ConfigError(
      `${what} is ${image.length} bytes, larger than the ${INITRD_MAX_BYTES}-byte initrd limit`,
    );
  const found: InitrdConfigFiles = {};
  let data = image;
  let at = 0;
  let decompressed = false;
  while (at < data.length) {
    if (data[at] === 0) {
      at++; // padding between concatenated archives
      continue;
    }
    if (CPIO_MAGIC.includes(new TextDecoder().decode(data.subarray(at, at + 6)))) {
      at = readCpio(data, at, found, what);
      continue;
    }
    if (decompressed) {
      throw new ConfigError(
        `${what}: unexpected data at byte ${at} of the decompressed archive (not cpio); the initrd is corrupt or crafted`,
      );
    }
    // The compressed archive is the last part of the image.
    data = decompress(data.subarray(at), what, INITRD_MAX_BYTES);
    decompressed = true;
    at = 0;
  }
  return found;
}
