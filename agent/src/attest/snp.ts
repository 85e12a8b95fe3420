/**
 * AMD SEV-SNP evidence: the ATTESTATION_REPORT (VMPL 0, runtime-data digest zero-padded to 64
 * bytes as REPORT_DATA) and the GHCB certificate table, both through configfs-tsm. The JSON is
 * the serde form of the virtee/sev `AttestationReport` that trustee's SNP verifier deserializes
 * and re-encodes to check the signature, so every field must round-trip to the same bytes.
 */
import { existsSync } from "node:fs";
import { FdeError } from "../errors.ts";
import { padReportData } from "./tdx.ts";
import { type TsmFs, tsmReport } from "./tsm.ts";
import type { Attester, HostPaths } from "./types.ts";

export const SNP_PROVIDER = "sev_guest";
export const SNP_REPORT_SIZE = 1184;

/** JSON.rawJSON (TC39 "JSON.parse source text"; in Bun) is missing from TypeScript's lib. */
const rawJSON = (JSON as unknown as { rawJSON(text: string): unknown }).rawJSON;

type Generation = "milan-genoa" | "turin";

/** virtee/sev `Generation::identify_cpu`; reports without CPUID fields (v2) use the Milan layout. */
function generation(family: number | null, model: number | null): Generation {
  if (family === 0x1a && model !== null && model <= 0x11) return "turin";
  return "milan-genoa";
}

function tcbVersion(b: Uint8Array, gen: Generation) {
  return gen === "turin"
    ? { fmc: b[0], bootloader: b[1], tee: b[2], snp: b[3], microcode: b[7] }
    : { fmc: null, bootloader: b[0], tee: b[1], snp: b[6], microcode: b[7] };
}

/** The serde JSON of a 1184-byte report (u64 fields as exact integers via JSON.rawJSON). */
export function snpReportJson(report: Uint8Array): Record<string, unknown> {
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
  const tcb = (o: number) => tcbVersion(report.subarray(o, o + 8), gen);
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
    key_info: u32(0x48),
    report_data: bytes(0x50, 64),
    measurement: bytes(0x90, 48),
    host_data: bytes(0xc0, 32),
    id_key_digest: bytes(0xe0, 48),
    author_key_digest: bytes(0x110, 48),
    report_id: bytes(0x140, 32),
    report_id_ma: bytes(0x160, 32),
    reported_tcb: tcb(0x180),
    cpuid_fam_id: family,
    cpuid_mod_id: model,
    cpuid_step: hasCpuid ? report[0x18a] : null,
    chip_id: bytes(0x1a0, 64),
    committed_tcb: tcb(0x1e0),
    current: fw(0x1e8),
    committed: fw(0x1ec),
    launch_tcb: tcb(0x1f0),
    launch_mit_vector: version >= 5 ? u64(0x1f8) : null,
    current_mit_vector: version >= 5 ? u64(0x200) : null,
    signature: { r: bytes(0x2a0, 72), s: bytes(0x2e8, 72) },
  };
}

const CERT_TYPES: Record<string, string> = {
  "63da758d-e664-4564-adc5-f4b93be8accd": "VCEK",
  "4ab7b379-bbac-4fe4-a02f-05aef327c782": "ASK",
  "c0b406a4-a803-4952-9743-3fb6014cd0ae": "ARK",
  "a8074bc2-a25a-483e-aae6-39c045a0b8a1": "VLEK",
  "92f81bc3-5811-4d3d-97ff-d19f88dc67ea": "CRL",
};

function uuid(b: Uint8Array): string {
  const h = Buffer.from(b).toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** GHCB certificate table (auxblob) → serde form of `Vec<CertTableEntry>`; null when empty. */
export function snpCertChainJson(table: Uint8Array): unknown[] | null {
  const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const entries: unknown[] = [];
  for (let at = 0; at + 24 <= table.length; at += 24) {
    const guid = table.subarray(at, at + 16);
    const offset = view.getUint32(at + 16, true);
    const length = view.getUint32(at + 20, true);
    if (guid.every((b) => b === 0) && offset === 0 && length === 0) break;
    if (offset + length > table.length) {
      throw new FdeError(`SEV-SNP certificate table entry ${uuid(guid)} points past the table end`);
    }
    const id = uuid(guid);
    entries.push({
      cert_type: CERT_TYPES[id] ?? { OTHER: id },
      data: Array.from(table.subarray(offset, offset + length)),
    });
  }
  return entries.length > 0 ? entries : null;
}

export function detectSnp(paths: HostPaths): boolean {
  return existsSync(`${paths.sysRoot}/sys/devices/platform/sev-guest`);
}

export function createSnpAttester(paths: HostPaths, fs?: TsmFs): Attester {
  return {
    tee: "snp",
    async evidence(digest: Uint8Array) {
      const reportData = padReportData(digest);
      const { outblob, auxblob } = await tsmReport({
        root: paths.tsmRoot,
        fs,
        provider: SNP_PROVIDER,
        inblob: reportData,
        privlevel: 0,
        auxblob: true,
      });
      const attestation_report = snpReportJson(outblob);
      if (!Buffer.from(outblob.subarray(0x50, 0x90)).equals(reportData)) {
        throw new FdeError("SEV-SNP report from configfs-tsm does not carry the requested REPORT_DATA");
      }
      return {
        attestation_report,
        cert_chain: auxblob && auxblob.length > 0 ? snpCertChainJson(auxblob) : null,
      };
    },
  };
}
