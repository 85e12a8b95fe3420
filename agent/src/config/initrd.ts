/**
 * Reading /etc/cryptpilot/*.toml out of an initrd image: concatenated cpio "newc" archives (dracut
 * puts an uncompressed early-microcode archive first), the last usually compressed.
 * This is what upstream gets with `lsinitrd --unpack`, without root or external tools.
 *
 * The image is the host's: the archive is scanned as a stream (only the three config files are
 * kept) and decompressed in chunks up to INITRD_MAX_BYTES, so memory stays small and a
 * decompression bomb stops at the cap instead of filling RAM.
 */
import { createGunzip, createZstdDecompress } from "node:zlib";
import { ConfigError } from "../errors.ts";
import { escapeText } from "../escape.ts";
import { CONFIG_MAX_BYTES } from "./toml.ts";

/**
 * Most bytes unpacked from an initrd's compressed part: dracut initrds are 50-250 MiB unpacked.
 * Also the largest initrd file read.
 */
export const INITRD_MAX_BYTES = 512 << 20;
/** Longest cpio member name (PATH_MAX). */
export const CPIO_MAX_NAME = 4096;
/** Output chunk of the gzip and zstd decoders: the memory a stream holds at a time. */
const DECODE_CHUNK = 256 << 10;

export const INITRD_CONFIG_FILES = ["fde.toml", "global.toml", "metadata.toml"] as const;
export type InitrdConfigFiles = Partial<Record<(typeof INITRD_CONFIG_FILES)[number], string>>;

const CPIO_MAGIC = ["070701", "070702"];
const HEADER = 110;
/** Arithmetic, not `& ~3`: a member's 32-bit size plus its offset can pass 2^31. */
const align4 = (n: number) => n + ((4 - (n % 4)) % 4);

const startsWith = (b: Uint8Array, at: number, magic: number[]) => magic.every((m, i) => b[at + i] === m);
const GZIP = [0x1f, 0x8b];
const ZSTD = [0x28, 0xb5, 0x2f, 0xfd];
const LZ4_LEGACY = [0x02, 0x21, 0x4c, 0x18];
const FORMATS: [string, number[]][] = [
  ["xz", [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ["lz4 (frame format)", [0x04, 0x22, 0x4d, 0x18]],
  ["bzip2", [0x42, 0x5a, 0x68]],
  ["lzma", [0x5d, 0x00, 0x00]],
];

/** One hex header field of a cpio newc header: exactly 8 hex digits, else the archive is refused. */
function hexField(
  h: Uint8Array,
  index: number,
  label: string,
  damaged: (why: string) => ConfigError,
): number {
  let n = 0;
  for (let i = 0; i < 8; i++) {
    const c = h[6 + index * 8 + i]!;
    const d =
      c >= 0x30 && c <= 0x39
        ? c - 0x30
        : c >= 0x41 && c <= 0x46
          ? c - 0x37
          : c >= 0x61 && c <= 0x66
            ? c - 0x57
            : -1;
    if (d < 0) {
      const raw = new TextDecoder().decode(h.subarray(6 + index * 8, 14 + index * 8));
      throw damaged(`the header has a non-hex ${label} field ('${escapeText(raw)}')`);
    }
    n = n * 16 + d;
  }
  return n;
}

/**
 * A cpio newc scanner fed in chunks: it keeps one header and the wanted files, skips the rest,
 * and every member's declared sizes are checked before they are used. Offsets in messages count
 * from the start of the stream it is fed (the image, or the decompressed part).
 */
class CpioScanner {
  private state: "between" | "header" | "data" = "between";
  private header = new Uint8Array(align4(HEADER + CPIO_MAX_NAME));
  private have = 0;
  private need = HEADER;
  private memberAt = 0;
  private left = 0;
  private capture?: { name: keyof InitrdConfigFiles; data: Uint8Array; size: number; at: number };
  /** Stream offset of the next byte. */
  pos = 0;

  constructor(
    private found: InitrdConfigFiles,
    private what: string,
  ) {}

  private damaged(why: string): ConfigError {
    return new ConfigError(
      `${this.what}: damaged cpio archive at byte ${this.memberAt}: ${why}; the initrd is corrupt or crafted`,
    );
  }

  /** Consume `chunk`; returns the index of the first byte that starts no cpio member, or its length. */
  push(chunk: Uint8Array): number {
    let i = 0;
    while (i < chunk.length) {
      if (this.state === "between") {
        if (chunk[i] === 0) {
          i++; // padding between concatenated archives
          this.pos++;
          continue;
        }
        if (chunk[i] !== 0x30 /* '0' of "0707" */) return i;
        this.state = "header";
        this.memberAt = this.pos;
        this.have = 0;
        this.need = HEADER;
      }
      if (this.state === "header") {
        const n = Math.min(this.need - this.have, chunk.length - i);
        this.header.set(chunk.subarray(i, i + n), this.have);
        this.have += n;
        i += n;
        this.pos += n;
        if (this.have < this.need) continue;
        if (this.need === HEADER) this.parseHeader();
        else this.startData();
        continue;
      }
      // data (and the padding after it)
      const n = Math.min(this.left, chunk.length - i);
      const c = this.capture;
      if (c && c.at < c.size) {
        const take = Math.min(n, c.size - c.at);
        c.data.set(chunk.subarray(i, i + take), c.at);
        c.at += take;
      }
      this.left -= n;
      i += n;
      this.pos += n;
      if (this.left === 0) this.finishMember();
    }
    return chunk.length;
  }

  private nameSize = 0;
  private size = 0;
  private mode = 0;

  private parseHeader(): void {
    const h = this.header;
    if (!CPIO_MAGIC.includes(new TextDecoder().decode(h.subarray(0, 6)))) throw this.damaged("no cpio magic");
    const damaged = (why: string) => this.damaged(why);
    this.mode = hexField(h, 1, "c_mode", damaged);
    this.size = hexField(h, 6, "c_filesize", damaged);
    this.nameSize = hexField(h, 11, "c_namesize", damaged);
    if (this.nameSize < 1 || this.nameSize > CPIO_MAX_NAME)
      throw this.damaged(`the member's c_namesize is ${this.nameSize} (1..${CPIO_MAX_NAME})`);
    // The name and its padding, aligned as the kernel aligns: from the start of the stream.
    this.need = align4(this.memberAt + HEADER + this.nameSize) - this.memberAt;
  }

  private startData(): void {
    const name = new TextDecoder().decode(this.header.subarray(HEADER, HEADER + this.nameSize - 1));
    const dataAt = this.memberAt + this.need;
    this.left = align4(dataAt + this.size) - dataAt;
    this.capture = undefined;
    const path = name.replace(/^\.?\/+/, "");
    const base = path.slice("etc/cryptpilot/".length);
    // Regular files only (S_IFREG): a symlink's data is its target, not the file.
    if (
      path.startsWith("etc/cryptpilot/") &&
      (this.mode & 0o170000) === 0o100000 &&
      (INITRD_CONFIG_FILES as readonly string[]).includes(base)
    ) {
      if (this.size > CONFIG_MAX_BYTES) {
        throw new ConfigError(
          `${this.what}: /${escapeText(path)} is ${this.size} bytes, larger than the ${CONFIG_MAX_BYTES}-byte limit for a configuration file`,
        );
      }
      const key = base as keyof InitrdConfigFiles;
      this.capture = { name: key, data: new Uint8Array(this.size), size: this.size, at: 0 };
    }
    this.state = "data";
    if (this.left === 0) this.finishMember();
  }

  private finishMember(): void {
    const c = this.capture;
    if (c) this.found[c.name] = new TextDecoder().decode(c.data);
    this.capture = undefined;
    this.state = "between";
  }

  /** The stream ended: a member cut short is an error. */
  end(): void {
    if (this.state !== "between") {
      throw this.damaged(
        this.state === "header"
          ? "the archive ends inside a member header"
          : "the archive ends inside a member's data",
      );
    }
  }
}

/**
 * LZ4 "legacy" frames (`lz4 -l`, what dracut and the kernel use): 8 MiB blocks with a size prefix.
 * Yields each block's output in one reused buffer (the consumer copies what it keeps).
 */
function* lz4Legacy(src: Uint8Array, what: string): Generator<Uint8Array> {
  const BLOCK = 8 << 20;
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const damaged = (at: number) =>
    new ConfigError(
      `${what}: damaged lz4 block (at compressed byte ${at}); the initrd is corrupt or crafted`,
    );
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
      // An overlapping copy repeats the last `offset` bytes: copy in doubling runs, each starting a
      // whole number of periods back, so a crafted 8 MiB run costs ~23 copies, not 8 M steps.
      for (let done = 0; done < match; ) {
        const n = Math.min(offset + done, match - done);
        out.copyWithin(op + done, op - offset, op - offset + n);
        done += n;
      }
      op += match;
    }
    yield out.subarray(0, op);
  }
}

/** The decompressed chunks of `data`, by its magic; unsupported formats are named. */
async function* decompress(data: Uint8Array, what: string): AsyncGenerator<Uint8Array> {
  if (startsWith(data, 0, LZ4_LEGACY)) {
    yield* lz4Legacy(data, what);
    return;
  }
  const format = startsWith(data, 0, GZIP) ? "gzip" : startsWith(data, 0, ZSTD) ? "zstd" : undefined;
  if (format === undefined) {
    const known = FORMATS.find(([, magic]) => startsWith(data, 0, magic));
    throw new ConfigError(
      known
        ? `${what}: the initrd is ${known[0]}-compressed; this build reads uncompressed, gzip, zstd and lz4 -l initrds`
        : `${what} is not an initrd (no cpio archive or known compression at the start)`,
      { hint: known ? "rebuild the initrd with dracut --zstd (or --gzip)" : undefined },
    );
  }
  const stream = (format === "gzip" ? createGunzip : createZstdDecompress)({ chunkSize: DECODE_CHUNK });
  stream.end(data);
  try {
    for await (const chunk of stream) yield chunk as Uint8Array;
  } catch (cause) {
    if (cause instanceof ConfigError) throw cause;
    throw new ConfigError(
      `${what}: the ${format}-compressed part of the initrd does not decompress: ${(cause as Error).message}`,
      { cause },
    );
  } finally {
    stream.destroy();
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
  const plain = new CpioScanner(found, what);
  const at = plain.push(image);
  plain.end();
  if (at === image.length) return found;
  // The compressed archive is the last part of the image.
  const inner = new CpioScanner(found, what);
  for await (const chunk of decompress(image.subarray(at), what)) {
    if (inner.pos + chunk.length > INITRD_MAX_BYTES) {
      throw new ConfigError(
        `${what}: the compressed part at byte ${at} unpacks to more than ${INITRD_MAX_BYTES} bytes; refusing it (a decompression bomb or a corrupt initrd)`,
      );
    }
    const stop = inner.push(chunk);
    if (stop < chunk.length) {
      throw new ConfigError(
        `${what}: unexpected data at byte ${inner.pos} of the decompressed archive (not cpio); the initrd is corrupt or crafted`,
      );
    }
  }
  inner.end();
  return found;
}

/**
 * How an initrd's main (last) archive is compressed, by its magic after the uncompressed early
 * archives: "lz4", "zstd", "gzip", another named format, "none" or "unknown" (for convert's log).
 */
export function initrdCompression(image: Uint8Array, what: string): string {
  const plain = new CpioScanner({}, what);
  const at = plain.push(image);
  plain.end();
  if (at === image.length) return "none";
  const rest = image.subarray(at);
  if (startsWith(rest, 0, LZ4_LEGACY)) return "lz4";
  if (startsWith(rest, 0, ZSTD)) return "zstd";
  if (startsWith(rest, 0, GZIP)) return "gzip";
  return FORMATS.find(([, magic]) => startsWith(rest, 0, magic))?.[0] ?? "unknown";
}
