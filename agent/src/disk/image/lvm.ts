/**
 * LVM2 physical volume label and metadata text, enough to read a linear LV (such as the root
 * filesystem holding /boot) straight from the PV. Read-only; nothing is activated.
 */
import { FdeError } from "../../errors.ts";
import { escapeText } from "../../escape.ts";
import { ascii, type BlockSource, checkRange, u32, u64 } from "./source.ts";

const MDA_MAGIC = " LVM2 x[5A%r0N*>";
/** Largest metadata text read (LVM's default metadata area is 1 MiB; its text is far smaller). */
export const LVM_MAX_METADATA_BYTES = 4 << 20;
/** Deepest nesting of `name { ... }` sections parsed (real metadata nests 5 deep). */
export const LVM_MAX_NESTING = 16;

export interface LogicalVolume {
  vg: string;
  name: string;
  /** The LV's bytes, mapped through its segments onto the PV. */
  source: BlockSource;
}

/** Offset of the LVM label if `dev` is a PV (the label is in one of the first four sectors). */
function findLabel(dev: BlockSource): Uint8Array | undefined {
  if (dev.size < 4096) return undefined;
  const head = dev.read(0, 2048);
  for (let s = 0; s < 4; s++) {
    const sector = head.subarray(s * 512, s * 512 + 512);
    if (ascii(sector, 0, 8) === "LABELONE" && ascii(sector, 24, 32) === "LVM2 001") {
      // The pv_header follows the label header inside the same sector.
      const offset = u32(sector, 20);
      if (offset < 32 || offset > 512 - 40)
        throw new FdeError(`${dev.name}: LVM label's header offset ${offset} is outside its sector`);
      return head.subarray(s * 512 + offset, s * 512 + 512);
    }
  }
  return undefined;
}

export function isLvmPv(dev: BlockSource): boolean {
  return findLabel(dev) !== undefined;
}

type Value = string | number | Value[] | Section;
interface Section {
  [key: string]: Value;
}

/** Parse LVM's metadata text format (`key = value`, `name { ... }`, `[a, b]`, `# comments`). */
function parseLvmText(text: string): Section {
  const tokens = text.match(/"(?:[^"\\]|\\.)*"|[{}[\]=,]|[^\s{}[\]=,"#]+|#[^\n]*/g) ?? [];
  let i = 0;
  const next = () => {
    let t = tokens[i++];
    while (t?.startsWith("#")) t = tokens[i++];
    return t;
  };
  const scalar = (t: string): Value =>
    t.startsWith('"') ? t.slice(1, -1).replace(/\\(.)/g, "$1") : Number(t);
  const value = (): Value => {
    const t = next();
    if (t === undefined) throw new Error("unexpected end of metadata");
    if (t !== "[") return scalar(t);
    const list: Value[] = [];
    for (let t2 = next(); t2 !== "]"; t2 = next()) {
      if (t2 === undefined) throw new Error("unterminated list");
      if (t2 !== ",") list.push(scalar(t2));
    }
    return list;
  };
  const section = (closing: string | undefined, depth: number): Section => {
    if (depth > LVM_MAX_NESTING) throw new Error(`sections nested more than ${LVM_MAX_NESTING} deep`);
    // No prototype: a key named __proto__ in the metadata is just a key.
    const out: Section = Object.create(null);
    for (let t = next(); t !== closing; t = next()) {
      if (t === undefined) throw new Error("unterminated section");
      const op = next();
      if (op === "{") out[t] = section("}", depth + 1);
      else if (op === "=") out[t] = value();
      else throw new Error(`unexpected '${op}' after '${t}'`);
    }
    return out;
  };
  return section(undefined, 0);
}

/** The newest metadata text from the first metadata area of the PV. */
function readMetadataText(dev: BlockSource, label: Uint8Array): string {
  // pv_header: uuid[32], device size, then data-area and metadata-area lists, each ended by zeros.
  let o = 40;
  while (o + 32 <= label.length && u64(label, o) !== 0) o += 16;
  o += 16;
  if (o + 16 > label.length) throw new FdeError(`${dev.name}: LVM PV header lists no metadata area`);
  const mdaOffset = u64(label, o);
  const mdaSize = u64(label, o + 8);
  if (mdaOffset === 0) throw new FdeError(`${dev.name}: this LVM PV carries no metadata area`);
  if (mdaSize <= 512 || mdaOffset + mdaSize > dev.size) {
    throw new FdeError(
      `${dev.name}: LVM metadata area (${mdaSize} bytes at byte ${mdaOffset}) is too small or past the end of the PV`,
    );
  }
  const header = dev.read(mdaOffset, 512);
  if (ascii(header, 4, 20) !== MDA_MAGIC)
    throw new FdeError(`${dev.name}: LVM metadata area header is corrupt`);
  const locOffset = u64(header, 40);
  const locSize = u64(header, 48);
  if (locSize === 0) throw new FdeError(`${dev.name}: LVM metadata area is empty`);
  if (
    locOffset < 512 ||
    locOffset >= mdaSize ||
    locSize > mdaSize - 512 ||
    locSize > LVM_MAX_METADATA_BYTES
  ) {
    throw new FdeError(
      `${dev.name}: LVM metadata location (${locSize} bytes at offset ${locOffset} of a ${mdaSize}-byte area) is outside the area or larger than ${LVM_MAX_METADATA_BYTES} bytes; the PV is corrupt or crafted.`,
    );
  }
  // The area is a ring buffer after its 512-byte header; the text may wrap around.
  const first = Math.min(locSize, mdaSize - locOffset);
  const bytes = new Uint8Array(locSize);
  bytes.set(dev.read(mdaOffset + locOffset, first));
  if (first < locSize) bytes.set(dev.read(mdaOffset + 512, locSize - first), first);
  return new TextDecoder().decode(bytes).replace(/\0+$/, "");
}

/** Every LV of the VG on this PV, as byte sources (linear, single-PV segments only). */
export function readLogicalVolumes(dev: BlockSource): LogicalVolume[] {
  const label = findLabel(dev);
  if (!label) throw new FdeError(`${dev.name} is not an LVM physical volume`);
  let meta: Section;
  try {
    meta = parseLvmText(readMetadataText(dev, label));
  } catch (err) {
    if (err instanceof FdeError) throw err;
    throw new FdeError(`${dev.name}: cannot parse the LVM metadata text`, { cause: err });
  }
  const pvUuid = ascii(label, 0, 32);
  const vgName = Object.keys(meta).find((k) => typeof meta[k] === "object" && !Array.isArray(meta[k]));
  if (!vgName) throw new FdeError(`${dev.name}: LVM metadata names no volume group`);
  const vg = meta[vgName] as Section;
  const extentBytes = Number(vg.extent_size) * 512;
  /** A non-negative integer field of the metadata, checked before it becomes an offset. */
  const count = (where: string, field: string, v: Value | undefined): number => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 0)
      throw new FdeError(
        `${dev.name}: LVM metadata ${where} field ${field} is not a valid count (${escapeText(String(v))})`,
      );
    return n;
  };
  if (count(`VG ${escapeText(vgName)}`, "extent_size", vg.extent_size) === 0)
    throw new FdeError(`${dev.name}: LVM metadata VG ${escapeText(vgName)} has extent_size 0`);
  const pvs = (vg.physical_volumes ?? {}) as Section;
  const pvKey = Object.keys(pvs).find((k) => String((pvs[k] as Section).id).replace(/-/g, "") === pvUuid);
  if (!pvKey) throw new FdeError(`${dev.name}: the VG ${escapeText(vgName)} metadata does not list this PV`);
  const peStart = count(`PV ${escapeText(pvKey)}`, "pe_start", (pvs[pvKey] as Section).pe_start) * 512;
  const lvs = (vg.logical_volumes ?? {}) as Section;
  return Object.entries(lvs).map(([name, v]) => {
    const lv = v as Section;
    const maps: LvSegmentMap[] = [];
    for (const [key, seg] of Object.entries(lv)) {
      if (!key.startsWith("segment") || typeof seg !== "object" || Array.isArray(seg)) continue;
      const stripes = seg.stripes as Value[] | undefined;
      const single = seg.type === "striped" && Number(seg.stripe_count) === 1 && stripes?.[0] === pvKey;
      if (!single) {
        throw new FdeError(
          `${dev.name}: LV ${escapeText(vgName)}/${escapeText(name)} is not a plain linear volume on this PV (type ${escapeText(String(seg.type))}); only linear LVs on a single PV can be read`,
        );
      }
      const where = `LV ${escapeText(vgName)}/${escapeText(name)} ${escapeText(key)}`;
      const map = {
        lvOffset: count(where, "start_extent", seg.start_extent) * extentBytes,
        pvOffset: peStart + count(where, "stripes", stripes[1]) * extentBytes,
        length: count(where, "extent_count", seg.extent_count) * extentBytes,
      };
      if (!Number.isSafeInteger(map.lvOffset + map.length) || map.pvOffset + map.length > dev.size) {
        throw new FdeError(
          `${dev.name}: LVM metadata ${where} maps past the end of the PV; the PV is corrupt or crafted.`,
        );
      }
      maps.push(map);
    }
    return {
      vg: vgName,
      name,
      source: new LvSource(`LV ${escapeText(vgName)}/${escapeText(name)} on ${dev.name}`, dev, maps),
    };
  });
}

interface LvSegmentMap {
  lvOffset: number;
  pvOffset: number;
  length: number;
}

class LvSource implements BlockSource {
  readonly size: number;
  constructor(
    readonly name: string,
    private dev: BlockSource,
    private maps: LvSegmentMap[],
  ) {
    this.size = maps.reduce((n, m) => Math.max(n, m.lvOffset + m.length), 0);
  }

  read(offset: number, length: number): Uint8Array {
    checkRange(this, offset, length);
    const out = new Uint8Array(length);
    for (const m of this.maps) {
      const from = Math.max(offset, m.lvOffset);
      const to = Math.min(offset + length, m.lvOffset + m.length);
      if (from < to) out.set(this.dev.read(m.pvOffset + (from - m.lvOffset), to - from), from - offset);
    }
    return out;
  }

  close(): void {}
}
