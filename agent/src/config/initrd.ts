/**
 * Reading /etc/cryptpilot/*.toml out of an initrd image: concatenated cpio "newc" archives (dracut
 * puts an uncompressed early-microcode archive first), the last usually compressed.
 * This is what upstream gets with `lsinitrd --unpack`, without root or external tools.
 */
import { ConfigError } from "../errors.ts";

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
function lz4Legacy(src: Uint8Array, what: string): Uint8Array {
  const BLOCK = 8 << 20;
  const chunks: Uint8Array[] = [];
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  let ip = 4;
  while (ip + 4 <= src.length) {
    const size = view.getUint32(ip, true);
    if (size === 0x184c2102) {
      ip += 4; // a concatenated legacy stream
      continue;
    }
    if (size === 0) break;
    ip += 4;
    const end = ip + size;
    if (end > src.length) throw new ConfigError(`${what}: truncated lz4 block`);
    const out = new Uint8Array(BLOCK);
    let op = 0;
    while (ip < end) {
      const token = src[ip++]!;
      let literals = token >> 4;
      if (literals === 15) {
        let b = 255;
        while (b === 255) literals += b = src[ip++]!;
      }
      out.set(src.subarray(ip, ip + literals), op);
      ip += literals;
      op += literals;
      if (ip >= end) break; // the last sequence has literals only
      const offset = src[ip]! | (src[ip + 1]! << 8);
      ip += 2;
      let match = token & 15;
      if (match === 15) {
        let b = 255;
        while (b === 255) match += b = src[ip++]!;
      }
      match += 4;
      if (offset === 0 || offset > op || op + match > BLOCK)
        throw new ConfigError(`${what}: damaged lz4 block`);
      // Overlapping copies repeat the last bytes, so copy forward byte by byte when they overlap.
      if (offset >= match) out.copyWithin(op, op - offset, op - offset + match);
      else for (let i = 0; i < match; i++) out[op + i] = out[op - offset + i]!;
      op += match;
    }
    chunks.push(out.subarray(0, op));
  }
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const joined = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    joined.set(c, at);
    at += c.length;
  }
  return joined;
}

async function decompress(data: Uint8Array, what: string): Promise<Uint8Array> {
  if (startsWith(data, 0, [0x1f, 0x8b])) return Bun.gunzipSync(data as Uint8Array<ArrayBuffer>);
  if (startsWith(data, 0, [0x28, 0xb5, 0x2f, 0xfd])) {
    const { zstdDecompressSync } = await import("node:zlib");
    return zstdDecompressSync(data);
  }
  if (startsWith(data, 0, [0x02, 0x21, 0x4c, 0x18])) return lz4Legacy(data, what);
  const known = FORMATS.find(([, magic]) => startsWith(data, 0, magic));
  throw new ConfigError(
    known
      ? `${what}: the initrd is ${known[0]}-compressed; this build reads uncompressed, gzip, zstd and lz4 -l initrds`
      : `${what} is not an initrd (no cpio archive or known compression at the start)`,
    { hint: known ? "rebuild the initrd with dracut --zstd (or --gzip)" : undefined },
  );
}

/** Walk one cpio newc archive at `offset`; returns the offset after its trailer. */
function readCpio(b: Uint8Array, offset: number, found: InitrdConfigFiles, what: string): number {
  const text = new TextDecoder();
  let at = offset;
  for (;;) {
    if (at + HEADER > b.length || !CPIO_MAGIC.includes(text.decode(b.subarray(at, at + 6)))) {
      throw new ConfigError(`${what}: damaged cpio archive at byte ${at}`);
    }
    const field = (i: number) =>
      Number.parseInt(text.decode(b.subarray(at + 6 + i * 8, at + 14 + i * 8)), 16);
    const mode = field(1);
    const size = field(6);
    const nameSize = field(11);
    const name = text.decode(b.subarray(at + HEADER, at + HEADER + nameSize - 1));
    const dataAt = align4(at + HEADER + nameSize);
    if (name === "TRAILER!!!") return align4(dataAt + size);
    const path = name.replace(/^\.?\/+/, "");
    const base = path.slice("etc/cryptpilot/".length);
    // Regular files only (S_IFREG): a symlink's data is its target, not the file.
    if (path.startsWith("etc/cryptpilot/") && (mode & 0o170000) === 0o100000) {
      if ((INITRD_CONFIG_FILES as readonly string[]).includes(base)) {
        found[base as keyof InitrdConfigFiles] = text.decode(b.subarray(dataAt, dataAt + size));
      }
    }
    at = align4(dataAt + size);
  }
}

/** The cryptpilot configuration files inside an initrd image (`what` names it in errors). */
export async function readInitrdConfig(image: Uint8Array, what: string): Promise<InitrdConfigFiles> {
  const found: InitrdConfigFiles = {};
  let data = image;
  let at = 0;
  while (at < data.length) {
    if (data[at] === 0) {
      at++; // padding between concatenated archives
      continue;
    }
    if (CPIO_MAGIC.includes(new TextDecoder().decode(data.subarray(at, at + 6)))) {
      at = readCpio(data, at, found, what);
      continue;
    }
    // The compressed archive is the last part of the image.
    data = await decompress(data.subarray(at), what);
    at = 0;
  }
  return found;
}
