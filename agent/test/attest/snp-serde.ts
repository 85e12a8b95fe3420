/**
 * The two virtee/sev serde forms of `AttestationReport` the trustees deserialise, reproduced
 * field by field from the sources (not copied into the project):
 *  - sev 4.0.0 (openanolis/trustee pins it): src/firmware/guest/types/snp.rs `AttestationReport`,
 *    src/firmware/host/types/snp.rs `TcbVersion`, src/certs/snp/ecdsa/mod.rs `Signature`. The
 *    verifier re-encodes with bincode 1, which for this #[repr(C)] struct of integers and fixed
 *    arrays is the struct's bytes in field order, so `bincodeSev4` is that verifier's re-encoding.
 *  - sev 7 (confidential-containers/trustee, rev d487809): same files; its `to_bytes` is
 *    generation-aware and `encodeSev7` mirrors it.
 * `serdeCheck` does what serde_json's derived Deserialize does with these structs: every non-Option
 * field must be present with the right type and array length; unknown fields are ignored (neither
 * struct has deny_unknown_fields).
 */

// biome-ignore lint/suspicious/noExplicitAny: evidence JSON is checked field by field
type J = Record<string, any>;
export type Ty = "u8" | "u32" | "u64" | "string" | { arr: number } | { opt: Ty } | { struct: Field[] };
export type Field = [string, Ty];

const arr = (n: number): Ty => ({ arr: n });
const opt = (t: Ty): Ty => ({ opt: t });

/** Fields sev 4 and sev 7 declare alike, at the same place: the report's first seven, */
const REPORT_HEAD: Field[] = [
  ["version", "u32"],
  ["guest_svn", "u32"],
  ["policy", "u64"],
  ["family_id", arr(16)],
  ["image_id", arr(16)],
  ["vmpl", "u32"],
  ["sig_algo", "u32"],
];
/** and report_data through report_id_ma (the TCB, platform and key fields between differ). */
const REPORT_DATA_TO_ID_MA: Field[] = [
  ["report_data", arr(64)],
  ["measurement", arr(48)],
  ["host_data", arr(32)],
  ["id_key_digest", arr(48)],
  ["author_key_digest", arr(48)],
  ["report_id", arr(32)],
  ["report_id_ma", arr(32)],
];

export const SEV4_TCB: Field[] = [
  ["bootloader", "u8"],
  ["tee", "u8"],
  ["_reserved", arr(4)],
  ["snp", "u8"],
  ["microcode", "u8"],
];
export const SEV4_SIGNATURE: Field[] = [
  ["r", arr(72)],
  ["s", arr(72)],
  ["_reserved", arr(368)],
];
export const SEV4_REPORT: Field[] = [
  ...REPORT_HEAD,
  ["current_tcb", { struct: SEV4_TCB }],
  ["plat_info", "u64"],
  ["_author_key_en", "u32"],
  ["_reserved_0", "u32"],
  ...REPORT_DATA_TO_ID_MA,
  ["reported_tcb", { struct: SEV4_TCB }],
  ["_reserved_1", arr(24)],
  ["chip_id", arr(64)],
  ["committed_tcb", { struct: SEV4_TCB }],
  ["current_build", "u8"],
  ["current_minor", "u8"],
  ["current_major", "u8"],
  ["_reserved_2", "u8"],
  ["committed_build", "u8"],
  ["committed_minor", "u8"],
  ["committed_major", "u8"],
  ["_reserved_3", "u8"],
  ["launch_tcb", { struct: SEV4_TCB }],
  ["_reserved_4", arr(168)],
  ["signature", { struct: SEV4_SIGNATURE }],
];

export const SEV7_TCB: Field[] = [
  ["fmc", opt("u8")],
  ["bootloader", "u8"],
  ["tee", "u8"],
  ["snp", "u8"],
  ["microcode", "u8"],
];
const SEV7_VERSION: Field[] = [
  ["major", "u8"],
  ["minor", "u8"],
  ["build", "u8"],
];
export const SEV7_REPORT: Field[] = [
  ...REPORT_HEAD,
  ["current_tcb", { struct: SEV7_TCB }],
  ["plat_info", "u64"],
  ["key_info", "u32"],
  ...REPORT_DATA_TO_ID_MA,
  ["reported_tcb", { struct: SEV7_TCB }],
  ["cpuid_fam_id", opt("u8")],
  ["cpuid_mod_id", opt("u8")],
  ["cpuid_step", opt("u8")],
  ["chip_id", arr(64)],
  ["committed_tcb", { struct: SEV7_TCB }],
  ["current", { struct: SEV7_VERSION }],
  ["committed", { struct: SEV7_VERSION }],
  ["launch_tcb", { struct: SEV7_TCB }],
  ["launch_mit_vector", opt("u64")],
  ["current_mit_vector", opt("u64")],
  [
    "signature",
    {
      struct: [
        ["r", arr(72)],
        ["s", arr(72)],
      ],
    },
  ],
];

/** `CertTableEntry` is the same in both: {cert_type: unit variant name | {OTHER: uuid}, data}. */
export const CERT_TYPE_VARIANTS = ["Empty", "ARK", "ASK", "VCEK", "VLEK", "CRL"];

const isUint = (x: unknown, max: bigint) => {
  if (typeof x !== "number" && typeof x !== "bigint") return false;
  try {
    const b = BigInt(x);
    return b >= 0n && b <= max;
  } catch {
    return false;
  }
};

/** serde_json + derived Deserialize: throws "missing field" / "invalid type" like serde would. */
export function serdeCheck(value: unknown, ty: Ty, at = "$"): void {
  if (ty === "string") {
    if (typeof value !== "string") throw new Error(`${at}: invalid type, expected a string`);
  } else if (ty === "u8" || ty === "u32" || ty === "u64") {
    const max = ty === "u8" ? 0xffn : ty === "u32" ? 0xffffffffn : 0xffffffffffffffffn;
    if (!isUint(value, max)) throw new Error(`${at}: invalid type, expected ${ty}`);
  } else if ("arr" in ty) {
    if (!Array.isArray(value) || value.length !== ty.arr)
      throw new Error(`${at}: expected an array of ${ty.arr}`);
    for (const [i, v] of value.entries()) serdeCheck(v, "u8", `${at}[${i}]`);
  } else if ("opt" in ty) {
    if (value !== null && value !== undefined) serdeCheck(value, ty.opt, at);
  } else {
    if (typeof value !== "object" || value === null || Array.isArray(value))
      throw new Error(`${at}: expected a struct`);
    for (const [name, fty] of ty.struct) {
      const v = (value as J)[name];
      if (v === undefined && !(typeof fty === "object" && "opt" in fty))
        throw new Error(`${at}: missing field \`${name}\``);
      serdeCheck(v, fty, `${at}.${name}`);
    }
  }
}

/** JSON numbers from JSON.parse may be imprecise beyond 2^53: take u64s from the raw text. */
export function parseExact(text: string): J {
  return JSON.parse(text, (_k, v, ctx?: { source?: string }) =>
    typeof v === "number" && !Number.isSafeInteger(v) && ctx?.source ? BigInt(ctx.source) : v,
  );
}

/** bincode 1 of a sev 4 struct: fixed-width little-endian integers and raw arrays in field order. */
export function bincodeSev4(json: J, fields: Field[] = SEV4_REPORT): Uint8Array {
  const out: number[] = [];
  const put = (v: unknown, ty: Ty) => {
    if (ty === "string") throw new Error("sev 4 report has no strings");
    else if (ty === "u8") out.push(Number(v));
    else if (ty === "u32" || ty === "u64") {
      let b = BigInt(v as number);
      for (let i = 0; i < (ty === "u32" ? 4 : 8); i++, b >>= 8n) out.push(Number(b & 0xffn));
    } else if ("arr" in ty) out.push(...(v as number[]));
    else if ("struct" in ty) for (const [n, t] of ty.struct) put((v as J)[n], t);
    else throw new Error("sev 4 report has no Option fields");
  };
  for (const [name, ty] of fields) put(json[name], ty);
  return new Uint8Array(out);
}

/** sev 7's `AttestationReport::to_bytes`: TCB per generation (fmc set = Turin layout). */
export function encodeSev7(j: J): Uint8Array {
  const out = new Uint8Array(1184);
  const v = new DataView(out.buffer);
  const put = (o: number, a: number[]) => out.set(a, o);
  const tcb = (o: number, t: J) => {
    if (t.fmc === null) out.set([t.bootloader, t.tee, 0, 0, 0, 0, t.snp, t.microcode], o);
    else out.set([t.fmc, t.bootloader, t.tee, t.snp, 0, 0, 0, t.microcode], o);
  };
  const big = (o: number, x: unknown) => v.setBigUint64(o, BigInt(x as number), true);
  v.setUint32(0, j.version, true);
  v.setUint32(4, j.guest_svn, true);
  big(0x08, j.policy);
  put(0x10, j.family_id);
  put(0x20, j.image_id);
  v.setUint32(0x30, j.vmpl, true);
  v.setUint32(0x34, j.sig_algo, true);
  tcb(0x38, j.current_tcb);
  big(0x40, j.plat_info);
  v.setUint32(0x48, j.key_info, true);
  put(0x50, j.report_data);
  put(0x90, j.measurement);
  put(0xc0, j.host_data);
  put(0xe0, j.id_key_digest);
  put(0x110, j.author_key_digest);
  put(0x140, j.report_id);
  put(0x160, j.report_id_ma);
  tcb(0x180, j.reported_tcb);
  if (j.cpuid_fam_id !== null) out.set([j.cpuid_fam_id, j.cpuid_mod_id, j.cpuid_step], 0x188);
  put(0x1a0, j.chip_id);
  tcb(0x1e0, j.committed_tcb);
  out.set([j.current.build, j.current.minor, j.current.major], 0x1e8);
  out.set([j.committed.build, j.committed.minor, j.committed.major], 0x1ec);
  tcb(0x1f0, j.launch_tcb);
  if (j.launch_mit_vector !== null) big(0x1f8, j.launch_mit_vector);
  if (j.current_mit_vector !== null) big(0x200, j.current_mit_vector);
  put(0x2a0, j.signature.r);
  put(0x2e8, j.signature.s);
  return out;
}

/**
 * TdxEvidence in deps/verifier/src/tdx/mod.rs: confidential-containers/trustee {cc_eventlog:
 * Option<String>, quote: String}; openanolis/trustee adds gpu_evidence: Option<...>.
 */
export const TDX_EVIDENCE_COCO: Field[] = [
  ["cc_eventlog", opt("string")],
  ["quote", "string"],
];
export const TDX_EVIDENCE_OPENANOLIS: Field[] = [
  ["quote", "string"],
  ["cc_eventlog", opt("string")],
  ["gpu_evidence", opt({ struct: [] })],
];
