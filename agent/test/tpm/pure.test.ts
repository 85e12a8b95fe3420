/** The TPM code that needs no TPM: wire format, templates, TCTI choice, token validation. */
import { describe, expect, test } from "bun:test";
import { reportData } from "../../src/attest/tpm.ts";
import {
  encodePcrSelection,
  encodeRsaSignature,
  parseQuoteAttest,
  parseRsaSignature,
  readPcrSelection,
  TPM2_ALG,
  TpmReader,
  TpmWriter,
} from "../../src/tpm/marshal.ts";
import { akTemplate, parsePublic, sealedTemplate, srkTemplate, TPMA_OBJECT } from "../../src/tpm/public.ts";
import { tpmBaseCode } from "../../src/tpm/rc.ts";
import { splitBlob } from "../../src/tpm/seal.ts";
import { checkTctiDevice, DEFAULT_TCTI, resolveTcti } from "../../src/tpm/tcti.ts";
import {
  sealedFromSystemdToken,
  sealedFromToken,
  systemdPassphrase,
  TOKEN_TYPE,
  TPM2_BLOB_MAX_B64_CHARS,
} from "../../src/tpm/token.ts";

describe("wire format", () => {
  test("TPML_PCR_SELECTION: bitmap per bank, round trip", () => {
    const sel = [
      { bank: "sha256" as const, pcrs: [0, 7, 8, 23] },
      { bank: "sha1" as const, pcrs: [16] },
    ];
    const bytes = encodePcrSelection(sel);
    expect(Buffer.from(bytes).toString("hex")).toBe("00000002" + "000b03" + "810180" + "000403" + "000001");
    expect(readPcrSelection(new TpmReader(bytes))).toEqual(sel);
    expect(() => encodePcrSelection([{ bank: "sha256", pcrs: [24] }])).toThrow(/out of range/);
  });

  test("TPMT_SIGNATURE (RSASSA) round trip; other schemes are refused", () => {
    const sig = new Uint8Array(256).fill(5);
    const wire = encodeRsaSignature(TPM2_ALG.SHA256, sig);
    expect(parseRsaSignature(wire)).toEqual({ hashAlg: TPM2_ALG.SHA256, signature: sig });
    expect(() => parseRsaSignature(new TpmWriter().u16(0x0018).u16(0x000b).done())).toThrow(
      /expected RSASSA/,
    );
  });

  test("a truncated or foreign TPMS_ATTEST is an error, not garbage", () => {
    expect(() => parseQuoteAttest(new Uint8Array(10))).toThrow(/truncated/);
    const notQuote = new TpmWriter().u32(0xff544347).u16(0x8017).u16(0).u16(0);
    notQuote.raw(new Uint8Array(17)).raw(new Uint8Array(8));
    expect(() => parseQuoteAttest(notQuote.done())).toThrow(/not a TPM-generated quote/);
  });

  test("report data: the first 32 bytes of the digest, zero-padded when shorter", () => {
    const d = Uint8Array.from({ length: 48 }, (_, i) => i);
    expect([...reportData(d)]).toEqual([...d.subarray(0, 32)]);
    expect([...reportData(Uint8Array.of(1, 2))]).toEqual([1, 2, ...new Array(30).fill(0)]);
  });
});

describe("templates", () => {
  test("AK: RSA-2048 restricted signing key, RSASSA-SHA256, userWithAuth, no policy", () => {
    const area = parsePublic(akTemplate());
    expect(area.type).toBe(TPM2_ALG.RSA);
    expect(area.attributes & TPMA_OBJECT.restricted).toBeTruthy();
    expect(area.attributes & TPMA_OBJECT.sign).toBeTruthy();
    expect(area.attributes & TPMA_OBJECT.decrypt).toBeFalsy();
    expect(area.rsa).toMatchObject({ scheme: TPM2_ALG.RSASSA, schemeHash: TPM2_ALG.SHA256, exponent: 65537 });
  });

  test("SRK: the TCG ECC P-256 storage template (attributes 0x30472)", () => {
    const srk = srkTemplate();
    expect(Buffer.from(srk.subarray(0, 8)).toString("hex")).toBe("0023000b00030472");
  });

  test("sealed object: policy only (no userWithAuth); noDA only without a PIN", () => {
    const policy = new Uint8Array(32).fill(1);
    const noPin = parsePublic(sealedTemplate(policy, false));
    const pin = parsePublic(sealedTemplate(policy, true));
    expect(noPin.type).toBe(TPM2_ALG.KEYEDHASH);
    expect(noPin.attributes & TPMA_OBJECT.userWithAuth).toBe(0);
    expect(noPin.attributes & TPMA_OBJECT.noDA).toBeTruthy();
    expect(pin.attributes & TPMA_OBJECT.noDA).toBe(0);
    expect([...noPin.authPolicy]).toEqual([...policy]);
  });
});

describe("TCTI and response codes", () => {
  test("config, then TPM2TOOLS_TCTI, then TCTI, then /dev/tpmrm0", () => {
    expect(resolveTcti("swtpm:port=1", { TPM2TOOLS_TCTI: "a", TCTI: "b" })).toBe("swtpm:port=1");
    expect(resolveTcti(undefined, { TPM2TOOLS_TCTI: "a", TCTI: "b" })).toBe("a");
    expect(resolveTcti(undefined, { TCTI: "b" })).toBe("b");
    expect(resolveTcti(undefined, {})).toBe(DEFAULT_TCTI);
  });

  test("a device TCTI naming a missing device says so; other TCTIs are not checked here", () => {
    expect(() => checkTctiDevice("device:/dev/no-such-tpm")).toThrow(
      /no TPM found: the TPM device \/dev\/no-such-tpm/,
    );
    expect(() => checkTctiDevice("swtpm:host=127.0.0.1,port=1")).not.toThrow();
  });

  test("format-one codes lose their handle/session/parameter number; TSS layers are not TPM codes", () => {
    expect(tpmBaseCode(0x99d)).toBe(0x09d); // session 1 policy failure
    expect(tpmBaseCode(0x98e)).toBe(0x08e); // session 1 auth failure
    expect(tpmBaseCode(0x921)).toBe(0x921); // lockout (warning, format zero)
    expect(tpmBaseCode(0xa000a)).toBeUndefined(); // TCTI I/O error
  });
});

describe("LUKS2 token", () => {
  const valid = {
    type: TOKEN_TYPE,
    keyslots: ["0"],
    "tpm2-blob": Buffer.from(
      new TpmWriter().tpm2b(Uint8Array.of(1)).tpm2b(Uint8Array.of(2, 3)).done(),
    ).toString("base64"),
    "tpm2-pcrs": [7],
    "tpm2-pcr-bank": "sha256",
    "tpm2-primary-alg": "ecc",
    "tpm2-policy-hash": "ab".repeat(32),
    "tpm2-pin": false,
    "tpm2-pcr-values": { "7": "00".repeat(32) },
  };

  test("a valid token becomes the sealed key; its blob splits into private and public", () => {
    const sealed = sealedFromToken(valid, "dev token 0");
    expect(sealed.pcrs).toEqual([7]);
    const { privateBlob, publicBlob } = splitBlob(sealed.blob);
    expect([...privateBlob]).toEqual([0, 1, 1]);
    expect([...publicBlob]).toEqual([0, 2, 2, 3]);
    expect(() => splitBlob(Uint8Array.of(0, 1, 1, 0, 0, 9))).toThrow(/trailing/);
  });

  test("each broken field is named", () => {
    for (const [field, value] of [
      ["tpm2-blob", ""],
      ["tpm2-pcrs", [24]],
      ["tpm2-pcr-bank", "md5"],
      ["tpm2-primary-alg", "rsa"],
      ["tpm2-policy-hash", "xyz"],
      ["tpm2-pin", "no"],
      // Bounds on host-written token JSON (issue #14): sizes and lists a real token never has.
      ["tpm2-blob", "A".repeat(TPM2_BLOB_MAX_B64_CHARS + 4)],
      ["tpm2-blob", "AAEC!!not-base64"],
      ["tpm2-pcrs", Array.from({ length: 25 }, (_, i) => i % 24)],
      ["tpm2-pcrs", [7, 7]],
      ["tpm2-pcr-values", Object.fromEntries(Array.from({ length: 25 }, (_, i) => [String(i), "00"]))],
      ["tpm2-pcr-values", { "7": "zz" }],
      ["tpm2-pcr-values", { "7": "0".repeat(129) }],
    ] as const) {
      expect(() => sealedFromToken({ ...valid, [field]: value }, "/dev/x token 3")).toThrow(
        `/dev/x token 3: the cryptpilot-tpm2 token has an invalid or missing "${field}"`,
      );
    }
  });

  test("systemd-tpm2 tokens: PCR policies only; the primary follows the systemd version", () => {
    const sd = {
      type: "systemd-tpm2",
      keyslots: ["1"],
      "tpm2-blob": valid["tpm2-blob"],
      "tpm2-pcrs": [7],
      "tpm2-pcr-bank": "sha256",
      "tpm2-primary-alg": "ecc",
      "tpm2-policy-hash": "cd".repeat(32),
      "tpm2-pin": false,
    };
    expect(sealedFromSystemdToken(sd, "d").legacySrk).toBe(true);
    expect(sealedFromSystemdToken({ ...sd, "tpm2-srk": "AAAA" }, "d").legacySrk).toBe(false);
    expect(
      sealedFromSystemdToken({ ...sd, "tpm2-pcrs": undefined, "tpm2-hash-pcrs": [4, 7] }, "d").pcrs,
    ).toEqual([4, 7]);
    expect(() => sealedFromSystemdToken({ ...sd, "tpm2-pin": true }, "/dev/x token 1")).toThrow(
      "/dev/x token 1: this systemd-tpm2 token uses a PIN, which the tpm2 provider does not support",
    );
    expect(() => sealedFromSystemdToken({ ...sd, "tpm2-pubkey": "AAAA" }, "d")).toThrow(/signed PCR policy/);
    expect(() => sealedFromSystemdToken({ ...sd, "tpm2-primary-alg": "rsa" }, "d")).toThrow(
      /an RSA primary key/,
    );
    expect(new TextDecoder().decode(systemdPassphrase(Uint8Array.of(1, 2, 3)))).toBe("AQID");
  });
});
