/**
 * AMD SEV-SNP evidence: the ATTESTATION_REPORT (VMPL 0, runtime-data digest zero-padded to 64
 * bytes as REPORT_DATA) and the GHCB certificate table, through configfs-tsm (Linux >= 6.7) or,
 * without it, /dev/sev-guest's ioctls (sev-guest.ts).
 *
 * The JSON is the serde form of virtee/sev's `AttestationReport`, which the trustee verifiers
 * deserialise and re-encode to check the signature, so every field must round-trip to the same
 * bytes. Two trustees use two incompatible versions of that struct:
 *  - confidential-containers/trustee: sev 7 (`key_info`, `cpuid_*`, `current`/`committed`
 *    {major,minor,build}, `*_mit_vector`, TcbVersion {fmc,bootloader,tee,snp,microcode} decoded
 *    per CPU generation, Signature {r,s}); re-encodes field by field.
 *  - openanolis/trustee: sev 4.0.0 (`_author_key_en`, `_reserved_0.._4`, `current_build` ...,
 *    TcbVersion {bootloader,tee,_reserved[4],snp,microcode} always in the Milan layout,
 *    Signature {r,s,_reserved[368]}); re-encodes with bincode, i.e. the struct in byte order.
 * Both derive `Deserialize` without `deny_unknown_fields`, so serde ignores the other version's
 * fields and one JSON carrying both field sets is accepted by both. The one conflict is Turin
 * (family 0x1A): its TCB_VERSION bytes are [fmc,bootloader,tee,snp,0,0,0,microcode], which sev 7
 * names per generation and sev 4 names in the Milan positions, under the same keys. For Turin
 * reports `format` picks whose names are used (SnpEvidenceFormat).
 */
import { FdeError } from "../errors.ts";
import { DEFAULT_SNP_EVIDENCE_FORMAT, type SnpEvidenceFormat } from "../providers/snp-format.ts";
import { attestInterface, probeInterfaces, TEE_DRIVERS } from "./platform.ts";
import { SEV_GUEST_DEVICE, type SevGuestOptions, snpReportFromDevice } from "./sev-guest.ts";
import { padReportData } from "./tdx.ts";
import { type TsmFs, tsmReport } from "./tsm.ts";
import type { Attester, HostPaths } from "./types.ts";

export const SNP_PROVIDER = TEE_DRIVERS.snp.tsmProvider;
export const SNP_REPORT_SIZE = 1184;

/** JSON.rawJSON (TC39 "JSON.parse source text"; in Bun) is missing from TypeScript's lib. */
const rawJSON = (JSON as unknown as { rawJSON(text: string): unknown }).rawJSON;

type Generation = "milan-genoa" | "turin";

/** virtee/sev `Generation::identify_cpu`; reports without CPUID fields (v2) use the Milan layout. */
function generation(family: number | null, model: number | null): Generation {
  if (family === 0x1a && model !== null && model <= 0x11) return "turin";
  return "milan-genoa";
}

/**
 * TcbVersion in both serde forms. Milan layout: sev 7 and sev 4 agree on the names, sev 4 adds
 * `_reserved` (bytes 2-5). Turin layout: the names differ, `format` decides; the sev 7 form then
 * leaves `_reserved` out so openanolis/trustee fails at deserialising, not at the signature.
 */
function tcbVersion(b: Uint8Array, gen: Generation, format: SnpEvidenceFormat) {
  const milan = {
    bootloader: b[0],
    tee: b[1],
    _reserved: Array.from(b.subarray(2, 6)),
    snp: b[6],
    microcode: b[7],
  };
  if (gen !== "turin") return { fmc: null, ...milan };
  if (format === "openanolis") return milan;
  return { fmc: b[0], bootloader: b[1], tee: b[2], snp: b[3], microcode: b[7] };
}

/** The serde JSON of a 1184-byte report (u64 fields as exact integers via JSON.rawJSON). */
export function snpReportJson(
  report: Uint8Array,
  format: SnpEvidenceFormat = DEFAULT_SNP_EVIDENCE_FORMAT,
): Record<string, unknown> {
  if (report.length !== SNP_REPORT_SIZE) {
    throw new FdeError(`SEV-SNP report is ${report.length} bytes, expected ${SNP_REPORT_SIZE}`);
  }
  const view = new DataView(report.buffer, report.byteOffset, report.byteLength);
  const u32 = (o: number) => view.getUint32(o, true);
  const u64 = (o: number) => rawJSON(view.getBigUint64(o, true).toString());
  const bytes = (o: number, n: number) => Array.from(report.subarray(o, o + n));
  const version = u32(0);
  const hasCpuid = version >= 3;
  const family = hasCpuid ? report[0x188]! : null;
  const model = hasCpuid ? report[0x189]! : null;
  const gen = generation(family, model);
  const tcb = (o: number) => tcbVersion(report.subarray(o, o + 8), gen, format);
  const fw = (o: number) => ({ major: report[o + 2], minor: report[o + 1], build: report[o] });
  return {
    version,
    guest_svn: u32(0x04),
    policy: u64(0x08),
    family_id: bytes(0x10, 16),
    image_id: bytes(0x20, 16),
    vmpl: u32(0x30),
    sig_algo: u32(0x34),
    current_tcb: tcb(0x38),
    plat_info: u64(0x40),
    key_info: u32(0x48), // sev 7
    _author_key_en: u32(0x48), // sev 4: the same word
    _reserved_0: u32(0x4c), // sev 4
    report_data: bytes(0x50, 64),
    measurement: bytes(0x90, 48),
    host_data: bytes(0xc0, 32),
    id_key_digest: bytes(0xe0, 48),
    author_key_digest: bytes(0x110, 48),
    report_id: bytes(0x140, 32),
    report_id_ma: bytes(0x160, 32),
    reported_tcb: tcb(0x180),
    cpuid_fam_id: family, // sev 7 (cpuid_*)
    cpuid_mod_id: model,
    cpuid_step: hasCpuid ? report[0x18a] : null,
    _reserved_1: bytes(0x188, 24), // sev 4: CPUID bytes and reserved up to chip_id
    chip_id: bytes(0x1a0, 64),
    committed_tcb: tcb(0x1e0),
    current: fw(0x1e8), // sev 7
    committed: fw(0x1ec),
    current_build: report[0x1e8], // sev 4
    current_minor: report[0x1e9],
    current_major: report[0x1ea],
    _reserved_2: report[0x1eb],
    committed_build: report[0x1ec],
    committed_minor: report[0x1ed],
    committed_major: report[0x1ee],
    _reserved_3: report[0x1ef],
    launch_tcb: tcb(0x1f0),
    launch_mit_vector: version >= 5 ? u64(0x1f8) : null, // sev 7
    current_mit_vector: version >= 5 ? u64(0x200) : null,
    _reserved_4: bytes(0x1f8, 168), // sev 4: mitigation vectors and reserved up to the signature
    signature: { r: bytes(0x2a0, 72), s: bytes(0x2e8, 72), _reserved: bytes(0x330, 368) },
  };
}

const CERT_TYPES: Record<string, string> = {
  "63da758d-e664-4564-adc5-f4b93be8accd": "VCEK",
  "4ab7b379-bbac-4fe4-a02f-05aef327c782": "ASK",
  "c0b406a4-a803-4952-9743-3fb6014cd0ae": "ARK",
  "a8074bc2-a25a-483e-aae6-39c045a0b8a1": "VLEK",
  "92f81bc3-5811-4d3d-97ff-d19f88dc67ea": "CRL",
};

/**
 * Most entries a GHCB certificate table may have: real hosts list VCEK or VLEK, ASK, ARK and
 * maybe a CRL.
 */
export const SNP_CERT_ENTRIES_MAX = 16;

function uuid(b: Uint8Array): string {
  const h = Buffer.from(b).toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** GHCB certificate table (auxblob) → serde form of `Vec<CertTableEntry>`; null when empty. */
export function snpCertChainJson(table: Uint8Array): unknown[] | null {
  const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const entries: unknown[] = [];
  let total = 0;
  for (let at = 0; at + 24 <= table.length; at += 24) {
    const guid = table.subarray(at, at + 16);
    const offset = view.getUint32(at + 16, true);
    const length = view.getUint32(at + 20, true);
    if (guid.every((b) => b === 0) && offset === 0 && length === 0) break;
    if (offset + length > table.length) {
      throw new FdeError(`SEV-SNP certificate table entry ${uuid(guid)} points past the table end`);
    }
    // The host writes this table. Entries that overlap could make each JSON copy the whole
    // table again (2,700 entries x 64 KiB as JSON number arrays: gigabytes); real ones do not.
    total += length;
    if (entries.length >= SNP_CERT_ENTRIES_MAX || total > table.length) {
      throw new FdeError(
        `SEV-SNP certificate table has more than ${SNP_CERT_ENTRIES_MAX} entries or overlapping ones (${total} bytes of certificates in a ${table.length}-byte table)`,
      );
    }
    const id = uuid(guid);
    entries.push({
      cert_type: CERT_TYPES[id] ?? { OTHER: id },
      data: Array.from(table.subarray(offset, offset + length)),
    });
  }
  return entries.length > 0 ? entries : null;
}

/** The sev-guest device under a HostPaths prefix. */
export function sevGuestDevice(paths: HostPaths): string {
  return `${paths.sysRoot}${SEV_GUEST_DEVICE}`;
}

/**
 * Which kernel interface SNP evidence comes from: configfs-tsm when it offers the sev_guest
 * provider, else /dev/sev-guest when present, else undefined (platform.ts's attestInterface).
 */
export async function snpInterface(
  paths: HostPaths,
  fs?: TsmFs,
): Promise<"configfs-tsm" | "sev-guest" | undefined> {
  const via = attestInterface("snp", await probeInterfaces(paths, fs));
  return via === "device" ? "sev-guest" : via;
}

export interface SnpAttesterOptions {
  /** Serde form for Turin reports (the `snp_evidence_format` setting); default "coco". */
  format?: SnpEvidenceFormat;
  /** ioctl and sleep for /dev/sev-guest (tests); the device path comes from `paths`. */
  device?: Omit<SevGuestOptions, "device">;
}

export function createSnpAttester(paths: HostPaths, fs?: TsmFs, options: SnpAttesterOptions = {}): Attester {
  return {
    tee: "snp",
    async evidence(digest: Uint8Array) {
      const reportData = padReportData(digest);
      const via = await snpInterface(paths, fs);
      let report: Uint8Array;
      let certs: Uint8Array | undefined;
      if (via === "sev-guest") {
        ({ report, certs } = await snpReportFromDevice(reportData, {
          ...options.device,
          device: sevGuestDevice(paths),
        }));
      } else if (via === undefined) {
        throw new FdeError(
          `SEV-SNP: no attestation interface: no configfs-tsm provider ${SNP_PROVIDER} under ${paths.tsmRoot} and no ${sevGuestDevice(paths)}`,
          {
            hint: "load the sev_guest module (it provides both; configfs-tsm needs Linux >= 6.7 and configfs mounted)",
          },
        );
      } else {
        const r = await tsmReport({
          root: paths.tsmRoot,
          fs,
          provider: SNP_PROVIDER,
          inblob: reportData,
          privlevel: 0,
          auxblob: true,
        });
        report = r.outblob;
        certs = r.auxblob;
      }
      const attestation_report = snpReportJson(report, options.format);
      if (!Buffer.from(report.subarray(0x50, 0x90)).equals(reportData)) {
        throw new FdeError(
          `SEV-SNP report from ${via ?? "configfs-tsm"} does not carry the requested REPORT_DATA`,
        );
      }
      return {
        attestation_report,
        cert_chain: certs && certs.length > 0 ? snpCertChainJson(certs) : null,
      };
    },
  };
}
