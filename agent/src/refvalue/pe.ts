/** PE/COFF headers: just what the Authenticode digest and UKI detection need. */

import { u16, u32 } from "../disk/image/source.ts";
import { FdeError } from "../errors.ts";

export interface PeSection {
  name: string;
  sizeOfRawData: number;
  pointerToRawData: number;
}

export interface PeImage {
  /** The COFF header's Machine (arch.ts peArch: 0x8664 x86-64, 0xaa64 arm64). */
  machine: number;
  /** File offset of the 4-byte CheckSum field. */
  checksumOffset: number;
  /** File offset of the certificate-table data-directory entry, if the image has one. */
  certDirOffset?: number;
  /** The certificate table (file offset and size); size 0 when unsigned. */
  certTable: { offset: number; size: number };
  sizeOfHeaders: number;
  sections: PeSection[];
}

/** Parse the headers of a PE32 or PE32+ image; `what` names the file in errors. */
export function parsePe(b: Uint8Array, what: string): PeImage {
  const bad = (why: string) => new FdeError(`${what} is not a valid PE/COFF (EFI) image: ${why}`);
  if (b.length < 0x40 || b[0] !== 0x4d || b[1] !== 0x5a) throw bad("no MZ header");
  const peOff = u32(b, 0x3c);
  if (peOff + 24 > b.length || u32(b, peOff) !== 0x00004550) throw bad("no PE signature");
  const numSections = u16(b, peOff + 6);
  const optSize = u16(b, peOff + 20);
  const opt = peOff + 24;
  if (opt + optSize > b.length || optSize < 96) throw bad("truncated optional header");
  const magic = u16(b, opt);
  if (magic !== 0x10b && magic !== 0x20b) throw bad(`unknown optional header magic 0x${magic.toString(16)}`);
  const plus = magic === 0x20b;
  const numRva = u32(b, opt + (plus ? 108 : 92));
  const dirs = opt + (plus ? 112 : 96);
  const hasCertDir = numRva > 4 && dirs + 40 <= opt + optSize;
  const certDirOffset = hasCertDir ? dirs + 32 : undefined;
  const certVa = certDirOffset === undefined ? 0 : u32(b, certDirOffset);
  // A zero VirtualAddress means "no certificate table", whatever the size says (authenticode-rs).
  const certTable = { offset: certVa, size: certVa === 0 ? 0 : u32(b, certDirOffset! + 4) };
  const sectionTable = opt + optSize;
  if (sectionTable + numSections * 40 > b.length) throw bad("truncated section table");
  const sections: PeSection[] = [];
  for (let i = 0; i < numSections; i++) {
    const s = sectionTable + i * 40;
    let name = "";
    for (let j = 0; j < 8 && b[s + j] !== 0; j++) name += String.fromCharCode(b[s + j]!);
    sections.push({ name, sizeOfRawData: u32(b, s + 16), pointerToRawData: u32(b, s + 20) });
  }
  return {
    machine: u16(b, peOff + 4),
    checksumOffset: opt + 64,
    certDirOffset,
    certTable,
    sizeOfHeaders: u32(b, opt + 60),
    sections,
  };
}

export function hasSection(b: Uint8Array, name: string): boolean {
  try {
    return parsePe(b, "").sections.some((s) => s.name === name);
  } catch {
    return false;
  }
}
