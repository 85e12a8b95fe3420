/**
 * SM3 (GB/T 32905-2016, also ISO/IEC 10118-3). node:crypto under Bun has no SM3, and the npm
 * packages that offer it pull in whole SM2/SM4 suites, so this small implementation follows the
 * standard directly; the tests check it against the standard's vectors and `openssl dgst -sm3`.
 */
const IV = [0x7380166f, 0x4914b2b9, 0x172442d7, 0xda8a0600, 0xa96f30bc, 0x163138aa, 0xe38dee4d, 0xb0fb0e4e];

/** Rotate left; n is 1..31 at every call site. */
const rotl = (x: number, n: number) => (x << n) | (x >>> (32 - n));
/** The round constants T_j rotated left by j mod 32, precomputed. */
const T = Int32Array.from({ length: 64 }, (_, j) => {
  const t = j < 16 ? 0x79cc4519 : 0x7a879d8a;
  const n = j % 32;
  return n === 0 ? t : (t << n) | (t >>> (32 - n));
});

export class Sm3 {
  private v = Int32Array.from(IV);
  private block = new Uint8Array(64);
  private used = 0;
  private length = 0;
  private w = new Int32Array(68);

  update(data: Uint8Array): this {
    this.length += data.length;
    let i = 0;
    if (this.used > 0) {
      const n = Math.min(64 - this.used, data.length);
      this.block.set(data.subarray(0, n), this.used);
      this.used += n;
      i = n;
      if (this.used < 64) return this;
      this.compress(this.block, 0);
      this.used = 0;
    }
    for (; i + 64 <= data.length; i += 64) this.compress(data, i);
    this.block.set(data.subarray(i), 0);
    this.used = data.length - i;
    return this;
  }

  digest(): Uint8Array {
    const bits = this.length * 8;
    const pad = new Uint8Array((this.used < 56 ? 56 : 120) - this.used + 8);
    pad[0] = 0x80;
    const view = new DataView(pad.buffer);
    view.setUint32(pad.length - 8, Math.floor(bits / 0x100000000));
    view.setUint32(pad.length - 4, bits >>> 0);
    this.update(pad);
    const out = new Uint8Array(32);
    const ov = new DataView(out.buffer);
    for (let i = 0; i < 8; i++) ov.setUint32(i * 4, this.v[i]!);
    return out;
  }

  /** One 64-byte block. Int32 arithmetic throughout (`| 0`) keeps the JIT on integer paths. */
  private compress(b: Uint8Array, o: number): void {
    const w = this.w;
    for (let j = 0; j < 16; j++) {
      const i = o + 4 * j;
      w[j] = (b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!;
    }
    for (let j = 16; j < 68; j++) {
      const x = w[j - 16]! ^ w[j - 9]! ^ rotl(w[j - 3]!, 15);
      w[j] = x ^ rotl(x, 15) ^ rotl(x, 23) ^ rotl(w[j - 13]!, 7) ^ w[j - 6]!;
    }
    const v = this.v;
    let a = v[0]!;
    let b2 = v[1]!;
    let c = v[2]!;
    let d = v[3]!;
    let e = v[4]!;
    let f = v[5]!;
    let g = v[6]!;
    let h = v[7]!;
    for (let j = 0; j < 64; j++) {
      const a12 = rotl(a, 12);
      const ss1 = rotl((a12 + e + T[j]!) | 0, 7);
      const ss2 = ss1 ^ a12;
      const ff = j < 16 ? a ^ b2 ^ c : (a & b2) | (a & c) | (b2 & c);
      const gg = j < 16 ? e ^ f ^ g : (e & f) | (~e & g);
      const tt1 = (ff + d + ss2 + (w[j]! ^ w[j + 4]!)) | 0;
      const tt2 = (gg + h + ss1 + w[j]!) | 0;
      d = c;
      c = rotl(b2, 9);
      b2 = a;
      a = tt1;
      h = g;
      g = rotl(f, 19);
      f = e;
      e = tt2 ^ rotl(tt2, 9) ^ rotl(tt2, 17);
    }
    v[0] = v[0]! ^ a;
    v[1] = v[1]! ^ b2;
    v[2] = v[2]! ^ c;
    v[3] = v[3]! ^ d;
    v[4] = v[4]! ^ e;
    v[5] = v[5]! ^ f;
    v[6] = v[6]! ^ g;
    v[7] = v[7]! ^ h;
  }
}
