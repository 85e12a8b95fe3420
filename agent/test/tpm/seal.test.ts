/**
 * Sealing cross-checked with tpm2-tools on a real swtpm: what we seal, tpm2_unseal opens with
 * the same PCR policy (and PIN); what tpm2_create seals, we unseal; a PCR extend breaks both
 * and our error names the PCR.
 */
import { beforeEach, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { withTpm } from "../../src/tpm/esys.ts";
import { encodePcrSelection } from "../../src/tpm/marshal.ts";
import { PcrPolicyMismatchError, type SealedKey, sealKey, splitBlob, unsealKey } from "../../src/tpm/seal.ts";
import {
  flushTpm2Tools,
  hasSwtpm,
  type Swtpm,
  TOOLS_SRK_ARGS,
  toolsUnsealFiles,
  tpm2Tool,
} from "../../testkit/swtpm.ts";
import { swtpmForSuite } from "../../testkit/swtpm-suite.ts";

if (!hasSwtpm) console.warn("skipping TPM seal tests: swtpm or tpm2-tools not installed");

const key = new TextEncoder().encode("volume-key-for-the-tpm-0123456789abcdef");

/** Start sniffer.ts in front of the swtpm; the returned TCTI goes through it. */
async function startSniffer(
  tpm: Swtpm,
  dir: string,
): Promise<{ tcti: string; traffic: () => Buffer; stop: () => void }> {
  const target = /port=(\d+)/.exec(tpm.tcti)![1]!;
  const file = join(dir, "traffic.bin");
  writeFileSync(file, "");
  const proc = Bun.spawn([process.execPath, join(import.meta.dir, "sniffer.ts"), target, file], {
    stdout: "pipe",
  });
  const reader = proc.stdout.getReader();
  let line = "";
  while (!line.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the sniffer did not start");
    line += new TextDecoder().decode(value);
  }
  return {
    tcti: `swtpm:host=127.0.0.1,port=${line.trim()}`,
    traffic: () => readFileSync(file),
    stop: () => proc.kill(),
  };
}

describe.skipIf(!hasSwtpm)("TPM sealing (swtpm) cross-checked with tpm2-tools", () => {
  const suite = swtpmForSuite("tpm-seal-");
  const tool = (args: string[], stdin?: Uint8Array) => tpm2Tool(suite.tpm, suite.dir, args, stdin);
  const flushAll = () => flushTpm2Tools(suite.tpm, suite.dir);

  beforeEach(() => flushAll());

  const seal = (policy: { pcrs: number[]; pin?: string }) =>
    withTpm(suite.tpm.tcti, (esys) => sealKey(esys, key, { bank: "sha256", ...policy }));
  const unseal = (sealed: SealedKey, pin?: string) =>
    withTpm(suite.tpm.tcti, (esys) => unsealKey(esys, sealed, pin));

  /** tpm2-tools: load our blob under its own SRK and unseal through a PolicyPCR session. */
  const toolsUnseal = (sealed: SealedKey, pin?: string): Buffer => {
    const { privateBlob, publicBlob } = splitBlob(sealed.blob);
    writeFileSync(join(suite.dir, "obj.priv"), privateBlob);
    writeFileSync(join(suite.dir, "obj.pub"), publicBlob);
    return toolsUnsealFiles(suite.tpm, suite.dir, `sha256:${sealed.pcrs.join(",")}`, pin);
  };

  test("a key we seal is unsealed by tpm2-tools with the same PCR policy, and by us", async () => {
    const sealed = await seal({ pcrs: [16, 7] });
    expect(sealed.pcrs).toEqual([7, 16]);
    expect(sealed.pin).toBe(false);
    expect(toolsUnseal(sealed).equals(Buffer.from(key))).toBe(true);
    expect(Buffer.from(await unseal(sealed)).equals(Buffer.from(key))).toBe(true);
  });

  test("the policy digest is TPM2_PolicyPCR's, computed independently from the PCR values", async () => {
    const sealed = await seal({ pcrs: [7, 16] });
    const values = Buffer.concat([7, 16].map((p) => Buffer.from(sealed.pcrValues[String(p)]!, "hex")));
    const cc = Buffer.from([0x00, 0x00, 0x01, 0x7f]); // TPM_CC_PolicyPCR
    const expected = createHash("sha256")
      .update(Buffer.alloc(32))
      .update(cc)
      .update(encodePcrSelection([{ bank: "sha256", pcrs: [7, 16] }]))
      .update(createHash("sha256").update(values).digest())
      .digest();
    expect(Buffer.from(sealed.policyDigest).equals(expected)).toBe(true);
  });

  test("with a PIN: tpm2-tools unseals with PolicyAuthValue + PIN; we need the PIN", async () => {
    const sealed = await seal({ pcrs: [7], pin: "4711" });
    expect(sealed.pin).toBe(true);
    expect(toolsUnseal(sealed, "4711").equals(Buffer.from(key))).toBe(true);
    expect(Buffer.from(await unseal(sealed, "4711")).equals(Buffer.from(key))).toBe(true);
    await expect(unseal(sealed, "0000")).rejects.toThrow(/rejected the PIN/);
    await expect(unseal(sealed)).rejects.toThrow(/sealed with a PIN, but no PIN was given/);
  });

  test("a key sealed by tpm2-tools (createpolicy + create) is unsealed by us", async () => {
    const secret = Buffer.from("sealed-by-tpm2-tools-secret");
    writeFileSync(join(suite.dir, "secret"), secret);
    try {
      tool(["tpm2_createprimary", ...TOOLS_SRK_ARGS, "-c", "srk.ctx"]);
      tool(["tpm2_pcrread", "sha256:7,16", "-o", "pcr.bin"]);
      tool(["tpm2_createpolicy", "--policy-pcr", "-l", "sha256:7,16", "-f", "pcr.bin", "-L", "policy.bin"]);
      tool([
        "tpm2_create",
        "-C",
        "srk.ctx",
        "-g",
        "sha256",
        "-L",
        "policy.bin",
        "-a",
        "fixedtpm|fixedparent|noda",
        "-i",
        "secret",
        "-u",
        "tools.pub",
        "-r",
        "tools.priv",
      ]);
    } finally {
      flushAll();
    }
    const sealed: SealedKey = {
      blob: Buffer.concat([
        readFileSync(join(suite.dir, "tools.priv")),
        readFileSync(join(suite.dir, "tools.pub")),
      ]),
      bank: "sha256",
      pcrs: [7, 16],
      policyDigest: readFileSync(join(suite.dir, "policy.bin")),
      pin: false,
      pcrValues: {},
    };
    expect(Buffer.from(await unseal(sealed)).toString()).toBe(secret.toString());
  });

  test("after extending a bound PCR, unsealing fails naming the PCR policy mismatch and the PCR", async () => {
    const sealed = await seal({ pcrs: [7, 16] });
    await withTpm(suite.tpm.tcti, (esys) =>
      esys.pcrExtend(16, "sha256", createHash("sha256").update("tamper").digest()),
    );
    let caught: unknown;
    try {
      await unseal(sealed);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(PcrPolicyMismatchError);
    const err = caught as PcrPolicyMismatchError;
    expect(err.message).toContain("TPM PCR policy mismatch");
    expect(err.message).toContain("PCR 16 is ");
    expect(err.message).not.toContain("PCR 7 is");
    expect(err.changed).toEqual([16]);
    expect(err.hint).toContain("enroll");
    expect(() => toolsUnseal(sealed)).toThrow(/tpm2_unseal/);
  });

  test("with a PIN, a PCR change is named as such and a wrong PIN is not counted (no DA lockout step)", async () => {
    const lockoutCounter = () =>
      /TPM2_PT_LOCKOUT_COUNTER:\s*(\S+)/.exec(tool(["tpm2_getcap", "properties-variable"]).toString())?.[1];
    const sealed = await seal({ pcrs: [16], pin: "4711" });
    await withTpm(suite.tpm.tcti, (esys) =>
      esys.pcrExtend(16, "sha256", createHash("sha256").update("tamper").digest()),
    );
    const before = lockoutCounter();
    expect(before).toBeDefined();
    const err = await unseal(sealed, "wrong").catch((e) => e);
    expect(err).toBeInstanceOf(PcrPolicyMismatchError);
    expect(err.changed).toEqual([16]);
    expect(lockoutCounter()).toBe(before);
    // The control: with the PCRs unchanged the same wrong PIN does count.
    const fresh = await seal({ pcrs: [16], pin: "4711" });
    await expect(unseal(fresh, "wrong")).rejects.toThrow(/rejected the PIN/);
    expect(lockoutCounter()).not.toBe(before);
  });

  test("the key never crosses the TPM interface in clear (salted sessions with parameter encryption)", async () => {
    const sniffer = await startSniffer(suite.tpm, suite.dir);
    try {
      const sealed = await withTpm(sniffer.tcti, (esys) => sealKey(esys, key, { bank: "sha256", pcrs: [7] }));
      const unsealed = await withTpm(sniffer.tcti, (esys) => unsealKey(esys, sealed));
      expect(Buffer.from(unsealed).equals(Buffer.from(key))).toBe(true);
      expect(sniffer.traffic().length).toBeGreaterThan(1000);
      expect(sniffer.traffic().includes(Buffer.from(key))).toBe(false);
      // Control: tpm2_unseal with a plain policy session returns the key in clear on the same wire.
      const plain = { ...suite.tpm, env: { TPM2TOOLS_TCTI: sniffer.tcti } };
      const saved = suite.tpm;
      suite.tpm = plain;
      try {
        expect(toolsUnseal(sealed).equals(Buffer.from(key))).toBe(true);
      } finally {
        suite.tpm = saved;
      }
      expect(sniffer.traffic().includes(Buffer.from(key))).toBe(true);
    } finally {
      sniffer.stop();
    }
  });

  test("keys the TPM cannot hold are refused before talking to it", async () => {
    await expect(
      withTpm(suite.tpm.tcti, (esys) => sealKey(esys, new Uint8Array(129), { bank: "sha256", pcrs: [7] })),
    ).rejects.toThrow(/1 to 128 bytes/);
  });

  /** Persist a tpm2-tools primary at the SRK handle for `fn`, then evict it again. */
  const withPersistent = async (createArgs: string[], fn: () => Promise<void>) => {
    tool(["tpm2_createprimary", ...createArgs, "-c", "p.ctx"]);
    tool(["tpm2_evictcontrol", "-C", "o", "-c", "p.ctx", "0x81000001"]);
    flushAll();
    try {
      await fn();
    } finally {
      tool(["tpm2_evictcontrol", "-C", "o", "-c", "0x81000001"]);
    }
  };

  test("our SRK persisted at 0x81000001 is used: unsealing then needs no CreatePrimary", async () => {
    const sealed = await seal({ pcrs: [7] });
    await withPersistent(TOOLS_SRK_ARGS, async () => {
      // With an owner password CreatePrimary fails (see the last test); the persistent SRK does not need it.
      tool(["tpm2_changeauth", "-c", "owner", "ownerpass"]);
      try {
        expect(Buffer.from(await unseal(sealed))).toEqual(Buffer.from(key));
      } finally {
        tool(["tpm2_changeauth", "-c", "owner", "-p", "ownerpass"]);
      }
    });
  });

  test("another key at 0x81000001 (RSA, or our template under another seed) is passed over", async () => {
    const sealed = await seal({ pcrs: [7] });
    await withPersistent(
      [
        "-C",
        "o",
        "-G",
        "rsa2048",
        "-a",
        "restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda",
      ],
      async () => {
        expect(Buffer.from(await unseal(sealed))).toEqual(Buffer.from(key));
      },
    );
    // Our template under the endorsement seed: it matches, but the object does not load under it.
    await withPersistent([...TOOLS_SRK_ARGS.map((a) => (a === "o" ? "e" : a))], async () => {
      expect(Buffer.from(await unseal(sealed))).toEqual(Buffer.from(key));
    });
  });

  // Last: it sets an owner password for the rest of this file.
  test("an owner hierarchy with a password is reported as such", async () => {
    tool(["tpm2_changeauth", "-c", "owner", "ownerpass"]);
    const err = await seal({ pcrs: [7] }).catch((e) => e);
    expect(err.message).toContain("creating the storage root key: Esys_CreatePrimary failed");
    expect(err.hint).toContain("has a password set");
  });
});
