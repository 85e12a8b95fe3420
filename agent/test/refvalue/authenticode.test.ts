/**
 * Authenticode digests against the outside world: the values of reference-values.md §2 for the
 * authenticode-rs fixtures, pesign -h (SHA-1, SHA-256) and the digest inside the signatures
 * (osslsigncode verify) for the fixtures and Debian's real signed shim, GRUB and kernel.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";

setDefaultTimeout(60_000);

import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { authenticodeDigest } from "../../src/refvalue/authenticode.ts";
import { sh } from "../../testkit/sh.ts";
import { debianBoot } from "./debian.ts";

const FIXTURES = join(import.meta.dir, "../../../../shared/fixtures/authenticode");
const haveFixtures = existsSync(FIXTURES);
if (!haveFixtures) console.warn(`skipping Authenticode fixture tests: ${FIXTURES} is missing`);

const pesign = (file: string, digest: string) =>
  /hash: ([0-9a-f]+)/.exec(sh(["pesign", "-h", "-d", digest, "-i", file]))![1];
/** The digest the signer put into the signature (osslsigncode's "Current message digest"). */
const signedDigest = (file: string) =>
  /Current message digest\s*:\s*([0-9A-F]+)/
    .exec(Bun.spawnSync(["osslsigncode", "verify", "-in", file]).stdout.toString())?.[1]
    ?.toLowerCase();

describe.skipIf(!haveFixtures)("authenticode-rs fixtures", () => {
  const expected: Record<string, { sha256: string; sha384: string; sha1: string }> = {
    tiny32: {
      sha256: "4f5b3633fc51d9447beb5c546e9ae6e58d6eb42d1e96d623dc168d97013c08a8",
      sha384:
        "ff67a85679b86470645cf24d846dfda2e0e14715ce0c7c552932e14f2c98a46729b5e7657d2a65842774bea91e090459",
      sha1: "49f239f1",
    },
    tiny64: {
      sha256: "a82d7e4f091c44ec75d97746b3461c8ea9151e2313f8e9a4330432ee5f25b2ae",
      sha384:
        "ad37d821bff4ac08f6ee2be764cbb9bc49404d1d723bbb8b234926127478265b0fa496ac0817070cae54d272e9aa13d1",
      sha1: "e9bdfb63",
    },
  };
  for (const [name, want] of Object.entries(expected)) {
    for (const file of [`${name}.efi`, `${name}.signed.efi`]) {
      test(file, () => {
        const path = join(FIXTURES, file);
        const data = readFileSync(path);
        expect(authenticodeDigest(data, "sha256", file)).toBe(want.sha256);
        expect(authenticodeDigest(data, "sha384", file)).toBe(want.sha384);
        expect(authenticodeDigest(data, "sha1", file).startsWith(want.sha1)).toBe(true);
        expect(authenticodeDigest(data, "sha1", file)).toBe(pesign(path, "sha1")!);
        expect(authenticodeDigest(data, "sha256", file)).toBe(pesign(path, "sha256")!);
        if (file.includes("signed")) expect(signedDigest(path)).toBe(want.sha256);
      });
    }
  }
});

describe("Debian's signed shim, GRUB and kernel", () => {
  const boot = debianBoot();
  for (const [what, path] of [
    ["shim", boot.shim],
    ["grub", boot.grub],
    ["kernel", boot.kernel],
  ] as const) {
    test(what, () => {
      const data = readFileSync(path);
      const ours = authenticodeDigest(data, "sha256", what);
      expect(ours).toBe(pesign(path, "sha256")!);
      expect(authenticodeDigest(data, "sha1", what)).toBe(pesign(path, "sha1")!);
      // osslsigncode cannot parse shim's certificate table; GRUB's and the kernel's signatures carry the digest.
      if (what !== "shim") expect(ours).toBe(signedDigest(path)!);
      // Removing the signature (sbattach --remove) must not change the digest.
      // (In a scratch directory: next to the cached kernel it would be found as a second vmlinuz-*.)
      const unsigned = join(mkdtempSync(join(tmpdir(), "unsigned-")), `${what}.efi`);
      sh(["cp", path, unsigned]);
      sh(["sbattach", "--remove", unsigned]);
      expect(authenticodeDigest(readFileSync(unsigned), "sha384", what)).toBe(
        authenticodeDigest(data, "sha384", what),
      );
      expect(readFileSync(unsigned).length).toBeLessThan(data.length);
    });
  }
});

test("a truncated PE image is one clear error", () => {
  const data = readFileSync(debianBoot().grub).subarray(0, 100_000);
  expect(() => authenticodeDigest(data, "sha256", "grubx64.efi")).toThrow(
    /grubx64.efi: section .* runs past the end/,
  );
});
