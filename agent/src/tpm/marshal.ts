/**
 * TPM 2.0 wire format (TPM 2.0 Part 2: big-endian, sized buffers prefixed with a UINT16).
 *
 * We build and parse the canonical wire bytes in TypeScript and let libtss2-mu convert them to
 * and from ESAPI's C structs (see ffi.ts). The wire format is fixed by the TPM specification and
 * is also what we store (sealed blobs) and send (quotes), so no C struct layout is ever written
 * by hand here.
 */

export class TpmWriter {
  private bytes: number[] = [];

  u8(v: number): this {
    this.bytes.push(v & 0xff);
    return this;
  }

  u16(v: number): this {
    this.bytes.push((v >>> 8) & 0xff, v & 0xff);
    return this;
  }

  u32(v: number): this {
    this.bytes.push((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
    return this;
  }

  raw(b: Uint8Array): this {
    for (const x of b) this.bytes.push(x);
    return this;
  }

  /** A TPM2B: UINT16 size, then the bytes. */
  tpm2b(b: Uint8Array): this {
    return this.u16(b.length).raw(b);
  }

  /** A TPM2B wrapping a structure (TPM2B_PUBLIC, TPM2B_SENSITIVE_CREATE). */
  sized(inner: (w: TpmWriter) => void): this {
    const w = new TpmWriter();
    inner(w);
    return this.tpm2b(w.done());
  }

  done(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

export class TpmReader {
  private off = 0;
  constructor(
    private readonly buf: Uint8Array,
    private readonly what = "TPM structure",
  ) {}

  private need(n: number): void {
    if (this.off + n > this.buf.length) {
      throw new Error(
        `${this.what} is truncated (need ${n} bytes at offset ${this.off} of ${this.buf.length})`,
      );
    }
  }

  u8(): number {
    this.need(1);
    return this.buf[this.off++]!;
  }

  u16(): number {
    this.need(2);
    const v = (this.buf[this.off]! << 8) | this.buf[this.off + 1]!;
    this.off += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const v =
      ((this.buf[this.off]! << 24) |
        (this.buf[this.off + 1]! << 16) |
        (this.buf[this.off + 2]! << 8) |
        this.buf[this.off + 3]!) >>>
      0;
    this.off += 4;
    return v;
  }

  u64(): bigint {
    const hi = BigInt(this.u32());
    return (hi << 32n) | BigInt(this.u32());
  }

  raw(n: number): Uint8Array {
    this.need(n);
    const v = this.buf.slice(this.off, this.off + n);
    this.off += n;
    return v;
  }

  tpm2b(): Uint8Array {
    return this.raw(this.u16());
  }

  get offset(): number {
    return this.off;
  }

  get remaining(): number {
    return this.buf.length - this.off;
  }
}

// Algorithm identifiers (TPM 2.0 Part 2, table 9).
export const TPM2_ALG = {
  RSA: 0x0001,
  SHA1: 0x0004,
  HMAC: 0x0005,
  AES: 0x0006,
  KEYEDHASH: 0x0008,
  SHA256: 0x000b,
  SHA384: 0x000c,
  SHA512: 0x000d,
  NULL: 0x0010,
  RSASSA: 0x0014,
  ECC: 0x0023,
  CFB: 0x0043,
} as const;

export const TPM2_ECC_NIST_P256 = 0x0003;

export type PcrBank = "sha1" | "sha256" | "sha384" | "sha512";

export const BANK_ALG: Record<PcrBank, number> = {
  sha1: TPM2_ALG.SHA1,
  sha256: TPM2_ALG.SHA256,
  sha384: TPM2_ALG.SHA384,
  sha512: TPM2_ALG.SHA512,
};

export const BANK_DIGEST_SIZE: Record<PcrBank, number> = { sha1: 20, sha256: 32, sha384: 48, sha512: 64 };

export function bankOfAlg(alg: number): PcrBank | undefined {
  return (Object.keys(BANK_ALG) as PcrBank[]).find((b) => BANK_ALG[b] === alg);
}

/** One bank's PCR indices, as in a TPMS_PCR_SELECTION. */
export interface PcrSelection {
  bank: PcrBank;
  pcrs: number[];
}

/** TPML_PCR_SELECTION: count, then per bank hash alg + 3-byte bitmap (PCRs 0-23). */
export function writePcrSelection(w: TpmWriter, sel: PcrSelection[]): TpmWriter {
  w.u32(sel.length);
  for (const s of sel) {
    w.u16(BANK_ALG[s.bank]).u8(3);
    const map = [0, 0, 0];
    for (const p of s.pcrs) {
      if (!Number.isInteger(p) || p < 0 || p > 23) throw new Error(`PCR index ${p} is out of range 0-23`);
      map[p >> 3]! |= 1 << (p & 7);
    }
    for (const b of map) w.u8(b);
  }
  return w;
}

export function readPcrSelection(r: TpmReader): PcrSelection[] {
  const count = r.u32();
  const out: PcrSelection[] = [];
  for (let i = 0; i < count; i++) {
    const alg = r.u16();
    const size = r.u8();
    const map = r.raw(size);
    const pcrs: number[] = [];
    map.forEach((byte, j) => {
      for (let bit = 0; bit < 8; bit++) if (byte & (1 << bit)) pcrs.push(j * 8 + bit);
    });
    const bank = bankOfAlg(alg);
    if (bank) out.push({ bank, pcrs });
  }
  return out;
}

export function encodePcrSelection(sel: PcrSelection[]): Uint8Array {
  return writePcrSelection(new TpmWriter(), sel).done();
}

/** TPML_DIGEST: count, then TPM2B_DIGESTs. */
export function readDigestList(r: TpmReader): Uint8Array[] {
  const count = r.u32();
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) out.push(r.tpm2b());
  return out;
}

/** The fields of TPMS_ATTEST we use (TPM 2.0 Part 2, 10.12.12) for a quote. */
export interface QuoteAttest {
  magic: number;
  type: number;
  qualifiedSigner: Uint8Array;
  extraData: Uint8Array;
  clock: bigint;
  resetCount: number;
  restartCount: number;
  safe: boolean;
  firmwareVersion: bigint;
  pcrSelect: PcrSelection[];
  pcrDigest: Uint8Array;
}

export const TPM2_GENERATED_VALUE = 0xff544347;
export const TPM2_ST_ATTEST_QUOTE = 0x8018;

export function parseQuoteAttest(bytes: Uint8Array): QuoteAttest {
  const r = new TpmReader(bytes, "TPMS_ATTEST");
  const magic = r.u32();
  const type = r.u16();
  const qualifiedSigner = r.tpm2b();
  const extraData = r.tpm2b();
  const clock = r.u64();
  const resetCount = r.u32();
  const restartCount = r.u32();
  const safe = r.u8() === 1;
  const firmwareVersion = r.u64();
  if (magic !== TPM2_GENERATED_VALUE || type !== TPM2_ST_ATTEST_QUOTE) {
    throw new Error(
      `TPMS_ATTEST is not a TPM-generated quote (magic 0x${magic.toString(16)}, type 0x${type.toString(16)})`,
    );
  }
  const pcrSelect = readPcrSelection(r);
  const pcrDigest = r.tpm2b();
  return {
    magic,
    type,
    qualifiedSigner,
    extraData,
    clock,
    resetCount,
    restartCount,
    safe,
    firmwareVersion,
    pcrSelect,
    pcrDigest,
  };
}

/** TPMT_SIGNATURE for RSASSA: sigAlg, hash, TPM2B signature. Other schemes are not produced by our AK. */
export function parseRsaSignature(bytes: Uint8Array): { hashAlg: number; signature: Uint8Array } {
  const r = new TpmReader(bytes, "TPMT_SIGNATURE");
  const sigAlg = r.u16();
  if (sigAlg !== TPM2_ALG.RSASSA)
    throw new Error(`TPMT_SIGNATURE uses algorithm 0x${sigAlg.toString(16)}, expected RSASSA`);
  const hashAlg = r.u16();
  return { hashAlg, signature: r.tpm2b() };
}

export function encodeRsaSignature(hashAlg: number, signature: Uint8Array): Uint8Array {
  return new TpmWriter().u16(TPM2_ALG.RSASSA).u16(hashAlg).tpm2b(signature).done();
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}
