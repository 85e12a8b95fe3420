/** SM3 against GB/T 32905's example vectors and `openssl dgst -sm3` on inputs around block edges. */
import { expect, test } from "bun:test";
import { hashHex } from "../../src/refvalue/hash.ts";
import { Sm3 } from "../../src/refvalue/sm3.ts";
import { bytes } from "../image/util.ts";

const enc = (s: string) => new TextEncoder().encode(s);

test("standard vectors", () => {
  expect(hashHex("sm3", enc("abc"))).toBe("66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0");
  expect(hashHex("sm3", enc("abcd".repeat(16)))).toBe(
    "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732",
  );
});

test("matches openssl for lengths around the 64-byte block and 56-byte padding edges", () => {
  for (const n of [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 100_003]) {
    const data = bytes(n, n + 7);
    const p = Bun.spawnSync(["openssl", "dgst", "-sm3", "-r"], { stdin: data });
    expect(p.exitCode).toBe(0);
    expect(hashHex("sm3", data)).toBe(p.stdout.toString().split(" ")[0]!);
  }
});

test("incremental updates equal one update", () => {
  const data = bytes(5000, 3);
  const h = new Sm3();
  for (let i = 0; i < data.length; i += 37) h.update(data.subarray(i, i + 37));
  expect(Buffer.from(h.digest()).toString("hex")).toBe(hashHex("sm3", data));
});
